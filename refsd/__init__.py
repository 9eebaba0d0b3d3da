"""RefSD: privacy-compliant people replacement (library).

The library is importable without ComfyUI. One sub-package per pipeline stage (see
ARCHITECTURE.md): ``keypoints`` -> ``body`` -> ``fit`` -> ``people`` -> ``render`` ->
``composite`` -> ``refine``, the whole chain in ``pipeline``, ComfyUI over HTTP in
``comfyapi`` and the ``refsd`` command in ``cli``.

The most used names are available here too (``refsd.BodyFit``, ``refsd.RefSDPipeline``, ...),
imported on first access, so ``import refsd`` stays cheap (no torch, no model construction,
no file scanning, no network).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: name -> the sub-package that defines it (imported on first access)
_LAZY = {
    "RefSDError": "errors",
    "FrameKeypoints": "keypoints",
    "PersonKeypoints": "keypoints",
    "parse_pose_keypoint": "keypoints",
    "load_pose_keypoint_file": "keypoints",
    "get_body_model": "body",
    "BodyModel": "body",
    "BodyOutput": "body",
    "BodyFit": "fit",
    "PersonFit": "fit",
    "BodyFitter": "fit",
    "FitOptions": "fit",
    "PersonAttributes": "people",
    "AttributeDistribution": "people",
    "Camera": "render",
    "RenderPasses": "render",
    "render_passes": "render",
    "remove_people": "composite",
    "leak_ratio": "composite",
    "RefSDPipeline": "pipeline",
    "PipelineResult": "pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    unit = _LAZY.get(name)
    if unit is None:
        raise AttributeError(f"module 'refsd' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{unit}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

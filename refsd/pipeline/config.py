"""Building a :class:`~refsd.pipeline.core.RefSDPipeline` (and its refiner) from a flat JSON-safe
config: :func:`pipeline_from_config`, behind :meth:`RefSDPipeline.from_config` (``refsd
pseudonymize`` and its Ray workers build their pipelines this way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..people import PersonAttributes
from .io import PipelineError

__all__ = ["pipeline_from_config"]


def pipeline_from_config(cls, config: Mapping[str, Any]):
    """``cls(refiner=..., **settings)`` from ``config`` (keys: :meth:`RefSDPipeline.from_config`)."""
    cfg = dict(config)
    kind = cfg.pop("refiner", "none") or "none"
    ref_keys = ("model", "model_config", "controlnets", "controlnet_configs", "dtype", "scheduler", "inpaint",
                "batch_size", "attention_slicing", "vae_tiling", "vae_slicing", "cpu_offload", "control_scales")
    ref = {k: cfg.pop(k) for k in ref_keys if k in cfg}
    if "crop_width" in cfg or "crop_height" in cfg:
        cfg["crop_size"] = (int(cfg.pop("crop_width", 512)), int(cfg.pop("crop_height", 768)))
    att = cfg.get("attributes")
    if isinstance(att, Mapping) and "fixed_person" in att:
        cfg["attributes"] = PersonAttributes.from_dict(att["fixed_person"])
    if kind == "diffusers":
        from ..refine import DiffusersRefiner

        model = ref.pop("model", None)
        if not model:
            raise PipelineError("the diffusers refiner needs a model path (CLI: --model)")
        controlnets = ref.pop("controlnets", None) or {}
        refiner = DiffusersRefiner(
            model, controlnets, config=ref.pop("model_config", None), device=cfg.get("device"), **ref)
    elif kind == "none":
        refiner = None
    else:
        raise PipelineError(f"unknown refiner {kind!r}; use 'none' or 'diffusers'")
    return cls(refiner=refiner, **cfg)

"""Helpers shared by the tests (importable as `helpers`; tests/ is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from refsd.comfyapi import ComfyClient, PromptResult


def run_ok(client: ComfyClient, prompt: dict, timeout: float = 600) -> PromptResult:
    """Run a prompt and fail the test with ComfyUI's own error text if it did not succeed."""
    result = client.run(prompt, timeout=timeout)
    if result.error is not None:
        err = result.error
        pytest.fail(
            f"prompt failed in node {err.get('node_id')} ({err.get('node_type')}): "
            f"{err.get('exception_type')}: {err.get('exception_message')}\n"
            + "".join(err.get("traceback", [])[-6:])
        )
    return result


def external_object_info() -> dict:
    """/object_info entries of the node types the shipped workflows use from packs that cannot be
    installed here (comfyui_controlnet_aux's DWPreprocessor), as scripts/build_workflows.py declares them."""
    import importlib.util

    from refsd.comfyapi import PACK_ROOT

    spec = importlib.util.spec_from_file_location("build_workflows", PACK_ROOT / "scripts" / "build_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DWPOSE_OBJECT_INFO


def use_test_models(prompt: dict, random_models: dict, image: str = "camera.png", keypoints: str = "camera.json",
                    size: int = 64, steps: int = 2) -> dict:
    """A shipped workflow made runnable on the random test models: model names, small sizes, few steps."""
    import copy

    p = copy.deepcopy(prompt)
    for node in p.values():
        ins, ct = node["inputs"], node["class_type"]
        if ct == "CheckpointLoaderSimple":
            ins["ckpt_name"] = random_models["checkpoint"].name
        elif ct == "ControlNetLoader":
            ins["control_net_name"] = random_models["controlnet"].name
        elif ct in ("RefSDCropPeople", "EmptyLatentImage", "RefSDDrawPoseKeypoints") and "width" in ins:
            ins.update(width=size, height=size)
        elif ct in ("KSampler", "KSamplerAdvanced"):
            ins["steps"] = steps
        elif ct == "LoadImage":
            ins["image"] = image
        elif ct == "RefSDLoadPoseKeypoints":
            ins["file"] = keypoints
    return p


def detect_models_dir() -> Path:
    """The BlazePose files fetched at set-up (``make setup``: ``refsd models fetch``) into the cache."""
    return Path(os.environ.get("REFSD_CACHE_DIR", Path(__file__).resolve().parent.parent / ".cache")) / "detect"


def require_detect_models() -> Path:
    """The detector's model folder; skips (with the command that fetches them) when set-up has not
    fetched them, fails under CI (which runs the set-up)."""
    d = detect_models_dir()
    if not (d / "pose_detection.tflite").is_file() or not (d / "pose_landmark_full.tflite").is_file():
        msg = f"the detector model files are not in {d}: run `make setup` (refsd models fetch --dest {d})"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI runs make setup: missing files there are a broken set-up, not a skip
        pytest.skip(msg)
    return d


def model_links(anny_cache_dir: Path, random_models: dict | None = None) -> dict[str, Path]:
    """ComfyServer ``model_links``: the built Anny cache, the detector's files (models/refsd_detect)
    and the random test models."""
    links = {"anny": anny_cache_dir}
    if detect_models_dir().is_dir():
        links["refsd_detect"] = detect_models_dir()
    if random_models:
        links[f"checkpoints/{random_models['checkpoint'].name}"] = random_models["checkpoint"]
        links[f"controlnet/{random_models['controlnet'].name}"] = random_models["controlnet"]
    return links


SAMPLE_VIDEO = "people.mp4"


def write_sample_video(path: Path, frames: int = 8) -> Path:
    """A real photo of people (bus.jpg, fetched at set-up; camera.png without it) seen by a camera
    panning 4 px per frame: ``frames`` frames of 320 x 480 at 10 fps, H.264."""
    import numpy as np
    from PIL import Image

    from refsd.comfyapi import PACK_ROOT
    from refsd.testing.video import pan_video, write_video

    bus = Path(os.environ.get("REFSD_CACHE_DIR") or PACK_ROOT / ".cache") / "photos" / "bus.jpg"
    if bus.is_file():
        photo = np.asarray(Image.open(bus).convert("RGB").resize((405, 540), Image.LANCZOS))
    else:
        photo = np.asarray(Image.open(PACK_ROOT / "samples" / "camera.png").convert("RGB").resize((360, 540)))
    return write_video(pan_video(photo, frames, (320, 480), (4, 0)), path, fps=10)


def cli_with_anny(anny_cache_dir, args: list[str]) -> int:
    """``refsd <args>`` in this process with ANNY_CACHE_DIR set (for module-scoped fixtures, which
    cannot use the function-scoped ``anny_env``)."""
    import pytest

    from refsd.cli import main as cli

    mp = pytest.MonkeyPatch()
    mp.setenv("ANNY_CACHE_DIR", str(anny_cache_dir))
    try:
        return cli(args)
    finally:
        mp.undo()

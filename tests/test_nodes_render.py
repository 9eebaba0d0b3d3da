"""Avatar rendering inside the real ComfyUI server: photo -> keypoints -> fit -> sampled attributes -> render."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import run_ok
from PIL import Image

from refsd.comfyapi import PACK_ROOT

pytestmark = pytest.mark.comfyui
SAMPLES = PACK_ROOT / "samples"


def graph() -> dict:
    return json.loads((PACK_ROOT / "workflows" / "api" / "refsd_avatar_maps.json").read_text())


def image(comfy, result, node: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(comfy.download(result.outputs[node]["images"][0]))).convert("RGB"))


def test_render_avatar_graph_returns_every_map(comfy, sample_inputs):
    result = run_ok(comfy, graph())
    maps = {name: image(comfy, result, node) for name, node in
            (("avatar", "8"), ("depth", "9"), ("normal", "10"), ("pose", "11"), ("parts", "12"), ("edges", "13"),
             ("mask", "15"), ("redrawn", "17"))}
    for name, m in maps.items():
        assert m.shape == (512, 512, 3), name
    mask = maps["mask"][..., 0] > 127
    assert 0.02 < mask.mean() < 0.6  # one person, a good part of the frame
    # depth: black background, bright person; avatar drawn only inside the mask
    assert maps["depth"][~mask].max() == 0 and maps["depth"][mask].max() > 200
    assert maps["avatar"][~mask].max() == 0 and maps["avatar"][mask].mean() > 20
    # the skeleton drawn by Render Avatar equals its POSE_KEYPOINT drawn again by Draw Pose Keypoints
    assert (maps["pose"] != maps["redrawn"]).any(-1).mean() < 0.002
    # edges only near the person
    edges = maps["edges"][..., 0] > 127
    assert edges.any() and not edges[:40, 400:].any()
    # the prompt describes the sampled person
    pos, neg = result.outputs["7"]["text"]
    assert pos.startswith("a photo of") and ("woman" in pos or "man" in pos)
    assert "deformed" in neg or "blurry" in neg


def test_same_seed_same_people_other_seed_other_people(comfy, sample_inputs):
    a = run_ok(comfy, graph())
    b = run_ok(comfy, graph())
    g = graph()
    g["5"]["inputs"]["seed"] = 2
    c = run_ok(comfy, g)
    assert (image(comfy, a, "8") == image(comfy, b, "8")).all()
    assert a.outputs["7"]["text"] == b.outputs["7"]["text"]
    assert a.outputs["7"]["text"] != c.outputs["7"]["text"]

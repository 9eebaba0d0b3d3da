"""The render-only pseudonymization graph in the real ComfyUI server, on a real photo."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import run_ok
from PIL import Image

from refsd.comfy_server import PACK_ROOT

pytestmark = pytest.mark.comfyui
SAMPLES = PACK_ROOT / "samples"


def test_render_only_graph_replaces_the_person_and_leaks_nothing(comfy, sample_inputs):
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / "refsd_render_only.json").read_text())
    # also save the person mask to check "unchanged outside it"
    prompt["90"] = {"class_type": "MaskToImage", "inputs": {"mask": ["7", 0]}}
    prompt["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "refsd/mask"}}
    result = run_ok(comfy, prompt)
    check = result.outputs["10"]
    assert check["leak_ratio"] == [0.0] and check["passed"] == [True]

    def img(node):
        return np.asarray(Image.open(io.BytesIO(comfy.download(result.outputs[node]["images"][0]))).convert("RGB"))

    out, mask = img("11"), img("91")[..., 0] > 127
    original = np.asarray(Image.open(SAMPLES / "camera.png").convert("RGB"))
    assert out.shape == original.shape
    assert 0.05 < mask.mean() < 0.7
    assert (out[~mask] == original[~mask]).all()  # outside the person mask: identical to the input
    changed = (np.abs(out.astype(int) - original.astype(int)).max(-1) > 8)[mask]
    assert changed.mean() > 0.8  # inside: replaced
    assert result.outputs["12"]["body_fits"][0]["people"]


@pytest.mark.parametrize("name", ["refsd_full", "refsd_canny"])
def test_diffusion_graphs_run_on_the_random_models(comfy, sample_inputs, random_models, name):
    """refsd_full / refsd_canny (crop -> img2img with two ControlNets -> paste -> save) at 64x64 crops.

    With random weights the refined pixels are meaningless; the test checks the graph's
    plumbing, sizes, finiteness, that nothing outside the person mask changes, and the
    privacy check.
    """
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    prompt["11"]["inputs"]["ckpt_name"] = random_models["checkpoint"].name
    for node in ("15", "16"):
        prompt[node]["inputs"]["control_net_name"] = random_models["controlnet"].name
    prompt["10"]["inputs"].update(width=64, height=64)
    prompt["20"]["inputs"]["steps"] = 2
    prompt["90"] = {"class_type": "MaskToImage", "inputs": {"mask": ["7", 0]}}
    prompt["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "refsd/mask"}}
    result = run_ok(comfy, prompt)

    def img(node):
        return np.asarray(Image.open(io.BytesIO(comfy.download(result.outputs[node]["images"][0]))).convert("RGB"))

    out, mask = img("23"), img("91")[..., 0] > 127
    original = np.asarray(Image.open(SAMPLES / "camera.png").convert("RGB"))
    assert out.shape == original.shape
    assert (out[~mask] == original[~mask]).all()
    assert result.outputs["25"]["passed"] == [True]


def test_person_prompts_give_each_crop_its_own_description(comfy, comfy_server, sample_inputs, random_models):
    """Two people (the annotated one and a smaller copy to the right): two crops, two different prompts
    encoded as one conditioning batch, through the depth + OpenPose ControlNets and KSampler."""
    from helpers import use_test_models

    frames = json.loads((SAMPLES / "camera.json").read_text())
    first = frames[0]["people"][0]["pose_keypoints_2d"]
    second = []
    for j in range(0, len(first), 3):
        x, y, c = first[j:j + 3]
        second += [360 + 0.4 * x, 200 + 0.4 * y, c] if c > 0 else [0, 0, 0]
    frames[0]["people"] = [{"pose_keypoints_2d": first}, {"pose_keypoints_2d": second}]
    (comfy_server.input_dir / "camera_two.json").write_text(json.dumps(frames))
    prompt = use_test_models(json.loads((PACK_ROOT / "workflows" / "api" / "refsd_full.json").read_text()),
                             random_models, "camera.png", "camera_two.json")
    prompt["30"] = {"class_type": "RefSDPersonPrompts", "inputs": {
        "clip": ["11", 1], "attributes": ["5", 0], "body_fit": ["4", 0], "crop_boxes": ["10", 5],
        "extra_positive": "park", "extra_negative": ""}}
    prompt["17"]["inputs"].update(positive=["30", 0], negative=["30", 1])
    for node in ("12", "13", "14"):
        del prompt[node]
    result = run_ok(comfy, prompt)
    texts = result.outputs["30"]["text"]
    assert len(texts) == 2 and texts[0].startswith("crop 0 (image 0, person 0)")
    assert texts[0].split(": ", 1)[1] != texts[1].split(": ", 1)[1]
    assert all("park" in t for t in texts)
    assert result.outputs["25"]["passed"] == [True]
    out = Image.open(io.BytesIO(comfy.download(result.outputs["23"]["images"][0])))
    assert out.size == (512, 512)


def test_privacy_check_fails_when_a_person_could_not_be_fitted(comfy, comfy_server, sample_inputs):
    """A second person with two keypoints is skipped by the fit, so not replaced: the check must not pass."""
    frames = json.loads((SAMPLES / "camera.json").read_text())
    frames[0]["people"].append({"pose_keypoints_2d": [400, 100, 0.9, 410, 130, 0.9] + [0, 0, 0] * 16})
    (comfy_server.input_dir / "camera_partial.json").write_text(json.dumps(frames))
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / "refsd_render_only.json").read_text())
    prompt["2"]["inputs"]["file"] = "camera_partial.json"
    result = run_ok(comfy, prompt)
    check = result.outputs["10"]
    assert check["leak_ratio"] == [0.0] and check["passed"] == [False]
    assert "1 unfitted person(s) not replaced" in check["text"][0]
    assert result.outputs["4"]["fit"][0]["skipped"]

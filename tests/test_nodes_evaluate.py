"""The identity check in RefSD Privacy Check and the RefSD Evaluate node, in the real ComfyUI server
on the real sample photo with RefSD's real face and person models (fetched at set-up)."""

from __future__ import annotations

import json

import pytest
from helpers import require_detect_models, run_ok

from refsd.comfyapi import PACK_ROOT, PromptRejected

pytestmark = pytest.mark.comfyui


def _render_only() -> dict:
    return json.loads((PACK_ROOT / "workflows" / "api" / "refsd_render_only.json").read_text())


def test_privacy_check_reports_faces_and_evaluate_shows_the_numbers(comfy, sample_inputs):
    require_detect_models()
    prompt = _render_only()
    prompt["40"] = {"class_type": "RefSDEvaluate", "inputs": {
        "original": ["1", 0], "output": ["9", 0], "keypoints": ["2", 0], "avatar_keypoints": ["6", 5],
        "identity": True, "pose": True, "face_threshold": 0.363, "detect_model": "full"}}
    out = run_ok(comfy, prompt).outputs
    check = out["10"]
    assert check["passed"] == [True] and check["leak_ratio"] == [0.0]
    (ident,) = check["identity"]
    assert len(ident["faces"]) == 1 and ident["faces"][0]["person"] == 0 and ident["passed"]
    assert "identity: 1 face(s), 0 still recognisable" in check["text"][0]
    (ev,) = out["40"]["refsd_eval"]
    assert ev["identity"] == ident  # the same check in both nodes
    (pose,) = ev["pose"]
    (avatar,) = ev["avatar_pose"]
    assert pose["matched"] == 0 and 0.3 < pose["oks"] < 1.0
    # the fitted avatar lands on the annotation: torso and arms closely; the head less (the man's face is turned
    # into the camera, and the head points' COCO sigmas, 0.025-0.035, make a few pixels cost much): measured 0.65
    assert avatar["oks"] > 0.5 and avatar["oks_groups"]["torso"] > 0.85 and avatar["pck"]["0.1"] > 0.5
    assert ev["sources"] == {"input": "given", "output": "detect:full", "avatar": "given"}
    text = out["40"]["text"][0]
    assert text.startswith("image 0: PASS identity") and "pose kept: OKS" in text and "avatar pose: OKS" in text


def test_a_blurred_photo_fails_the_privacy_check(comfy, sample_inputs):
    """Blur keeps no equal pixel in the face yet keeps the person: the identity check fails it. (ComfyUI's
    Image Blur takes sigma in units of the radius: 0.3 x 15 = a Gaussian of 4.5 px.)"""
    require_detect_models()
    prompt = _render_only()
    prompt["41"] = {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 15, "sigma": 0.3}}
    prompt["10"]["inputs"]["output"] = ["41", 0]
    check = run_ok(comfy, prompt).outputs["10"]
    assert check["passed"] == [False]
    (ident,) = check["identity"]
    assert ident["leaks"] == 1 and ident["faces"][0]["similarity"] >= 0.363
    assert "FAIL" in check["text"][0]
    # identity off: the pixel check alone (what the node did before) passes blur where no pixel is equal
    prompt["10"]["inputs"]["identity"] = False
    check = run_ok(comfy, prompt).outputs["10"]
    assert check["identity"] == [None] and "identity" not in check["text"][0]


def test_evaluate_bad_input_fails_clearly_and_server_stays_up(comfy, sample_inputs):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "camera.png"}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 256,
                                                      "height": 256, "crop": "disabled"}},
        "3": {"class_type": "RefSDEvaluate", "inputs": {"original": ["1", 0], "output": ["2", 0], "identity": True,
                                                         "pose": False, "face_threshold": 0.363, "detect_model": "full"}},
    }
    result = comfy.run(prompt, timeout=300)
    assert result.error is not None
    assert "512x512 but the output is 256x256" in result.error["exception_message"]
    with pytest.raises(PromptRejected):
        comfy.run({**prompt, "3": {**prompt["3"], "inputs": {**prompt["3"]["inputs"], "face_threshold": 2.0}}})
    assert comfy.object_info()["RefSDEvaluate"]["output_node"] is True  # still serving

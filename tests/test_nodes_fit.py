"""Body fitting inside the real ComfyUI server, on a real photo with hand-annotated keypoints."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from helpers import run_ok
from PIL import Image

from refsd.comfyapi import PACK_ROOT, PromptRejected
from refsd.fit import BodyFit
from refsd.testing import write_synthetic_smplx

pytestmark = pytest.mark.comfyui
SAMPLES = PACK_ROOT / "samples"


def fit_graph(image="camera.png", keypoints="camera.json", model="anny") -> dict:
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / "refsd_fit_body.json").read_text())
    prompt["1"]["inputs"]["image"] = image
    prompt["2"]["inputs"]["file"] = keypoints
    prompt["3"]["inputs"]["model"] = model
    return prompt


def test_fit_body_graph_on_real_photo(comfy, comfy_server, sample_inputs):
    result = run_ok(comfy, fit_graph())
    fits = result.outputs["5"]["body_fits"]
    assert len(fits) == 1
    fit = BodyFit.from_dict(fits[0])
    assert fit.model_id.startswith("anny") and fit.image_width == 512 and fit.image_height == 512
    assert fit.num_people == 1
    person = fit.people[0]
    assert person.quality == "good" and person.reproj_error_px < 20.0
    assert 1.0 < person.transl[2] < 8.0  # the cameraman stands a few metres away
    # the JSON written to disk is the same as the one returned in the UI data
    rec = result.outputs["5"]["files"][0]
    on_disk = json.loads((comfy_server.output_dir / rec["subfolder"] / rec["filename"]).read_text())
    assert on_disk == fits[0]
    # the overlay: same size as the photo, changed where the person is, untouched in the sky corner
    overlay = np.asarray(Image.open(io.BytesIO(comfy.download(result.outputs["6"]["images"][0]))).convert("RGB"))
    photo_px = np.asarray(Image.open(SAMPLES / "camera.png").convert("RGB"))
    assert overlay.shape == photo_px.shape
    diff = np.abs(overlay.astype(int) - photo_px.astype(int)).sum(-1) > 30
    assert diff[150:250, 150:250].mean() > 0.3  # head and arms of the fitted body
    assert diff[:40, 400:].mean() == 0.0  # sky, far from the person


def test_load_body_fit_round_trip_in_graph(comfy, comfy_server, sample_inputs):
    result = run_ok(comfy, fit_graph())
    rec = result.outputs["5"]["files"][0]
    src = comfy_server.output_dir / rec["subfolder"] / rec["filename"]
    shutil.copy(src, comfy_server.input_dir / "saved_fit.json")
    prompt = {
        "1": {"class_type": "RefSDLoadBodyFit", "inputs": {"file": "saved_fit.json"}},
        "2": {"class_type": "RefSDSaveBodyFit", "inputs": {"body_fit": ["1", 0], "filename_prefix": "refsd/reloaded"}},
    }
    again = run_ok(comfy, prompt)
    assert again.outputs["2"]["body_fits"] == result.outputs["5"]["body_fits"]


def test_smplx_dropdown_and_fit(comfy, comfy_server, sample_inputs):
    smplx_dir = comfy_server.models_dir / "smplx"
    smplx_dir.mkdir(exist_ok=True)
    write_synthetic_smplx(smplx_dir, gender="neutral", seed=1)
    options = comfy.object_info("RefSDLoadBodyModel")["RefSDLoadBodyModel"]["input"]["required"]["model"][1]["options"]
    assert "anny" in options and "smplx/SMPLX_NEUTRAL.npz" in options
    result = run_ok(comfy, fit_graph(model="smplx/SMPLX_NEUTRAL.npz"))
    fit = BodyFit.from_dict(result.outputs["5"]["body_fits"][0])
    assert fit.model_id.startswith("smplx") and fit.num_people == 1


def test_bad_inputs_fail_clearly_and_server_stays_up(comfy, comfy_server, sample_inputs):
    # a pickled SMPL-X file is refused with the official site in the message
    smplx_dir = comfy_server.models_dir / "smplx"
    smplx_dir.mkdir(exist_ok=True)
    (smplx_dir / "SMPLX_FEMALE.pkl").write_bytes(b"\x80\x04not really a pickle")
    result = comfy.run(fit_graph(model="smplx/SMPLX_FEMALE.pkl"))
    assert result.error is not None and "smpl-x.is.tue.mpg.de" in result.error["exception_message"]
    # keypoints with NaN/negative values and a person with too few joints: skipped with a warning, no crash
    frame = json.loads((SAMPLES / "camera.json").read_text())
    few = {"pose_keypoints_2d": [250, 162, 0.9, -1, -1, 0.9] + [0, 0, 0] * 16}
    frame[0]["people"].append(few)
    (comfy_server.input_dir / "with_few.json").write_text(json.dumps(frame).replace("227, 147", "NaN, 147"))
    result = run_ok(comfy, fit_graph(keypoints="with_few.json"))
    fit = BodyFit.from_dict(result.outputs["5"]["body_fits"][0])
    assert fit.num_people == 1 and fit.skipped[0][0] == 1 and fit.warnings
    # no people at all: an empty fit, not an error
    (comfy_server.input_dir / "nobody.json").write_text(json.dumps([{"people": [], "canvas_width": 512,
                                                                      "canvas_height": 512}]))
    result = run_ok(comfy, fit_graph(keypoints="nobody.json"))
    assert BodyFit.from_dict(result.outputs["5"]["body_fits"][0]).num_people == 0
    # more keypoint frames than images: a clear error naming both counts
    (comfy_server.input_dir / "three.json").write_text(json.dumps(frame * 3))
    result = comfy.run(fit_graph(keypoints="three.json"))
    assert result.error is not None and "3" in result.error["exception_message"]
    # an out-of-range value is refused before execution
    bad = fit_graph()
    bad["4"]["inputs"]["fov_deg"] = 500.0
    with pytest.raises(PromptRejected):
        comfy.queue_prompt(bad)
    # and after all that the server still runs a good graph
    assert comfy_server.alive()
    run_ok(comfy, fit_graph())

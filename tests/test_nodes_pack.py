"""The pack inside a real ComfyUI server: loading, node metadata, templates, execution, errors."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import external_object_info, run_ok
from PIL import Image

from refsd.comfyapi import PACK_LINK_NAME, PACK_ROOT, PromptRejected

pytestmark = pytest.mark.comfyui

WORKFLOWS = PACK_ROOT / "workflows"
EXPECTED_NODES = {
    "RefSDLoadPoseKeypoints", "RefSDDrawPoseKeypoints", "RefSDLoadBodyModel", "RefSDFitBody", "RefSDSaveBodyFit",
    "RefSDLoadBodyFit", "RefSDAttributes", "RefSDSampleAttributes", "RefSDRenderAvatar", "RefSDAttributePrompt",
    "RefSDPersonMask", "RefSDRemovePeople", "RefSDComposite", "RefSDPrivacyCheck",
}


def refsd_nodes(object_info: dict) -> dict:
    return {k: v for k, v in object_info.items() if v.get("python_module", "").endswith(PACK_LINK_NAME)}


def small_pose(width: int = 64, height: int = 64) -> list[dict]:
    """A standing person in OpenPose-18 pixel coordinates on a width x height canvas."""
    pts = {
        0: (0.50, 0.12), 1: (0.50, 0.25), 2: (0.40, 0.25), 3: (0.36, 0.40), 4: (0.34, 0.52),
        5: (0.60, 0.25), 6: (0.64, 0.40), 7: (0.66, 0.52), 8: (0.44, 0.52), 9: (0.44, 0.72),
        10: (0.44, 0.92), 11: (0.56, 0.52), 12: (0.56, 0.72), 13: (0.56, 0.92), 14: (0.48, 0.10),
        15: (0.52, 0.10), 16: (0.46, 0.11), 17: (0.54, 0.11),
    }
    flat = []
    for k in range(18):
        x, y = pts[k]
        flat += [x * width, y * height, 0.9]
    return [{"people": [{"pose_keypoints_2d": flat}], "canvas_width": width, "canvas_height": height}]


def prompt_for_test(random_models, keypoint_file: str, size: int = 64) -> dict:
    """The shipped example graph, pointed at the random test models and made small."""
    prompt = json.loads((WORKFLOWS / "api" / "refsd_pose_controlnet.json").read_text())
    prompt["1"]["inputs"]["ckpt_name"] = random_models["checkpoint"].name
    prompt["4"]["inputs"]["control_net_name"] = random_models["controlnet"].name
    prompt["5"]["inputs"]["file"] = keypoint_file
    prompt["6"]["inputs"].update(width=size, height=size)
    prompt["8"]["inputs"].update(width=size, height=size)
    prompt["9"]["inputs"].update(steps=2, seed=7)
    return prompt


@pytest.fixture(scope="module")
def pose_file(comfy_server) -> str:
    path = comfy_server.input_dir / "refsd_test_pose.json"
    path.write_text(json.dumps(small_pose()))
    return path.name


def test_pack_loads_without_import_failure(comfy_server):
    log = comfy_server.log_text()
    lines = [ln for ln in log.splitlines() if PACK_LINK_NAME in ln and "seconds" in ln]
    assert lines, f"pack missing from ComfyUI's 'Import times for custom nodes':\n{comfy_server.log_tail()}"
    assert not any("IMPORT FAILED" in ln for ln in lines), lines
    seconds = comfy_server.pack_import_seconds()
    assert seconds is not None and seconds < 5.0, f"pack import took {seconds} s (must stay cheap)"
    print(f"\nRefSD pack import time reported by ComfyUI: {seconds} s")


def test_every_node_listed_with_metadata(comfy):
    nodes = refsd_nodes(comfy.object_info())
    assert EXPECTED_NODES <= set(nodes), f"missing: {EXPECTED_NODES - set(nodes)}"
    for node_id, info in nodes.items():
        assert node_id.startswith("RefSD"), node_id
        assert info["category"].startswith("RefSD"), (node_id, info["category"])
        assert len(info["description"]) > 40, f"{node_id} needs a real description"
        assert info["display_name"].startswith("RefSD "), node_id
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_workflow_templates_lists_pack_workflows(comfy):
    listed = comfy.get_json("/workflow_templates")
    shipped = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert shipped, "the pack ships no UI workflows"
    assert sorted(listed.get(PACK_LINK_NAME, [])) == shipped
    # and ComfyUI serves each file as the template browser fetches it
    for name in shipped:
        served = comfy.get_json(f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.json")
        assert served == json.loads((WORKFLOWS / f"{name}.json").read_text())


def test_core_graph_with_refsd_nodes_executes(comfy, comfy_server, random_models, pose_file):
    prompt = prompt_for_test(random_models, pose_file)
    result = run_ok(comfy, prompt)
    images = result.outputs["11"]["images"]
    assert len(images) == 1
    img = np.asarray(Image.open(io.BytesIO(comfy.download(images[0]))))
    assert img.shape == (64, 64, 3)
    skeleton = np.asarray(Image.open(io.BytesIO(comfy.download(result.outputs["12"]["images"][0]))))
    assert skeleton.shape == (64, 64, 3)
    # the right-ankle dot has its OpenPose colour at its keypoint; the background is black
    assert tuple(skeleton[int(0.92 * 64), int(0.44 * 64)]) == (0, 170, 255)
    assert tuple(skeleton[0, 0]) == (0, 0, 0)
    # the file really is on disk in the server's output folder
    assert (comfy_server.output_dir / images[0]["subfolder"] / images[0]["filename"]).is_file()


def test_invalid_value_is_refused_with_node_errors(comfy, random_models, pose_file):
    prompt = prompt_for_test(random_models, pose_file)
    bad = copy.deepcopy(prompt)
    bad["6"]["inputs"]["width"] = -5  # RefSD Draw Pose Keypoints feeds both outputs
    bad["9"]["inputs"]["steps"] = -3
    bad["1"]["inputs"]["ckpt_name"] = "no_such_model.safetensors"
    with pytest.raises(PromptRejected) as exc:
        comfy.queue_prompt(bad)
    err = exc.value
    assert err.status == 400
    assert set(err.node_errors) >= {"1", "6", "9"}
    types = {e["type"] for n in err.node_errors.values() for e in n["errors"]}
    assert "value_not_in_list" in types and "value_smaller_than_min" in types


def test_partially_invalid_graph_is_not_silently_accepted(comfy, random_models, pose_file):
    """ComfyUI 0.3.75 queues the valid outputs of a partly invalid graph with a 200; the client refuses that."""
    bad = prompt_for_test(random_models, pose_file)
    bad["9"]["inputs"]["steps"] = -3  # only output 11 depends on the sampler
    with pytest.raises(PromptRejected) as exc:
        comfy.queue_prompt(bad)
    assert exc.value.status == 200 and "9" in exc.value.node_errors


def test_missing_keypoint_file_refused_by_validation(comfy, random_models):
    prompt = prompt_for_test(random_models, "does_not_exist.json")
    with pytest.raises(PromptRejected) as exc:
        comfy.queue_prompt(prompt)
    assert "5" in exc.value.node_errors


def test_bad_keypoint_json_fails_clearly_and_server_stays_up(comfy, comfy_server, random_models, pose_file):
    bad = comfy_server.input_dir / "refsd_bad_pose.json"
    bad.write_text('[{"people": [{"pose_keypoints_2d": [1, 2, 0.9, 3]}]}')  # truncated JSON
    result = comfy.run(prompt_for_test(random_models, bad.name))
    assert result.error is not None
    assert result.error["node_type"] == "RefSDLoadPoseKeypoints"
    assert "invalid JSON" in result.error["exception_message"] and "line 1" in result.error["exception_message"]
    wrong = comfy_server.input_dir / "refsd_wrong_pose.json"
    wrong.write_text('[{"people": [{"pose_keypoints_2d": [1, 2, 0.9, 3]}]}]')
    result = comfy.run(prompt_for_test(random_models, wrong.name))
    assert result.error is not None and "multiple of 3" in result.error["exception_message"]
    # the server is still up and runs a good graph
    assert comfy_server.alive()
    run_ok(comfy, prompt_for_test(random_models, pose_file))


def test_refsd_imports_without_comfyui():
    code = (
        "import sys, pkgutil, importlib, refsd\n"
        "for m in pkgutil.walk_packages(refsd.__path__, 'refsd.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'nodes', 'server')]\n"
        "assert not bad, bad\n"
        "print('ok', len([m for m in sys.modules if m.startswith('refsd')]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path("/"), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_ui_workflows_are_exact_twins_of_api_workflows(comfy):
    """Each workflows/<name>.json converts back to workflows/api/<name>.json (same nodes, links, values)."""
    from refsd.comfyapi import api_to_ui, ui_to_api

    info = {**comfy.object_info(), **external_object_info()}
    api_files = sorted((WORKFLOWS / "api").glob("*.json"))
    assert {p.stem for p in api_files} == {p.stem for p in WORKFLOWS.glob("*.json")}
    for api_file in api_files:
        api = json.loads(api_file.read_text())
        ui = json.loads((WORKFLOWS / api_file.name).read_text())
        back = ui_to_api(ui, info)
        strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
        assert strip(back) == strip(api), api_file.name
        # the shipped UI file is what the converter makes today (regenerate with scripts/build_workflows.py)
        assert api_to_ui(api, info) == ui, f"{api_file.name}: run scripts/build_workflows.py"


def test_dwpose_workflow_structure(comfy):
    """refsd_dwpose: comfyui_controlnet_aux is not installable here, so structure only. Its one node type
    unknown to this server is DWPose's DWPreprocessor, used with the inputs and outputs that pack declares,
    and everything downstream of the keypoints is identical to refsd_full."""
    info = comfy.object_info()
    dw_info = external_object_info()["DWPreprocessor"]
    dw = json.loads((WORKFLOWS / "api" / "refsd_dwpose.json").read_text())
    full = json.loads((WORKFLOWS / "api" / "refsd_full.json").read_text())
    unknown = {k: v for k, v in dw.items() if v["class_type"] not in info}
    assert [v["class_type"] for v in unknown.values()] == ["DWPreprocessor"]
    (nid, node), = unknown.items()
    declared = {**dw_info["input"]["required"], **dw_info["input"]["optional"]}
    assert set(node["inputs"]) == set(declared)
    for name, value in node["inputs"].items():
        typ = declared[name][0]
        if isinstance(typ, list):
            assert value in typ, (name, value)
        elif typ == "IMAGE":
            assert dw[value[0]]["class_type"] == "LoadImage"
        else:
            assert isinstance(value, int) and value % 64 == 0
    # its POSE_KEYPOINT output (slot 1) feeds the fit and the privacy check, in place of the keypoint file
    consumers = [(k, n, v) for k, node2 in dw.items() for n, v in node2["inputs"].items()
                 if isinstance(v, list) and v[0] == nid]
    assert [(dw[k]["class_type"], n, v[1]) for k, n, v in consumers] == [("RefSDFitBody", "pose_keypoint", 1),
                                                                         ("RefSDPrivacyCheck", "keypoints", 1)]
    assert dw_info["output"][1] == "POSE_KEYPOINT"
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    rest_dw, rest_full = strip(dw), strip(full)
    for k, n, _ in consumers:
        rest_dw[k]["inputs"][n] = rest_full[k]["inputs"][n] = ["keypoints", 0]
    del rest_dw[nid], rest_full[nid]
    assert rest_dw == rest_full


def test_every_ui_workflow_has_a_thumbnail_the_template_browser_can_show(comfy):
    for wf in sorted(WORKFLOWS.glob("*.json")):
        thumb = WORKFLOWS / f"{wf.stem}.jpg"  # the frontend asks for <name>.jpg beside the template
        assert thumb.is_file(), f"{wf.name} has no thumbnail {thumb.name}"
        status, data = comfy._request("GET", f"/api/workflow_templates/{PACK_LINK_NAME}/{thumb.name}")
        assert status == 200 and data == thumb.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and min(im.size) >= 128


# refsd_dwpose: its DWPose node cannot be installed here; refsd_video_*: tests/test_nodes_video.py
API_WORKFLOWS = sorted(p for p in (WORKFLOWS / "api").glob("*.json")
                       if p.stem != "refsd_dwpose" and not p.stem.startswith("refsd_video"))


@pytest.mark.parametrize("api_file", API_WORKFLOWS, ids=[p.stem for p in API_WORKFLOWS])
def test_every_api_workflow_runs_on_the_random_models(comfy, sample_inputs, random_models, api_file):
    """Each shipped API graph (refsd_dwpose aside: its DWPose node cannot be installed here) runs in the real
    server on the sample photo with the random test models at 64 px crops/latents and 2 steps; every image it
    saves is finite and photo-sized or model-sized, and every privacy check passes with leak ratio 0."""
    from helpers import require_detect_models, use_test_models

    graph = json.loads(api_file.read_text())
    if any(v["class_type"] == "RefSDDetectPeople" for v in graph.values()):
        require_detect_models()  # refsd_auto*: the BlazePose files fetched at set-up
    result = run_ok(comfy, use_test_models(graph, random_models, *sample_inputs))
    saved = [r for out in result.outputs.values() for r in out.get("images", []) if r.get("type") == "output"]
    assert saved
    for rec in saved:
        img = np.asarray(Image.open(io.BytesIO(comfy.download(rec))))
        assert img.shape[:2] in ((512, 512), (64, 64)) and np.isfinite(img).all()
    checks = [out for out in result.outputs.values() if "passed" in out]
    for out in checks:
        assert out["passed"] == [True] and out["leak_ratio"] == [0.0]
    replaces = any(v["class_type"] == "RefSDComposite" for v in graph.values())
    assert bool(checks) == replaces  # every graph that replaces people checks its privacy

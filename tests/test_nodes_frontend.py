"""Every shipped UI workflow in the real ComfyUI frontend (1.32.9), in headless Chromium.

Playwright drives Debian's /usr/bin/chromium (never a downloaded browser); the page cannot
reach anything but the test server. For each workflows/*.json: it loads with no missing node
types and no page errors, and the frontend's own conversion (app.graphToPrompt) equals the
shipped API twin in node types, links and values; that conversion, with the random test
models substituted, is queued on the server and executes successfully. ``refsd_dwpose``
needs comfyui_controlnet_aux, which cannot be installed here: its one missing node type
must be DWPose's ``DWPreprocessor`` (checked for structure in test_nodes_pack.py).
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import run_ok, use_test_models

from refsd.comfyapi import PACK_ROOT

pytestmark = pytest.mark.comfyui
CHROMIUM = os.environ.get("REFSD_CHROMIUM", "/usr/bin/chromium")
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
NOT_INSTALLABLE = {"refsd_dwpose": ["DWPreprocessor"]}  # comfyui_controlnet_aux (GitHub, downloads weights)
ARGS = [
    "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def page(comfy_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (make setup does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page()
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.goto(comfy_server.url)
        pg.wait_for_function(
            "window.app && app.graph && app.canvas && app.vueAppReady && window.LiteGraph", timeout=90_000
        )
        yield pg
        browser.close()


def strip(prompt: dict) -> dict:
    return {k: {"class_type": v.get("class_type"), "inputs": v["inputs"]} for k, v in prompt.items()}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_converts_to_its_api_twin_and_runs(page, workflow, comfy, sample_inputs, random_models):
    data = json.loads(workflow.read_text())
    before = len(page.errors)
    result = json.loads(page.evaluate(
        """async (wf) => {
            await app.loadGraphData(wf, true, true, 'refsd-test');
            const missing = app.graph._nodes
                .filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
            const p = await app.graphToPrompt();
            return JSON.stringify({missing, output: p.output, nodes: app.graph._nodes.length});
        }""",
        data,
    ))
    expected_missing = NOT_INSTALLABLE.get(workflow.stem, [])
    assert result["missing"] == expected_missing, f"node types unknown to the frontend: {result['missing']}"
    assert result["nodes"] == len(data["nodes"])
    assert page.errors[before:] == [], page.errors[before:]
    if expected_missing:
        return  # the frontend cannot convert a node it does not know; structure checked elsewhere
    api = json.loads((PACK_ROOT / "workflows" / "api" / workflow.name).read_text())
    assert strip(result["output"]) == strip(api)
    if workflow.stem == "refsd_video_full":
        return  # equal to its twin, which tests/test_nodes_video.py runs (a full-size UNet per frame: minutes)
    # the frontend's own conversion runs on the server (random models, small sizes)
    run = run_ok(comfy, use_test_models(result["output"], random_models, *sample_inputs))
    saved = [r for out in run.outputs.values() for r in out.get("images", []) if r.get("type") == "output"]
    assert saved, f"{workflow.stem} saved no image"
    for node, out in run.outputs.items():
        if "passed" in out:  # RefSD Privacy Check: nothing of the person survives
            assert all(out["passed"]) and not any(out["leak_ratio"]), (workflow.stem, node, out)  # every frame

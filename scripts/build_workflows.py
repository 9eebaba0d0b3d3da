"""Regenerate the UI-format workflows in workflows/ from their API twins in workflows/api/.

Starts a real ComfyUI server (to read /object_info: which inputs are widgets, in which
order), converts each API prompt with refsd.comfyapi.workflow.api_to_ui, and writes
workflows/<name>.json. Run it after editing an API workflow; the tests check that the
two stay equivalent. ``python scripts/build_workflows.py [NAME ...]`` regenerates only the named
workflows (default: all).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.comfyapi import ComfyServer, api_to_ui  # noqa: E402

# comfyui_controlnet_aux's DWPose node, as that pack declares it (DWPose_Preprocessor in
# node_wrappers/dwpose.py, registered as "DWPreprocessor"): the one node of refsd_dwpose that
# is not installable here (it lives on GitHub and downloads its detector weights).
DWPOSE_OBJECT_INFO = {
    "DWPreprocessor": {
        "input": {
            "required": {"image": ["IMAGE"]},
            "optional": {
                "detect_hand": [["enable", "disable"], {"default": "enable"}],
                "detect_body": [["enable", "disable"], {"default": "enable"}],
                "detect_face": [["enable", "disable"], {"default": "enable"}],
                "resolution": ["INT", {"default": 512, "min": 64, "max": 16384, "step": 64}],
                "bbox_detector": [["yolox_l.torchscript.pt", "yolox_l.onnx", "yolo_nas_l_fp16.onnx",
                                   "yolo_nas_m_fp16.onnx", "yolo_nas_s_fp16.onnx"], {"default": "yolox_l.onnx"}],
                "pose_estimator": [["dw-ll_ucoco_384_bs5.torchscript.pt", "dw-ll_ucoco_384.onnx", "dw-ll_ucoco.onnx"],
                                   {"default": "dw-ll_ucoco_384_bs5.torchscript.pt"}],
                "scale_stick_for_xinsr_cn": [["disable", "enable"], {"default": "disable"}],
            },
        },
        "input_order": {
            "required": ["image"],
            "optional": ["detect_hand", "detect_body", "detect_face", "resolution", "bbox_detector",
                         "pose_estimator", "scale_stick_for_xinsr_cn"],
        },
        "output": ["IMAGE", "POSE_KEYPOINT"],
        "output_is_list": [False, False],
        "output_name": ["IMAGE", "POSE_KEYPOINT"],
        "name": "DWPreprocessor",
        "display_name": "DWPose Estimator",
        "category": "ControlNet Preprocessors/Faces and Poses Estimators",
        "output_node": False,
    }
}


def main(names: list[str]) -> None:
    api_files = sorted((ROOT / "workflows" / "api").glob("*.json"))
    unknown = set(names) - {p.stem for p in api_files}
    if unknown:
        raise SystemExit(f"no workflows/api/<name>.json for {sorted(unknown)}")
    with tempfile.TemporaryDirectory() as td, ComfyServer(td) as server:
        info = {**server.client().object_info(), **DWPOSE_OBJECT_INFO}
        for api_file in api_files:
            if names and api_file.stem not in names:
                continue
            prompt = json.loads(api_file.read_text())
            ui = api_to_ui(prompt, info)
            out = ROOT / "workflows" / api_file.name
            out.write_text(json.dumps(ui, indent=1) + "\n")
            print(f"wrote {out.relative_to(ROOT)} ({len(ui['nodes'])} nodes, {len(ui['links'])} links)")


if __name__ == "__main__":
    main(sys.argv[1:])

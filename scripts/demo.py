"""RefSD demo: run the pack's example graphs headless in a real ComfyUI server.

It starts ComfyUI (the pinned runtime in .cache/comfyui, or ``COMFYUI_PATH``), links this
pack into it, uploads the sample photo and its hand-annotated keypoints from ``samples/``,
and runs

* ``workflows/api/refsd_render_only.json``: the person replaced by a rendered synthetic
  person (fit, sampled attributes, render, person mask, removal, composite, privacy check;
  CPU, no model files) -> ``pseudonymized_*.png``;
* ``workflows/api/refsd_avatar_maps.json``: every ControlNet map of the avatar;
* ``workflows/api/refsd_pose_controlnet.json``: the keypoints through an OpenPose ControlNet
  and KSampler,

writing every image and the body fit JSON to ``--output``.

Models: set ``REFSD_CHECKPOINT`` (an SD1.5 checkpoint) and ``REFSD_CONTROLNET_OPENPOSE``
(e.g. control_v11p_sd15_openpose.pth) to use real ones. Without them the demo builds
random-weight test models (offline; the picture is noise, the skeleton is real) and runs
at 64x64 with 2 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.comfy_server import ComfyServer, find_comfyui  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=ROOT / "output", help="folder for the results")
    ap.add_argument("--keypoints", type=Path, default=ROOT / "samples" / "camera.json")
    ap.add_argument("--photo", type=Path, default=ROOT / "samples" / "camera.png")
    args = ap.parse_args()
    t0 = time.time()
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    comfyui = find_comfyui()

    ckpt = os.environ.get("REFSD_CHECKPOINT")
    cnet = os.environ.get("REFSD_CONTROLNET_OPENPOSE")
    real_models = bool(ckpt and cnet)
    if not real_models:
        models = cache / "test-models"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_random_models.py"), str(models)],
            check=True, env=dict(os.environ, COMFYUI_PATH=str(comfyui)),
        )
        info = json.loads((models / "models.json").read_text())
        ckpt, cnet = str(models / info["checkpoint"]), str(models / info["controlnet"])
        print("REFSD_CHECKPOINT / REFSD_CONTROLNET_OPENPOSE not set: using random-weight test models (noise output).")

    base = cache / "demo-comfyui"
    if base.exists():
        shutil.rmtree(base)
    (cache / "anny").mkdir(parents=True, exist_ok=True)
    (base / "models").mkdir(parents=True, exist_ok=True)
    (base / "models" / "anny").symlink_to(cache / "anny", target_is_directory=True)  # Anny cache, built once
    for src, folder in ((Path(ckpt), "checkpoints"), (Path(cnet), "controlnet")):
        d = base / "models" / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / src.name).symlink_to(src.resolve())

    prompt = json.loads((ROOT / "workflows" / "api" / "refsd_pose_controlnet.json").read_text())
    prompt["1"]["inputs"]["ckpt_name"] = Path(ckpt).name
    prompt["4"]["inputs"]["control_net_name"] = Path(cnet).name
    prompt["5"]["inputs"]["file"] = args.keypoints.name
    if not real_models:
        prompt["6"]["inputs"].update(width=64, height=64)
        prompt["8"]["inputs"].update(width=64, height=64)
        prompt["9"]["inputs"]["steps"] = 2

    maps = json.loads((ROOT / "workflows" / "api" / "refsd_avatar_maps.json").read_text())
    maps["1"]["inputs"]["image"] = args.photo.name
    maps["2"]["inputs"]["file"] = args.keypoints.name
    maps["99"] = {"class_type": "RefSDSaveBodyFit", "inputs": {"body_fit": ["4", 0], "filename_prefix": "refsd/body_fit"}}
    render_only = json.loads((ROOT / "workflows" / "api" / "refsd_render_only.json").read_text())
    render_only["1"]["inputs"]["image"] = args.photo.name
    render_only["2"]["inputs"]["file"] = args.keypoints.name

    args.output.mkdir(parents=True, exist_ok=True)
    written = []
    with ComfyServer(base, comfyui) as server:
        client = server.client()
        client.upload(args.keypoints)
        client.upload(args.photo)
        print(f"ComfyUI {server.url} running; pack import time {server.pack_import_seconds()} s")
        for name, graph in (("render-only pseudonymization", render_only), ("avatar maps", maps),
                            ("pose ControlNet", prompt)):
            t1 = time.time()
            result = client.run(graph)
            if result.error:
                print(f"the {name} graph failed: {result.error.get('exception_message')}", file=sys.stderr)
                return 1
            print(f"{name} graph: {time.time() - t1:.1f} s")
            for out in result.outputs.values():
                for rec in out.get("images", []) + out.get("files", []):
                    dest = args.output / rec["filename"]
                    dest.write_bytes(client.download(rec))
                    written.append(dest)
                if "text" in out:
                    print("  " + " | ".join(map(str, out["text"])))
    for p in written:
        print(f"wrote {p}")
    print(f"demo finished in {time.time() - t0:.1f} s; outputs in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

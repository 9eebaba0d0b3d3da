"""Regenerate the template-browser thumbnails workflows/<name>.jpg.

Runs the render-only graph on the sample photo (samples/camera.png, CC0) in a real ComfyUI
server, saves every intermediate map, and lays out for each workflow the pictures that
say what it does (photo, conditioning maps, result). No diffusion model is needed: the
thumbnails of the diffusion graphs show their inputs and the render-only result.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.comfyapi import ComfyServer  # noqa: E402

PANELS = {
    "refsd_render_only": ["photo", "result"],
    "refsd_sd_removal": ["photo", "background", "result"],
    "refsd_full": ["photo", "depth", "pose", "result"],
    "refsd_canny": ["photo", "edges", "pose", "result"],
    "refsd_dwpose": ["photo", "pose", "depth", "result"],
    "refsd_avatar_maps": ["avatar", "depth", "normal", "parts"],
    "refsd_fit_body": ["photo", "overlay"],
    "refsd_pose_controlnet": ["photo", "pose"],
}
HEIGHT = 256


def main() -> None:
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    prompt = json.loads((ROOT / "workflows" / "api" / "refsd_render_only.json").read_text())
    saves = {"result": ["9", 0], "avatar": ["6", 0], "depth": ["6", 2], "normal": ["6", 3], "pose": ["6", 4],
             "parts": ["6", 6], "edges": ["6", 7], "overlay": ["4", 1], "background": ["8", 0]}
    for i, (name, src) in enumerate(saves.items()):
        prompt[f"t{i}"] = {"class_type": "SaveImage", "inputs": {"images": src, "filename_prefix": f"thumb/{name}"}}
    with tempfile.TemporaryDirectory() as td:
        with ComfyServer(td, model_links={"anny": cache / "anny"}) as server:
            client = server.client()
            client.upload(ROOT / "samples" / "camera.png")
            client.upload(ROOT / "samples" / "camera.json")
            result = client.run(prompt)
            if result.error:
                raise SystemExit(f"graph failed: {result.error.get('exception_message')}")
            pics = {"photo": Image.open(ROOT / "samples" / "camera.png").convert("RGB")}
            for i, name in enumerate(saves):
                rec = result.outputs[f"t{i}"]["images"][0]
                pics[name] = Image.open(io.BytesIO(client.download(rec))).convert("RGB")
    for wf, names in PANELS.items():
        tiles = [pics[n].resize((round(pics[n].width * HEIGHT / pics[n].height), HEIGHT), Image.LANCZOS)
                 for n in names]
        gap = 4
        sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), HEIGHT), (24, 24, 24))
        x = 0
        for t in tiles:
            sheet.paste(t, (x, 0))
            x += t.width + gap
        out = ROOT / "workflows" / f"{wf}.jpg"
        sheet.save(out, quality=82, optimize=True)
        print(f"wrote {out.relative_to(ROOT)} {sheet.size} {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

"""Regenerate the template-browser thumbnails workflows/<name>.jpg.

Runs the render-only graph on the sample photo (samples/camera.png, CC0) in a real ComfyUI
server, saves every intermediate map, and lays out for each workflow the pictures that
say what it does (photo, conditioning maps, result). No diffusion model is needed: the
thumbnails of the diffusion graphs show their inputs and the render-only result. The detector
graphs (refsd_auto*) are run too, for their own panels: the detections and the result from
detected keypoints and masks (their files: ``refsd models fetch``). ``python
scripts/make_thumbnails.py [NAME ...]`` writes only the named thumbnails (default: all).
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
    "refsd_auto": ["photo", "detections", "auto_result"],
    "refsd_auto_full": ["photo", "detections", "auto_depth", "auto_pose", "auto_result"],
    "refsd_evaluate": ["photo", "result", "pose"],
    "refsd_video_render_only": ["detections", "auto_pose", "auto_result"],  # one frame's view of the video graph
    "refsd_video_full": ["detections", "auto_depth", "auto_pose", "auto_result"],
}
HEIGHT = 256


#: the graph each group of pictures comes from, and the outputs saved from it
GRAPHS = {
    "refsd_render_only": {"result": ["9", 0], "avatar": ["6", 0], "depth": ["6", 2], "normal": ["6", 3],
                          "pose": ["6", 4], "parts": ["6", 6], "edges": ["6", 7], "overlay": ["4", 1],
                          "background": ["8", 0]},
    "refsd_auto": {"auto_result": ["9", 0], "detections": ["2", 3], "auto_depth": ["6", 2], "auto_pose": ["6", 4]},
}


def main(only: list[str]) -> None:
    unknown = set(only) - set(PANELS)
    if unknown:
        raise SystemExit(f"no thumbnail layout for {sorted(unknown)}; known: {', '.join(PANELS)}")
    panels = {wf: names for wf, names in PANELS.items() if not only or wf in only}
    needed = {n for names in panels.values() for n in names}
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    links = {"anny": cache / "anny", "refsd_detect": cache / "detect"}
    pics = {"photo": Image.open(ROOT / "samples" / "camera.png").convert("RGB")}
    with tempfile.TemporaryDirectory() as td:
        with ComfyServer(td, model_links=links) as server:
            client = server.client()
            client.upload(ROOT / "samples" / "camera.png")
            client.upload(ROOT / "samples" / "camera.json")
            for graph, saves in GRAPHS.items():
                if not needed & set(saves):
                    continue
                prompt = json.loads((ROOT / "workflows" / "api" / f"{graph}.json").read_text())
                for i, (name, src) in enumerate(saves.items()):
                    prompt[f"t{i}"] = {"class_type": "SaveImage",
                                       "inputs": {"images": src, "filename_prefix": f"thumb/{name}"}}
                result = client.run(prompt)
                if result.error:
                    raise SystemExit(f"{graph} failed: {result.error.get('exception_message')}")
                for i, name in enumerate(saves):
                    rec = result.outputs[f"t{i}"]["images"][0]
                    pics[name] = Image.open(io.BytesIO(client.download(rec))).convert("RGB")
    for wf, names in panels.items():
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
    main(sys.argv[1:])

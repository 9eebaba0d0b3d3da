"""The video graph (workflows/api/refsd_video_render_only.json) in the real ComfyUI server on a real
video: Load Video -> Detect People -> Track People -> Fit Body (temporal) -> one look per track ->
removal, composite, privacy check per frame -> Create Video (same frame rate) -> Save Video. The
input is bus.jpg under a panning camera (conftest's ``people.mp4``, two full-body people)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import require_detect_models, run_ok

from refsd.comfyapi import PACK_ROOT

pytestmark = pytest.mark.comfyui


def _frames(data: bytes) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(io.BytesIO(data)) as c:
        rate = float(c.streams.video[0].average_rate)
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)], rate


def test_video_graph_keeps_one_replacement_per_person(comfy, sample_inputs):
    require_detect_models()
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / "refsd_video_render_only.json").read_text())
    out = run_ok(comfy, prompt, timeout=900).outputs
    ids = out["15"]["track_ids"]
    assert len(ids) == 8
    # the two full-body people are found in every frame and keep their ids (0 and 1) throughout
    assert all({0, 1} <= set(row) for row in ids), ids
    # one look per track: the attributes Render Avatar drew for a track are the same in every frame
    looks: dict[int, set] = {}
    for row, people in zip(ids, out["6"]["attributes"], strict=True):
        tracked = [i for i in row if i is not None]  # the fitted people, in keypoint order
        assert len(people) == len(tracked)
        for tid, a in zip(tracked, people, strict=True):
            looks.setdefault(tid, set()).add(json.dumps(a, sort_keys=True))
    assert len(looks[0]) == 1 and len(looks[1]) == 1 and looks[0] != looks[1]
    # every frame passes the privacy check (pixels and faces)
    check = out["10"]
    assert check["passed"] == [True] * 8 and check["leak_ratio"] == [0.0] * 8
    assert all(r["faces"] and r["passed"] for r in check["identity"])
    # the saved video: 8 frames, the input's size and frame rate, and the people replaced
    (rec,) = out["12"]["images"]
    frames, rate = _frames(comfy.download(rec))
    assert len(frames) == 8 and frames[0].shape == (480, 320, 3) and rate == pytest.approx(10.0)
    fits = out["13"]["body_fits"]
    assert len(fits) == 8 and all(
        [p["track_id"] for p in f["people"]] == [i for i in row if i is not None] for f, row in zip(fits, ids, strict=True))
    shapes = {}
    for f in fits:  # one body shape per track over the clip
        for p in f["people"]:
            shapes.setdefault(p["track_id"], set()).add(tuple(p["shape"]))
    assert all(len(v) == 1 for v in shapes.values())


def test_video_fill_stays_put_from_frame_to_frame(comfy, sample_inputs):
    """Remove People with ``video`` on (the shipped graph) against off: the frames of the saved video,
    compared after undoing the 4 px pan (the photo itself changes by 0; what changes is the removed
    region's fill, the avatars and the encoder's noise), change much less with the fill carried over."""
    require_detect_models()
    base = json.loads((PACK_ROOT / "workflows" / "api" / "refsd_video_render_only.json").read_text())
    assert base["8"]["inputs"]["video"] is True and base["2"]["inputs"]["video"] is True
    change = {}
    for video in (True, False):
        prompt = json.loads(json.dumps(base))
        prompt["8"]["inputs"]["video"] = video
        prompt["12"]["inputs"]["filename_prefix"] = f"refsd/fill_{video}"
        out = run_ok(comfy, prompt, timeout=900).outputs
        frames, _ = _frames(comfy.download(out["12"]["images"][0]))
        f = np.stack(frames).astype(float)
        change[video] = float(np.abs(f[1:, :, :-4] - f[:-1, :, 4:]).mean())
    assert change[True] < 0.75 * change[False], change


def test_video_full_graph_runs_on_the_random_models(comfy, comfy_server, sample_inputs, random_models):
    """refsd_video_full (the video front end + refsd_full's SD removal and per-person img2img with depth and
    OpenPose ControlNets) at 64 px crops, 2 steps: the plumbing over frames and tracks (random weights: the
    refined pixels are noise). One prompt per person crop, the same for a track in every frame."""
    from helpers import use_test_models, write_sample_video

    require_detect_models()
    write_sample_video(comfy_server.input_dir / "people3.mp4", frames=3)  # 3 frames: full-size UNet on the CPU
    prompt = use_test_models(json.loads((PACK_ROOT / "workflows" / "api" / "refsd_video_full.json").read_text()),
                             random_models)
    prompt["1"]["inputs"]["file"] = "people3.mp4"
    out = run_ok(comfy, prompt, timeout=900).outputs
    assert out["25"]["passed"] == [True] * 3 and not any(out["25"]["leak_ratio"])
    (rec,) = out["23"]["images"]
    frames, rate = _frames(comfy.download(rec))
    assert len(frames) == 3 and frames[0].shape == (480, 320, 3) and rate == pytest.approx(10.0)
    ids = out["41"]["track_ids"]
    prompts: dict[int, set] = {}
    for text in out["12"]["text"]:  # "crop k (image i, person p): ..."
        head, prompt_text = text.split(": ", 1)
        i, p = (int(x.split()[-1]) for x in head.split("(")[1].rstrip(")").split(", "))
        tracked = [t for t in ids[i] if t is not None]
        prompts.setdefault(tracked[p], set()).add(prompt_text)
    assert {0, 1} <= set(prompts) and len(prompts[0]) == 1 and len(prompts[1]) == 1


def test_refsd_run_over_a_folder_of_videos(comfy_server, tmp_path):
    """``refsd run`` with a Load Video graph runs over the folder's videos (a photo beside them is not an
    input of this graph), uploads each, downloads the MP4, and records the tracks and their looks."""
    from helpers import write_sample_video

    from refsd.cli import main as cli_main

    require_detect_models()
    src = tmp_path / "in"
    src.mkdir()
    write_sample_video(src / "street.mp4", frames=4)
    (src / "still.png").write_bytes((PACK_ROOT / "samples" / "camera.png").read_bytes())
    out = tmp_path / "out"
    assert cli_main(["run", str(PACK_ROOT / "workflows" / "refsd_video_render_only.json"), str(src), str(out),
                     "--server", comfy_server.url, "--no-progress"]) == 0
    recs = {json.loads(line)["image"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert list(recs) == ["street.mp4"]
    rec = recs["street.mp4"]
    assert rec["status"] == "ok" and rec["privacy_passed"] and rec["people_source"] == "detect"
    assert "street/pseudonymized.mp4" in rec["outputs"]
    assert rec["video"]["frames"] == 4 and rec["video"]["tracks"]["0"]["frames"] == 4
    assert rec["video"]["tracks"]["1"]["frames"] == 4 and rec["video"]["tracks"]["0"]["attributes"]
    frames, rate = _frames((out / "street" / "pseudonymized.mp4").read_bytes())
    assert len(frames) == 4 and rate == pytest.approx(10.0)

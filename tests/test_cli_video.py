"""``refsd pseudonymize`` on a real video (bus.jpg under a panning camera, two people): chunks,
tracks with one look each, the output video at the input's frame rate, a run killed after its
first chunk resuming to the same frames, and bad input (a corrupt video, a 1-frame video)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_with_anny, require_detect_models, write_sample_video

from refsd.cli import main as cli

pytestmark = pytest.mark.slow  # documentation only: runs in CI
ARGS = ["--refiner", "none", "--device", "cpu", "--no-progress", "--seed", "5", "--chunk-frames", "3"]


def _frames(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)], rate


def _record(out: Path, key: str) -> dict:
    return {json.loads(line)["image"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}[key]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    require_detect_models()
    d = tmp_path_factory.mktemp("video") / "in"
    d.mkdir()
    write_sample_video(d / "street.mp4", frames=8)
    return d


@pytest.fixture(scope="module")
def whole(clip, tmp_path_factory, anny_cache_dir) -> Path:
    """One uninterrupted run over the clip (8 frames in chunks of 3)."""
    out = tmp_path_factory.mktemp("whole") / "out"
    assert cli_with_anny(anny_cache_dir, ["pseudonymize", str(clip), "-o", str(out), "--save-frames", *ARGS]) == 0
    return out


def test_video_is_pseudonymized_with_one_person_per_track(clip, whole, capsys):
    out = whole
    rec = _record(out, "street.mp4")
    assert rec["status"] == "ok" and rec["privacy_passed"] and rec["leak_ratio"] == 0.0, rec.get("error")
    v = rec["video"]
    assert v["frames"] == 8 and v["fps"] == pytest.approx(10.0) and v["chunk_frames"] == 3
    # both full-body people tracked through all 8 frames (across the chunk borders), one look each
    assert v["tracks"]["0"]["frames"] == 8 and v["tracks"]["1"]["frames"] == 8, v["tracks"]
    assert v["tracks"]["0"]["attributes"] != v["tracks"]["1"]["attributes"]
    assert rec["identity"][0]["leaks"] == 0 and rec["people_source"] == "detect"
    frames, rate = _frames(out / "street" / "pseudonymized.mp4")
    src, _ = _frames(clip / "street.mp4")
    assert len(frames) == 8 and rate == pytest.approx(10.0) and frames[0].shape == src[0].shape
    assert sorted(rec["outputs"])[0] == "street/frames/000000.png" and len(rec["outputs"]) == 9
    assert not (out / "street" / ".chunks").exists() and not (out / "street" / ".video_state.json").exists()
    capsys.readouterr()


def test_killed_run_resumes_at_its_last_chunk(clip, whole, tmp_path, anny_env):
    out = tmp_path / "out"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "refsd.cli", "pseudonymize", str(clip), "-o", str(out),
                             "--save-frames", *ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state = out / "street" / ".video_state.json"
    deadline = time.time() + 600
    while not state.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # killed after its first chunk
    proc.wait()
    assert state.is_file() and json.loads(state.read_text())["frames_done"] in (3, 6)
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "street" / ".chunks").glob("*.png")}
    assert cli(["pseudonymize", str(clip), "-o", str(out), "--save-frames", *ARGS]) == 0
    frames = sorted((out / "street" / "frames").glob("*.png"))
    assert len(frames) == 8
    for p in frames:  # the finished chunk was not redone
        if p.name in done_before:
            assert p.stat().st_mtime_ns == done_before[p.name]
    from PIL import Image

    # the same people, fits and frames as the uninterrupted run: the carried state is exact (the frames are
    # compared as saved; the MP4 encodings of equal frames may differ by the encoder's rounding)
    resumed = [np.asarray(Image.open(p)) for p in frames]
    uninterrupted = [np.asarray(Image.open(p)) for p in sorted((whole / "street" / "frames").glob("*.png"))]
    assert all(np.array_equal(x, y) for x, y in zip(resumed, uninterrupted, strict=True))
    assert len(_frames(out / "street" / "pseudonymized.mp4")[0]) == 8
    assert _record(out, "street.mp4")["video"]["tracks"] == _record(whole, "street.mp4")["video"]["tracks"]


def test_bad_videos(tmp_path, anny_env, capsys):
    require_detect_models()
    d = tmp_path / "in"
    d.mkdir()
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    write_sample_video(d / "one.mp4", frames=1)
    # a street without people (a smooth synthetic scene under a pan): nothing to replace
    yy, xx = np.mgrid[0:200, 0:400]
    scene = np.stack([yy * 0.8 + 40, xx * 0.4 + 60, 200 - yy * 0.5], -1).clip(0, 255).astype(np.uint8)
    scene[120:180, 50:350] = (90, 90, 100)
    from refsd.testing.video import pan_video, write_video

    write_video(pan_video(scene, 3, (320, 160), (4, 0)), d / "empty.mp4", fps=10)
    out = tmp_path / "out"
    assert cli(["pseudonymize", str(d), "-o", str(out), "--save-frames", *ARGS]) == 1
    empty = _record(out, "empty.mp4")
    assert empty["status"] == "ok" and empty["video"]["frames"] == 3 and empty["video"]["tracks"] == {}, empty
    src, _ = _frames(d / "empty.mp4")
    from PIL import Image

    for k in range(3):  # no one found: the frames are the input's, unchanged
        assert np.array_equal(np.asarray(Image.open(out / "empty" / "frames" / f"{k:06d}.png")), src[k])
    broken = _record(out, "broken.mp4")
    assert broken["status"] == "error" and "not a readable video" in broken["error"]
    one = _record(out, "one.mp4")
    assert one["status"] == "ok" and one["video"]["frames"] == 1, one.get("error")
    assert cli(["pseudonymize", str(d), "-o", str(out), "--chunk-frames", "0", "--refiner", "none"]) == 2
    assert "--chunk-frames" in capsys.readouterr().err


def test_a_person_missing_between_sightings_is_reported(tmp_path, anny_env):
    """People from a keypoint file (the detector's, written as POSE_KEYPOINT beside the video) with the
    right-hand man left out of frame 2: his track bridges the gap, and the record names the frame, since
    a person missing there may be one nobody replaced."""
    from refsd.detect import PersonDetector
    from refsd.keypoints import to_pose_keypoint

    d = tmp_path / "in"
    d.mkdir()
    write_sample_video(d / "gap.mp4", frames=4)
    frames, _ = _frames(d / "gap.mp4")
    det = PersonDetector("full", [require_detect_models()])
    kps = []
    for k, f in enumerate(frames):
        frame = det(f).frame()
        if k == 2:
            frame.people = [min(frame.people, key=lambda p: float(np.nanmean(p.body[:, 0])))]  # the left one only
        kps.append(frame)
    (d / "gap.json").write_text(json.dumps(to_pose_keypoint(kps, coords="pixels", confidence="keep")))
    out = tmp_path / "out"
    assert cli(["pseudonymize", str(d), "-o", str(out), "--keep-failed", *ARGS]) == 1
    rec = _record(out, "gap.mp4")
    assert rec["people_source"] == "file"
    assert list(rec["video"]["gaps"].values()) == [[2]], rec["video"]
    assert any("frame(s) 2 between" in n for n in rec["notes"])
    # and he is there, unreplaced: the face check sees him (his own face, similarity ~1) and fails frame 2
    assert rec["status"] == "error" and "identity check failed" in rec["error"]
    assert rec["video"]["frames_failed"] == [2] and rec["identity"][0]["max_similarity"] > 0.9

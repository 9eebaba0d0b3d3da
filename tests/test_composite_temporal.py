"""The video background fill (refsd.composite.temporal) on real photos: the camera's motion is
recovered, what earlier frames saw fills the hole exactly, the fill never depends on what was
inside any person region, a scene cut starts afresh, and the state with its memory survives a
save/load round trip (plain npz, no pickle)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refsd.composite import remove_people
from refsd.composite.temporal import BackgroundMemory, estimate_motion, warp_image
from refsd.testing.video import pan_video

ROOT = Path(__file__).resolve().parent.parent


def _bus() -> np.ndarray:
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_photos

    img = Image.open(fetch_photos.photo_path("bus.jpg")).convert("RGB").resize((405, 540), Image.LANCZOS)
    return np.asarray(img)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).float() / 255


def _box(H: int, W: int, x0: int, y0: int = 150, w: int = 60, h: int = 240) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


@pytest.fixture(scope="module")
def pan() -> torch.Tensor:
    return _t(pan_video(_bus(), 6, (320, 480), (4, 0)))  # the camera pans 4 px right per frame


def test_a_pan_is_recovered_to_a_fraction_of_a_pixel(pan):
    """4 px per frame to the right: A's x translation is 4 px in normalized units (2 / width per px).
    Whole-pixel shifts of a real photo: bilinear sampling is exact at the solution, so what is
    left is the solver's convergence (well under 0.05 px)."""
    H, W = pan.shape[1:3]
    a, b = _box(H, W, 100), _box(H, W, 140)
    A, residual, support = estimate_motion(pan[0] * (~a)[..., None], pan[1], ~a, ~b)
    assert abs(float(A[0, 2]) * W / 2 - 4.0) < 0.05
    assert abs(float(A[1, 2]) * H / 2) < 0.05
    assert torch.allclose(A[:, :2], torch.eye(2), atol=1e-3)
    assert residual < 2 / 255 and support > 0.5
    # a still camera: the identity
    A, residual, _ = estimate_motion(pan[2], pan[2], ~a, ~b)
    assert torch.allclose(A, torch.tensor([[1.0, 0, 0], [0, 1, 0]]), atol=1e-4) and residual < 1e-4


def test_a_zoom_and_turn_are_recovered(pan):
    """An affine motion (2 % zoom, 1 degree turn, a shift) made with warp_image itself is found again."""
    c, s = np.cos(np.radians(1.0)) * 1.02, np.sin(np.radians(1.0)) * 1.02
    truth = torch.tensor([[c, -s, 0.03], [s, c, -0.02]], dtype=torch.float32)
    moved, inside = warp_image(pan[0], truth)
    H, W = pan.shape[1:3]
    A, residual, _ = estimate_motion(pan[0], moved, torch.ones(H, W, dtype=torch.bool), inside)
    assert torch.allclose(A, truth, atol=2e-3), A
    assert residual < 3 / 255


def test_what_earlier_frames_saw_fills_the_hole_and_nothing_of_a_person_survives(pan):
    """A still camera (one photo) with a 'person' box moving 20 px per frame: the part of the hole
    the previous frame saw is filled with exactly that background; only the never-seen rest gets
    the classical fill. The result never depends on the pixels inside either frame's region:
    filling noise into them changes nothing (privacy by construction)."""
    frame = pan[0]
    H, W = frame.shape[:2]
    prev_hole, hole = _box(H, W, 100), _box(H, W, 120)
    mem = BackgroundMemory()
    bg0, unseen0, info0 = mem.fill(frame, prev_hole)
    assert info0["from_memory"] == 0.0 and torch.equal(unseen0, prev_hole)
    assert torch.equal(bg0, remove_people(frame, prev_hole))
    mem.remember(frame, prev_hole, bg0)
    out, unseen, info = mem.fill(frame, hole)
    seen = hole & ~prev_hole  # the previous frame saw these pixels: the true background comes back
    assert (out[seen] - frame[seen]).abs().max() < 1.5 / 255
    assert torch.equal(unseen, torch.zeros_like(hole))  # a still camera: every hole pixel is in the memory
    assert info["from_memory"] == 1.0 and not info["cut"]
    assert torch.equal(out[~hole], frame[~hole])
    # the same again with noise where the 'people' were, in both frames: the same output
    g = torch.Generator().manual_seed(0)
    noisy = lambda m: torch.where(m[..., None], torch.rand(H, W, 3, generator=g), frame)  # noqa: E731
    mem2 = BackgroundMemory()
    b, _, _ = mem2.fill(noisy(prev_hole), prev_hole)
    mem2.remember(noisy(prev_hole), prev_hole, b)
    out2, _, _ = mem2.fill(noisy(hole), hole)
    assert torch.equal(out2, out)
    assert not bool((mem2.frame[prev_hole] != 0).any())  # the memory keeps no pixel of the region


def test_a_panning_camera_brings_back_the_background_behind_a_person(pan):
    """Under the pan the remembered background is warped into place: hole pixels the previous frame
    saw come back to within the bilinear-sampling error of a whole-pixel shift (< 2 grey levels),
    the frame's edge that just came into view is the classical fill's (unseen)."""
    H, W = pan.shape[1:3]
    prev_hole, hole = _box(H, W, 100), _box(H, W, 110, w=60)
    mem = BackgroundMemory()
    bg, _, _ = mem.fill(pan[0], prev_hole)
    mem.remember(pan[0], prev_hole, bg)
    out, unseen, info = mem.fill(pan[1], hole)
    # frame 1 pixel x shows photo x + 4 = frame 0 pixel x + 4; seen by frame 0 where that was outside its hole
    xs = torch.arange(W)
    seen_cols = ~((xs + 4 >= 100) & (xs + 4 < 160))
    seen = hole & seen_cols[None, :]
    assert int(seen.sum()) > 0
    assert float((out[seen] - pan[1][seen]).abs().max()) < 2 / 255
    assert info["from_memory"] == 1.0 and not bool(unseen.any())


def test_a_scene_cut_starts_afresh(pan):
    """Frames that do not align (another photo) are a cut: the classical per-frame fill."""
    H, W = pan.shape[1:3]
    other = _t(np.asarray(Image.open(ROOT / "samples" / "camera.png").convert("RGB").resize((W, H))))
    hole = _box(H, W, 100)
    mem = BackgroundMemory()
    mem.remember(pan[0], hole, remove_people(pan[0], hole))
    out, unseen, info = mem.fill(other, hole)
    assert info["cut"] and torch.equal(unseen, hole)
    assert torch.equal(out, remove_people(other, hole))


def test_video_state_round_trip_keeps_the_memory(tmp_path, pan):
    from refsd.pipeline.video import VideoState

    H, W = pan.shape[1:3]
    hole = _box(H, W, 100)
    st = VideoState(frames_done=6)
    st.background.remember(pan[0], hole, remove_people(pan[0], hole))
    st.follow = [{"align": ((1.0, 2.0), (3.0, 4.0)), "landmarks": [[1.0, 2.0]] * 33}]
    st.save(tmp_path / "state.json", {"frames_meta": [1, 2]})
    st.frames_done = 12
    st.save(tmp_path / "state.json", {"frames_meta": [1, 2, 3]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.12.npz"]  # the old one gone
    back, data = VideoState.load(tmp_path / "state.json")
    assert data["frames_meta"] == [1, 2, 3] and back.frames_done == 12
    for k in ("frame", "valid", "background", "observed"):
        assert torch.equal(getattr(back.background, k), getattr(st.background, k))
    assert back.follow[0]["align"] == [[1.0, 2.0], [3.0, 4.0]]
    (tmp_path / "state.json.12.npz").write_bytes(b"damaged")
    with pytest.raises(Exception, match="background memory .* missing or damaged"):
        VideoState.load(tmp_path / "state.json")

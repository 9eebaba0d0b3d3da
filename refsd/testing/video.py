"""Test videos made from real photos: :func:`pan_video` slides a window over a photo (the people in
it move across the frame, as under a panning camera) and :func:`write_video` encodes frames with
PyAV (H.264 in MP4, the ComfyUI runtime's own video library)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["pan_video", "write_video"]


def pan_video(photo: np.ndarray, frames: int, size: tuple[int, int], shift: tuple[float, float]) -> np.ndarray:
    """``(F, h, w, 3)`` uint8: a ``size`` (w, h) window moving by ``shift`` (px per frame) over ``photo``."""
    w, h = size
    H, W = photo.shape[:2]
    out = []
    for t in range(frames):
        x = int(round(min(max(0.0, shift[0] * t), W - w)))
        y = int(round(min(max(0.0, shift[1] * t), H - h)))
        out.append(photo[y:y + h, x:x + w])
    return np.stack(out)


def write_video(frames: np.ndarray, path: str | Path, fps: float = 10.0) -> Path:
    """Encode ``(F, h, w, 3)`` uint8 frames as H.264 MP4 (yuv420p: even sizes) at ``fps``."""
    import av

    path = Path(path)
    F, h, w = frames.shape[:3]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        s.options = {"crf": "12"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: s.height, : s.width]), format="rgb24")))
        c.mux(s.encode())
    return path

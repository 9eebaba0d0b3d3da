"""Diffusion refinement across the frames of a video: a tracked person's texture carries over.

Each crop is refined with its track's seed (:func:`~refsd.pipeline.result.person_seed`), so the
noise is the same from frame to frame; on its own that is not enough, since the start image (the
avatar composited on the cleaned frame) moves and img2img at 0.6 re-invents much of the texture.
So where a tracked person's pose changed little since the last frame (the silhouettes of the two
crops, centred on each other, overlap by at least ``min_iou``), the last frame's refined crop,
moved onto the new silhouette, is the img2img start inside the part of the silhouette both
frames share, and the crop is refined at the lower ``denoise`` (default 0.35): the ControlNets
still follow the new pose, the texture stays the one the person already had. A new track, a big
change of pose (a turn, a sit-down) or a cut gets the full ``pipe.denoise`` again.

Privacy: the start pixels come from the last frame's output (the avatar as refined) and from
this frame's composite (the cleaned frame): nothing of the photo's people.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

__all__ = ["CONTINUE_DENOISE", "CONTINUE_IOU", "RefinedCrop", "refine_frame"]

#: img2img strength of a crop that continues its track's last refined crop.
CONTINUE_DENOISE = 0.35
#: Silhouette IoU (crops centred on each other) from which a crop continues the last one.
CONTINUE_IOU = 0.8


@dataclass
class RefinedCrop:
    """A track's last refined crop ``(h, w, 3)`` and its avatar silhouette ``(h, w)`` in the crop."""

    crop: torch.Tensor
    alpha: torch.Tensor


def _centroid(a: torch.Tensor) -> tuple[float, float]:
    m = (a > 0.5).float()
    n = float(m.sum())
    if n == 0:
        return a.shape[0] / 2, a.shape[1] / 2
    ys = torch.arange(a.shape[0], dtype=torch.float32)[:, None]
    xs = torch.arange(a.shape[1], dtype=torch.float32)[None, :]
    return float((m * ys).sum()) / n, float((m * xs).sum()) / n


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (h, w, ...) moved by whole pixels, zeros where nothing moved in."""
    out = torch.zeros_like(x)
    h, w = x.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = x[ys, xs]
    return out


def continue_start(prev: RefinedCrop, crop: torch.Tensor, alpha: torch.Tensor,
                   min_iou: float = CONTINUE_IOU) -> tuple[torch.Tensor | None, float]:
    """The img2img start of ``crop`` from its track's last refined crop: ``(start, iou)``, or
    ``(None, iou)`` when the pose changed too much (module docstring)."""
    if prev.crop.shape != crop.shape:
        return None, 0.0
    (cy, cx), (py, px) = _centroid(alpha), _centroid(prev.alpha)
    dy, dx = round(cy - py), round(cx - px)
    if abs(dy) >= crop.shape[0] or abs(dx) >= crop.shape[1]:
        return None, 0.0
    pa, pc = _shift(prev.alpha.float().cpu(), dy, dx) > 0.5, _shift(prev.crop.float().cpu(), dy, dx)
    cur = alpha.float().cpu() > 0.5
    union = int((pa | cur).sum())
    iou = int((pa & cur).sum()) / union if union else 0.0
    if iou < min_iou:
        return None, iou
    return torch.where((pa & cur)[..., None], pc, crop.float().cpu()), iou


def refine_frame(pipe, prep, memory: dict, denoise: float = CONTINUE_DENOISE,
                 min_iou: float = CONTINUE_IOU) -> tuple[torch.Tensor, list[str], int]:
    """Refine the crops of one prepared video frame (``pipe._build``'s) with ``pipe.refiner``:
    new or much-changed tracks at ``pipe.denoise``, continuing ones from their last refined crop
    at ``denoise``. ``memory`` (track id -> :class:`RefinedCrop`) is read and updated.
    Returns the refined crops ``(k, h, w, 3)`` in ``prep.boxes`` order, the refiner's notes and
    how many crops continued."""
    t0 = time.perf_counter()
    tracks = [prep.fit.people[b.person_index].track_id for b in prep.boxes]
    starts, cont = prep.crops.float().cpu().clone(), []
    for i, tid in enumerate(tracks):
        if tid is not None and tid in memory:
            start, _iou = continue_start(memory[tid], prep.crops[i], prep.masks[i], min_iou)
            if start is not None:
                starts[i] = start
                cont.append(i)
    new = [i for i in range(len(tracks)) if i not in cont]
    out = torch.zeros_like(starts)
    notes: list[str] = []
    for idx, strength in ((new, pipe.denoise), (cont, denoise)):
        if not idx:
            continue
        prompts = [prep.prompts[i] for i in idx]
        refined, n = pipe.refiner.refine(
            starts[idx], {c: prep.maps[c][idx] for c in pipe.refiner.controls}, prep.masks[idx],
            [a for a, _ in prompts], [b for _, b in prompts], [prep.seeds[i] for i in idx],
            steps=pipe.steps, strength=strength, guidance=pipe.guidance)
        out[idx] = refined.float().cpu()
        notes += n
    for i, tid in enumerate(tracks):
        if tid is not None:
            memory[tid] = RefinedCrop(out[i].clone(), prep.masks[i].float().cpu().clone())
    prep.timings["refine"] = time.perf_counter() - t0
    return out, notes, len(cont)

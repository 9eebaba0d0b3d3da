"""People removal for video (stage 3 over frames): the background found in earlier frames fills
the hole, so the fill stays put from frame to frame instead of being re-invented every frame.

A person who walks uncovers the background behind where they stood; a panning camera shows what
was hidden a moment ago. :class:`BackgroundMemory` keeps the last frame's clean background
(real background wherever it was seen, the fill elsewhere) and the last frame with its person
region blanked. For the next frame, :func:`estimate_motion` aligns the two frames on the
pixels outside both person regions (the camera's motion as a 2-D affine map: Gauss-Newton on an
image pyramid, Huber weights so that other moving things count less); the remembered background,
warped by that motion, fills the hole, a membrane (harmonic interpolation of the mismatch on the
hole's rim) makes it meet the frame's own pixels without a seam (exposure changes, compression),
and only the pixels never seen before (entering at the frame's edge) get the classical per-frame
fill (:func:`~refsd.composite.removal.remove_people`). A scene cut (the frames do not align)
starts the memory afresh.

Privacy as in :func:`remove_people`: a hole pixel comes from the current frame outside its
person region or from the memory, whose pixels all came from earlier frames outside their
person regions (never from a person region: those are blanked before anything is kept), so no
pixel of a removed person can survive, in the frame or in the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .region import _check_image, _check_mask
from .removal import _smooth_fill, remove_people

__all__ = ["BackgroundMemory", "estimate_motion", "warp_image"]

#: Alignment that leaves a median absolute grey difference above this (0..1) is a scene cut.
MAX_RESIDUAL = 0.08
#: ... and so is an alignment that rests on less than this fraction of the frame.
MIN_SUPPORT = 0.15
_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def _grey(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])[None, None]


def _coords(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, v)`` ``(h, w)``: every pixel centre in normalized coordinates (grid_sample, align_corners=False)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1
    v, u = torch.meshgrid(ys, xs, indexing="ij")
    return u, v


def _grid(A: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sampling grid ``(1, h, w, 2)``: output pixel (normalized coordinates) -> ``A @ [u, v, 1]``."""
    u, v = _coords(h, w, A.device)
    pts = torch.stack([u, v, torch.ones_like(u)], -1)  # (h, w, 3)
    return (pts @ A.T)[None]


def warp_image(image: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` ``(H, W, C)`` seen through the motion ``A`` (2 x 3, normalized coordinates, from
    :func:`estimate_motion`): ``(warped, inside)``, ``inside`` ``(H, W)`` bool where the warped
    pixel came from within ``image`` (bilinear)."""
    H, W = image.shape[:2]
    g = _grid(A.to(image.device, torch.float32), H, W)
    out = F.grid_sample(image.permute(2, 0, 1)[None].float(), g, mode="bilinear", padding_mode="border",
                        align_corners=False)[0].permute(1, 2, 0)
    lim_x, lim_y = 1 - 1.0 / W, 1 - 1.0 / H  # centres of the outermost pixels
    inside = (g[0, ..., 0].abs() <= lim_x + 1e-6) & (g[0, ..., 1].abs() <= lim_y + 1e-6)
    return out, inside


def _pyramid(x: torch.Tensor, valid: torch.Tensor, min_side: int = 24) -> list[tuple[torch.Tensor, torch.Tensor]]:
    levels = [(x, valid)]
    while min(levels[-1][0].shape[-2:]) >= 2 * min_side:
        px, pv = levels[-1]
        levels.append((F.avg_pool2d(px, 2), -F.max_pool2d(-pv, 2)))  # a coarse pixel is valid if all four are
    return levels[::-1]


def _gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


def estimate_motion(
    previous: torch.Tensor, current: torch.Tensor, valid_previous: torch.Tensor, valid_current: torch.Tensor,
    iters: int = 12,
) -> tuple[torch.Tensor, float, float]:
    """The camera's motion from ``previous`` to ``current`` (``(H, W, 3)`` 0..1 frames) on the
    pixels valid in both (``(H, W)`` bool: outside the person regions): a 2 x 3 affine ``A`` in
    normalized coordinates with ``current(x) ~ previous(A [x, 1])``, the median absolute grey
    residual after alignment (0..1) and the fraction of the frame it rests on.

    Forward-additive Lucas-Kanade (Baker and Matthews 2004) on a pyramid down to ~24 px:
    translation first at the coarsest level, then the full affine map; Huber-weighted
    Gauss-Newton (scale from the residuals' median absolute deviation), so that what moves on
    its own (cars, other unmasked movers) weighs less than the static scene."""
    dev = current.device
    A = torch.tensor(_IDENTITY, device=dev, dtype=torch.float32)
    prev_l = _pyramid(_grey(previous.to(dev).float()), valid_previous.to(dev).float()[None, None])
    cur_l = _pyramid(_grey(current.float()), valid_current.to(dev).float()[None, None])
    for level, ((pg, pv), (cg, cv)) in enumerate(zip(prev_l, cur_l, strict=True)):
        h, w = cg.shape[-2:]
        gx, gy = _gradient(pg)
        u, v = _coords(h, w, dev)
        for it in range(iters * (2 if level == 0 else 1)):
            g = _grid(A, h, w)
            stack = torch.cat([pg, gx, gy, pv], 1)
            s = F.grid_sample(stack, g, mode="bilinear", padding_mode="border", align_corners=False)[0]
            inside = (g[0, ..., 0].abs() <= 1) & (g[0, ..., 1].abs() <= 1)
            m = (s[3] > 0.999) & (cv[0, 0] > 0.5) & inside
            if int(m.sum()) < 12:
                break
            r = (s[0] - cg[0, 0])[m]
            # d/d(normalized coordinate) = d/d(pixel) * (size / 2)
            ix, iy = s[1][m] * (w / 2), s[2][m] * (h / 2)
            uu, vv = u[m], v[m]
            if level == 0 and it < iters:  # translation only at the coarsest level, first
                J = torch.stack([ix, iy], 1)
            else:
                J = torch.stack([ix * uu, ix * vv, ix, iy * uu, iy * vv, iy], 1)
            sigma = 1.4826 * (r - r.median()).abs().median().clamp_min(1e-3)
            wt = (1.345 * sigma / r.abs().clamp_min(1e-12)).clamp(max=1.0)
            JW = J * wt[:, None]
            H_ = JW.T @ J + 1e-6 * torch.eye(J.shape[1], device=dev)
            dp = -torch.linalg.solve(H_, JW.T @ r)
            step = torch.zeros(6, device=dev)
            if J.shape[1] == 2:
                step[2], step[5] = dp[0], dp[1]
            else:
                step = dp
            A = A + step.reshape(2, 3)
            if float(step.abs().max()) < 1e-5:
                break
    pg, pv = prev_l[-1]
    cg, cv = cur_l[-1]
    g = _grid(A, *cg.shape[-2:])
    s = F.grid_sample(torch.cat([pg, pv], 1), g, mode="bilinear", padding_mode="border", align_corners=False)[0]
    m = (s[1] > 0.999) & (cv[0, 0] > 0.5) & (g[0, ..., 0].abs() <= 1) & (g[0, ..., 1].abs() <= 1)
    support = float(m.float().mean())
    residual = float((s[0] - cg[0, 0])[m].abs().median()) if bool(m.any()) else 1.0
    return A, residual, support


@dataclass
class BackgroundMemory:
    """What the next frame's fill needs from the last: its frame with the person region blanked
    (for aligning), and its clean background. Holds no pixel of any person (module docstring)."""

    frame: torch.Tensor | None = None  # (H, W, 3), 0 inside the last person region
    valid: torch.Tensor | None = None  # (H, W) bool: outside the last person region
    background: torch.Tensor | None = None  # (H, W, 3) the last clean background
    observed: torch.Tensor | None = None  # (H, W) bool: background pixels some frame saw (not a fill)
    _next: torch.Tensor | None = None  # what :meth:`fill` found observed, for :meth:`remember`

    def fill(self, image: torch.Tensor, mask: torch.Tensor, smooth_iters: int = 60,
             texture: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Remove the people of ``image`` inside ``mask`` using the memory: ``(background, unseen,
        info)`` with ``unseen`` ``(H, W)`` bool, the hole pixels the memory could not give (filled
        by :func:`remove_people`; an SD fill may regenerate just those), and ``info`` the motion,
        residual and the fraction of the hole filled from the memory. Does not update the memory
        (:meth:`remember`)."""
        img = _check_image(image)
        H, W = img.shape[:2]
        hole = _check_mask(mask.to(img.device), (H, W)) > 0.5
        info: dict = {"from_memory": 0.0, "motion": None, "residual": None, "cut": False}
        if not bool(hole.any()):
            self._next = ~hole
            return img.clone(), hole, info
        self._next = ~hole
        if self.background is None or tuple(self.background.shape[:2]) != (H, W):
            return remove_people(img, hole, smooth_iters, texture), hole, info
        A, residual, support = estimate_motion(self.frame, img, self.valid, ~hole)
        info.update(motion=[round(float(a), 6) for a in A.reshape(-1)], residual=round(residual, 5))
        if residual > MAX_RESIDUAL or support < MIN_SUPPORT:
            info["cut"] = True
            return remove_people(img, hole, smooth_iters, texture), hole, info
        stack = torch.cat([self.background.to(img.device).float(), self.observed.to(img.device).float()[..., None]], -1)
        warped, inside = warp_image(stack, A)
        warped, observed = warped[..., :3], (warped[..., 3] > 0.999) & inside
        use = hole & inside
        unseen = hole & ~inside
        # the membrane: the frame-vs-memory mismatch on the hole's outer rim where the memory holds seen
        # background (exposure, white balance), spread smoothly inside; 0 for an unchanged scene
        ring = (F.max_pool2d(hole.float()[None, None], 3, 1, 1)[0, 0] > 0.5) & ~hole & observed
        if bool(ring.any()):
            mismatch = torch.where(ring[..., None], img - warped, torch.zeros_like(img))
            warped = warped + _smooth_fill(mismatch, ring, smooth_iters)
        out = torch.where(use[..., None], warped.clamp(0, 1), img)
        if bool(unseen.any()):
            out = remove_people(out, unseen, smooth_iters, texture)
        out = torch.where(hole[..., None], out, img)
        info["from_memory"] = round(float(use.sum()) / float(hole.sum()), 4)
        self._next = ~hole | (use & observed)
        return out, unseen, info

    def remember(self, image: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> None:
        """Keep this frame for the next: its person region blanked, and its clean ``background``
        (after :meth:`fill` of the same frame, which found which of its pixels were ever seen)."""
        img = _check_image(image)
        hole = _check_mask(mask.to(img.device), img.shape[:2]) > 0.5
        self.frame = torch.where(hole[..., None], torch.zeros_like(img), img).float()
        self.valid = ~hole
        self.background = background.detach().to(img.device).float().clone()
        nxt = self._next
        self.observed = nxt.to(img.device) if nxt is not None and nxt.shape == hole.shape else ~hole
        self._next = None

    def reset(self) -> None:
        self.frame = self.valid = self.background = self.observed = self._next = None

    def arrays(self) -> dict:
        """The memory as numpy arrays (for :meth:`from_arrays`, e.g. in an ``.npz``)."""
        return {k: getattr(self, k).cpu().numpy() for k in ("frame", "valid", "background", "observed")}

    def from_arrays(self, arrays, device=None) -> None:
        for k in ("frame", "valid", "background", "observed"):
            setattr(self, k, torch.from_numpy(np.asarray(arrays[k])).to(device))

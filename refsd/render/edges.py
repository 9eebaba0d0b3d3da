"""Edges pass: Canny edges of the shaded avatar, as ComfyUI's core ``Canny`` node computes them.

``edges``, ``CONTROLNET.md`` §4 (``control_v11p_sd15_canny``): white edges on black, exactly 0
or 1, 3 equal channels: the Canny detector of ComfyUI's core ``Canny`` node
(``kornia.filters.canny`` with its 0.4 / 0.8 defaults: BT.601 grey, 5x5 Gaussian sigma 1,
unnormalised Sobel, non-maximum suppression, hysteresis) run on ``rgb`` (the avatar over black).
:func:`canny` reimplements kornia's algorithm (same rules, padding, rounding and tie breaks;
bit-identical edges in the tests) on the people's bounding box only (:func:`_bbox_canny`, what
:func:`refsd.render.passes.render_passes` calls), with a connected-component hysteresis instead
of kornia's one-pixel-per-round loop (kornia takes 0.15-0.7 s at 512 x 512 on CPU and over a
minute at 4096 x 4096; this takes 3 ms and 0.5 s); kornia is not needed at run time.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..fit.camera import RenderError

__all__ = ["CANNY_LOW", "CANNY_HIGH", "canny"]

#: Default Canny thresholds of ComfyUI's core ``Canny`` node (CONTROLNET.md §4).
CANNY_LOW, CANNY_HIGH = 0.4, 0.8
_CANNY_EPS = 1e-6  # kornia.filters.canny's eps inside the gradient magnitude's square root
_CANNY_MARGIN = 6  # black pixels kept around the people's box: the detector reads 5 px around a pixel


def _check_thresholds(low: Any, high: Any) -> None:
    for name, v in (("canny_low", low), ("canny_high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise RenderError(f"{name} is {v!r}; it must be a positive number (ComfyUI's Canny defaults: 0.4, 0.8).")
    if low > high:
        raise RenderError(f"canny_low ({low}) is above canny_high ({high}); swap them.")


# ---------------------------------------------------------------------------
# Canny (kornia.filters.canny's algorithm, cropped, component hysteresis)
# ---------------------------------------------------------------------------
def _gaussian5(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """kornia's ``get_gaussian_kernel1d(5, 1.0)``, computed the same way (same rounding)."""
    x = torch.arange(5, dtype=dtype, device=device) - 2.0
    dist = x.pow(2.0)
    g = torch.exp(-dist / (2 * torch.ones((), dtype=dtype, device=device).pow(2.0)))
    return g / g.sum()


def _blur5(x: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """5-tap filter along ``dim`` (0 rows, 1 columns) of a 2-D tensor with reflect padding.

    Accumulates exactly as kornia's CPU ``gaussian_blur2d`` (one product, then ``addcmul_`` per tap).
    """
    n = x.shape[dim]
    pad = (2, 2, 0, 0) if dim == 1 else (0, 0, 2, 2)
    mode = "reflect" if n > 2 else "replicate"
    p = torch.nn.functional.pad(x[None, None], pad, mode=mode)[0, 0]
    out = p.narrow(dim, 0, n) * g[0]
    for k in range(1, 5):
        out.addcmul_(p.narrow(dim, k, n), g[k])
    return out


def _sobel_kernels(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(2, 1, 3, 3)`` unnormalised Sobel x, y kernels (kornia ``spatial_gradient(normalized=False)``)."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device)
    return torch.stack((k, k.t()))[:, None]


def _canny_crop(gray: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny edges (bool) of a 2-D grey image, kornia.filters.canny's rules.

    The dense part (blur, Sobel, magnitude) runs on the whole image; non-maximum suppression and
    hysteresis only on the pixels whose magnitude exceeds ``low`` (the only ones that can be edges).
    """
    h, w = gray.shape
    g = _gaussian5(gray.dtype, gray.device)
    blurred = _blur5(_blur5(gray, g, 1), g, 0)
    # Unnormalised Sobel with replicate padding (kornia.filters.spatial_gradient(normalized=False)).
    # Same padding and convolution call as kornia, so the gradients round the same way.
    p = torch.nn.functional.pad(blurred[None, None], (1, 1, 1, 1), mode="replicate")
    grad = torch.nn.functional.conv2d(p, _sobel_kernels(gray.dtype, gray.device))[0]
    gx, gy = grad[0], grad[1]
    del p, blurred
    floor = torch.sqrt(torch.tensor(_CANNY_EPS, dtype=gray.dtype, device=gray.device))
    w2 = w + 2
    mp = floor.expand(h + 2, w2).clone()  # magnitude, padded with that of a flat pixel (as kornia)
    mag = mp[1:-1, 1:-1]
    torch.sqrt(gx * gx + gy * gy + _CANNY_EPS, out=mag)
    out = torch.zeros(h * w, dtype=torch.bool, device=gray.device)
    cand = (mag > low).reshape(-1).nonzero().squeeze(1)  # nms > low needs magnitude > low (low > 0)
    if cand.numel() == 0:
        return out.view(h, w)
    # Gradient direction rounded to 45 degrees, folded to 4 classes: 0 horizontal, 1 diagonal
    # down-right, 2 vertical, 3 diagonal down-left. Neighbour offsets in the padded magnitude; the
    # comparison with the right (class 0) / lower (class 2) neighbour accepts a tie (kornia, cv2.Canny).
    ang = torch.atan2(gy.reshape(-1).index_select(0, cand), gx.reshape(-1).index_select(0, cand)).nan_to_num_()
    cls = (ang * (4 / math.pi)).round_().remainder_(4).long()
    offsets = torch.tensor([1, w2 + 1, w2, w2 - 1], device=gray.device)
    off = offsets.index_select(0, cls)
    row = torch.div(cand, w, rounding_mode="floor")
    pidx = cand + 2 * row + (w2 + 1)  # (row + 1) * (w + 2) + col + 1
    mf = mp.reshape(-1)
    mc = mf.index_select(0, pidx)
    a = mf.index_select(0, pidx + off)
    b = mf.index_select(0, pidx - off)
    tie = (cls & 1) == 0
    keep = ((mc > a) | (tie & (mc == a))) & (mc > b) & (mc > floor)
    cand, mc = cand[keep], mc[keep]
    return _hysteresis(cand, mc > high, out, w).view(h, w)


def _hysteresis(idx: torch.Tensor, strong: torch.Tensor, out: torch.Tensor, w: int) -> torch.Tensor:
    """Mark in ``out`` (flat bool) the candidates ``idx`` (sorted flat indices, row width ``w``)
    8-connected through candidates to a ``strong`` one.

    Same result as kornia's repeated rounds of "a weak pixel next to a strong one becomes
    strong", computed as connected components of the (few) candidate pixels by union-find
    (hook the larger root onto the smaller, then pointer jumping), which takes a handful of
    vectorised rounds instead of one round per pixel of the longest weak chain.
    """
    K = idx.numel()
    if K == 0:
        return out
    if bool(strong.all()):
        out[idx] = True
        return out
    r = torch.div(idx, w, rounding_mode="floor")
    c = idx - r * w
    src, dst = [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        q = idx + (dr * w + dc)
        ok = (c + dc >= 0) & (c + dc < w)
        pos = torch.searchsorted(idx, q).clamp_(max=K - 1)
        found = ok & (idx.index_select(0, pos) == q)
        src.append(found.nonzero().squeeze(1))
        dst.append(pos[found])
    s, d = torch.cat(src), torch.cat(dst)
    parent = torch.arange(K, device=idx.device)
    while s.numel():
        rs, rd = parent.index_select(0, s), parent.index_select(0, d)
        diff = rs != rd
        s, d, rs, rd = s[diff], d[diff], rs[diff], rd[diff]
        if s.numel() == 0:
            break
        parent.scatter_reduce_(0, torch.maximum(rs, rd), torch.minimum(rs, rd), reduce="amin")
        while True:  # pointer jumping until every entry points at its root
            jumped = parent.index_select(0, parent)
            if torch.equal(jumped, parent):
                break
            parent = jumped
    good = torch.zeros(K, dtype=torch.bool, device=idx.device)
    good[parent[strong]] = True
    out[idx[good.index_select(0, parent)]] = True
    return out


def _bbox_canny(image: torch.Tensor, low: float, high: float, box: tuple[int, int, int, int] | None) -> torch.Tensor:
    H, W = image.shape[:2]
    out = torch.zeros(H, W, dtype=torch.float32, device=image.device)
    if box is None:
        return out
    m = _CANNY_MARGIN
    r0, r1 = max(box[0] - m, 0), min(box[1] + m, H)
    c0, c1 = max(box[2] - m, 0), min(box[3] + m, W)
    crop = image[r0:r1, c0:c1].to(torch.float32)
    gray = crop[..., 0] * 0.299 + crop[..., 1] * 0.587 + crop[..., 2] * 0.114 if crop.dim() == 3 else crop
    out[r0:r1, c0:c1] = _canny_crop(gray, float(low), float(high)).to(torch.float32)
    return out


def canny(
    image: torch.Tensor,
    low_threshold: float = CANNY_LOW,
    high_threshold: float = CANNY_HIGH,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Canny edges ``(H, W)`` float 0/1 of an ``(H, W, 3)`` RGB (or ``(H, W)`` grey) image in 0..1.

    The algorithm and thresholds of ``kornia.filters.canny`` (ComfyUI's core ``Canny`` node,
    CONTROLNET.md §4): BT.601 grey, 5x5 Gaussian (sigma 1, reflect border), unnormalised Sobel
    (replicate border), gradient magnitude ``sqrt(gx^2 + gy^2 + 1e-6)``, non-maximum suppression
    along the gradient rounded to 45 degrees (ties kept towards right / down), strict thresholds,
    8-connected hysteresis. With ``mask`` (``(H, W)`` bool: where the image may be non-black) the
    work is limited to the mask's bounding box plus a black margin, which gives the same edges.
    """
    _check_thresholds(low_threshold, high_threshold)
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3) or (image.dim() == 3 and image.shape[-1] != 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise RenderError(f"canny expects an (H, W, 3) RGB or (H, W) grey tensor in 0..1, got {shape}.")
    H, W = image.shape[:2]
    if mask is None:
        box = (0, H, 0, W)
    else:
        if not isinstance(mask, torch.Tensor) or mask.shape != (H, W):
            raise RenderError(f"canny mask must be an (H, W) = ({H}, {W}) bool tensor.")
        rows = mask.any(dim=1).nonzero()
        cols = mask.any(dim=0).nonzero()
        box = None if rows.numel() == 0 else (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    return _bbox_canny(image, low_threshold, high_threshold, box)

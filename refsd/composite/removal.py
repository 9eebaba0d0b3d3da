"""People removal (stage 3): the person region filled from the background around it (pure PyTorch).

Privacy by construction: :func:`remove_people` computes every pixel inside the mask from
pixels outside it only, so no pixel of a removed person can survive and the result does not
depend on what was inside. Two classical, model-free fills: an exemplar-based texture fill
(Criminisi-style patch copying on a small copy of the photo, upsampled, met to the rim by a
harmonic membrane and made seamless by a Poisson blend), and a smooth fill (a multi-scale
push-pull fill refined by harmonic diffusion), used alone with ``texture=False`` or when no
source patch exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .region import CompositeError, _check_image, _check_mask

__all__ = ["remove_people"]


def _smooth_fill(img: torch.Tensor, known: torch.Tensor, smooth_iters: int) -> torch.Tensor:
    """Values for the pixels where ``known`` (``(H, W)`` bool) is False, from the known ones only:
    a push-pull (pyramid) fill refined by ``smooth_iters`` Jacobi iterations of the Laplace
    equation. ``img`` ``(H, W, C)``; returns ``(H, W, C)`` (known pixels unchanged)."""
    hole = ~known
    k = known.float()
    x = (img * k[..., None]).permute(2, 0, 1)[None]  # (1, C, H, W), unknown pixels zeroed first
    w = k[None, None]
    levels = [(x, w)]
    while min(levels[-1][0].shape[-2:]) > 1:
        cx, cw = levels[-1]
        levels.append((F.avg_pool2d(cx, 2, ceil_mode=True), F.avg_pool2d(cw, 2, ceil_mode=True)))
    fx, fw = levels[-1]
    fill = fx / fw.clamp_min(1e-8)
    for cx, cw in reversed(levels[:-1]):
        up = F.interpolate(fill, size=cx.shape[-2:], mode="bilinear", align_corners=False)
        alpha = cw.clamp(0, 1)
        fill = alpha * (cx / cw.clamp_min(1e-8)) + (1 - alpha) * up
    out = torch.where(hole[None, None], fill, x)[0]  # (C, H, W)
    if smooth_iters > 0 and bool(hole.any()):
        # Jacobi sweeps on the unknown pixels' bounding box (+1 px of boundary) only
        ys, xs = torch.nonzero(hole, as_tuple=True)
        H, W = hole.shape
        y0, y1 = max(0, int(ys.min()) - 1), min(H, int(ys.max()) + 2)
        x0, x1 = max(0, int(xs.min()) - 1), min(W, int(xs.max()) + 2)
        sub, h = out[:, y0:y1, x0:x1], hole[y0:y1, x0:x1][None]
        for _ in range(smooth_iters):
            p = F.pad(sub[None], (1, 1, 1, 1), mode="replicate")[0]
            avg = 0.25 * (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:])
            sub = torch.where(h, avg, sub)
        out = out.clone()
        out[:, y0:y1, x0:x1] = sub
    return out.permute(1, 2, 0)


def _exemplar_offsets(
    small: torch.Tensor, hole: torch.Tensor, patch: int = 7, locality: float = 0.02
) -> torch.Tensor | None:
    """Exemplar-based fill of a small image (Criminisi, Perez and Toyama 2004).

    ``small`` ``(h, w, 3)``, ``hole`` ``(h, w)`` bool. Repeatedly, the hole-front pixel of highest
    priority (confidence: how much of its ``patch`` x ``patch`` neighbourhood is known, times the
    data term: how strongly an edge of the known image runs into the front there, so a horizon
    or a wall edge is continued first) gets its whole patch's missing pixels copied from the
    known source patch that matches its known part best (sum of squared differences, plus
    ``locality`` x squared distance / size^2 to prefer nearby texture). Source patches lie
    entirely outside the hole. Returns the ``(h, w, 2)`` long offsets (source - target; 0 outside
    the hole), or None when there is no complete source patch.
    """
    h, w = hole.shape
    r = patch // 2
    dev = small.device
    known = ~hole
    src_ok = (1 - F.max_pool2d(hole.float()[None, None], patch, 1, r))[0, 0] > 0.5  # eroded known
    src_ok[:r], src_ok[h - r :], src_ok[:, :r], src_ok[:, w - r :] = False, False, False, False
    if not bool(src_ok.any()):
        return None
    pad_v = F.pad(small.permute(2, 0, 1)[None], (r, r, r, r), mode="replicate")[0]  # (3, h+2r, w+2r)
    # patch pixel grid around (0, 0) in padded coordinates
    gy, gx = torch.meshgrid(torch.arange(patch, device=dev), torch.arange(patch, device=dev), indexing="ij")
    gy, gx = gy.reshape(-1), gx.reshape(-1)
    s_idx = src_ok.reshape(-1).nonzero()[:, 0]
    sy, sx = s_idx // w, s_idx % w
    S = pad_v[:, sy[:, None] + gy[None], sx[:, None] + gx[None]].permute(1, 0, 2).reshape(len(s_idx), -1)
    scale2 = float(max(h, w)) ** 2
    values = pad_v.clone()
    filled = F.pad(known.float(), (r, r, r, r), value=0.0)  # outside the image counts as missing
    conf = filled.clone()
    offsets = torch.zeros(h, w, 2, dtype=torch.long, device=dev)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=dev) / 8
    kx, ky = sobel[None, None], sobel.T[None, None]
    inner = (slice(r, r + h), slice(r, r + w))
    for _ in range(h * w):
        f = filled[inner]
        front = (F.max_pool2d(f[None, None], 3, 1, 1)[0, 0] > 0.5) & (f < 0.5)
        if not bool(front.any()):
            break
        # confidence: mean confidence over the patch
        c = F.avg_pool2d(conf[None, None], patch, 1, 0)[0, 0]
        # data term: isophote (gradient turned 90 degrees) of the filled image against the front normal
        grey = values.mean(0)[None, None]
        valid = (1 - F.max_pool2d(1 - filled[None, None], 3, 1, 1))[0, 0][inner]
        gxx = F.conv2d(grey, kx, padding=1)[0, 0][inner] * valid
        gyy = F.conv2d(grey, ky, padding=1)[0, 0][inner] * valid
        gxx = F.avg_pool2d(gxx[None, None], 3, 1, 1)[0, 0]
        gyy = F.avg_pool2d(gyy[None, None], 3, 1, 1)[0, 0]
        nx = F.conv2d(filled[None, None], kx, padding=1)[0, 0][inner]
        ny = F.conv2d(filled[None, None], ky, padding=1)[0, 0][inner]
        norm = torch.sqrt(nx * nx + ny * ny).clamp_min(1e-6)
        data = (gyy * nx - gxx * ny).abs() / norm  # |isophote . normal|, isophote = (-gy, gx)
        prio = torch.where(front, c * (data + 1e-3), torch.full_like(c, -1.0))
        t = int(prio.reshape(-1).argmax())
        ty, tx = t // w, t % w
        M = filled[ty + gy, tx + gx].repeat(3)  # channel-major, as S
        T = values[:, ty + gy, tx + gx].reshape(-1)
        ssd = ((S - T[None]) ** 2 * M[None]).sum(1) / M.sum().clamp_min(1)
        ssd = ssd + locality * ((sy - ty) ** 2 + (sx - tx) ** 2).float() / scale2
        b = int(ssd.argmin())
        oy, ox = int(sy[b]) - ty, int(sx[b]) - tx
        py, px = ty + gy, tx + gx  # padded coordinates of the target patch
        miss = filled[py, px] < 0.5
        # only pixels inside the image
        inside = miss & (py >= r) & (py < r + h) & (px >= r) & (px < r + w)
        py, px = py[inside], px[inside]
        values[:, py, px] = pad_v[:, py + oy, px + ox]
        filled[py, px] = 1.0
        conf[py, px] = float(c[ty, tx])
        offsets[py - r, px - r, 0] = oy
        offsets[py - r, px - r, 1] = ox
        if not bool(inside.any()):  # a front pixel whose patch has nothing to fill: mark it done
            filled[ty + r, tx + r] = 1.0
    return offsets


def remove_people(image: torch.Tensor, mask: torch.Tensor, smooth_iters: int = 60, texture: bool = True) -> torch.Tensor:
    """Fill ``mask`` from the surrounding background; pixels outside the mask are returned unchanged.

    Classical, model-free inpainting from the pixels outside the mask only (so no pixel of a
    removed person can survive; the result does not depend on what was inside):

    * ``texture=True`` (default): exemplar-based. On a copy of the photo about 96 px across, an
      onion-peel patch fill (:func:`_exemplar_offsets`) continues the surrounding structure
      (a horizon, grass below it, sky above) into the hole; its offsets are upsampled and the
      full-resolution pixels copied from there, blended between neighbouring offsets with tent
      weights (no block seams), and a smooth membrane (harmonic interpolation of the mismatch on
      the hole's rim) makes the copy meet the surrounding pixels without a visible edge.
    * ``texture=False`` (or when no source patch exists): the smooth fill alone, a push-pull
      (pyramid) fill refined by ``smooth_iters`` Jacobi iterations of the Laplace equation.
    """
    img = _check_image(image)
    H, W = img.shape[:2]
    hole = _check_mask(mask.to(img.device), (H, W)) > 0.5
    if not bool(hole.any()):
        return img.clone()
    known = ~hole
    if not bool(known.any()):
        raise CompositeError("the mask covers the whole image; there is no background to fill from")
    result = _texture_fill(img, hole, smooth_iters) if texture else None
    if result is None:
        result = _smooth_fill(img, known, smooth_iters).clamp(0, 1)
    return torch.where(hole[..., None], result, img)


def _texture_fill(img: torch.Tensor, hole: torch.Tensor, smooth_iters: int) -> torch.Tensor | None:
    H, W = hole.shape
    f = max(2, -(-max(H, W) // 96))  # full-res pixels per small pixel
    k = (~hole).float()[None, None]
    # the small image averages known pixels only; a small pixel is known when its whole block is
    num = F.avg_pool2d((img * (~hole).float()[..., None]).permute(2, 0, 1)[None], f, ceil_mode=True)
    den = F.avg_pool2d(k, f, ceil_mode=True)
    small_hole = F.max_pool2d(hole.float()[None, None], f, ceil_mode=True)[0, 0] > 0.5
    small = (num / den.clamp_min(1e-8))[0].permute(1, 2, 0)
    small = torch.where(small_hole[..., None], torch.zeros_like(small), small)
    offsets = _exemplar_offsets(small, small_hole)
    if offsets is None:
        return None
    h, w = small_hole.shape
    # Tent-weighted blend of the (up to) four nearest small pixels' offsets at every full-res
    # hole pixel. A source is used only from a small pixel that lies in the small hole (its
    # offset points into a fully known 5 x 5 block of small pixels, so every full-res source
    # pixel within one small pixel of it is known).
    ys = (torch.arange(H, device=img.device, dtype=torch.float32) + 0.5) / f - 0.5
    xs = (torch.arange(W, device=img.device, dtype=torch.float32) + 0.5) / f - 0.5
    y0, x0 = ys.floor().long(), xs.floor().long()
    fy, fx = ys - y0, xs - x0
    acc = torch.zeros(H, W, 3, device=img.device)
    wsum = torch.zeros(H, W, device=img.device)
    qy = torch.arange(H, device=img.device)[:, None].expand(H, W)
    qx = torch.arange(W, device=img.device)[None, :].expand(H, W)
    for dy in (0, 1):
        for dx in (0, 1):
            iy = (y0 + dy).clamp(0, h - 1)[:, None].expand(H, W)
            ix = (x0 + dx).clamp(0, w - 1)[None, :].expand(H, W)
            wy = (fy if dy else 1 - fy)[:, None]
            wx = (fx if dx else 1 - fx)[None, :]
            wt = (wy * wx) * small_hole[iy, ix].float()
            off = offsets[iy, ix]
            sy = (qy + f * off[..., 0]).clamp(0, H - 1)
            sx = (qx + f * off[..., 1]).clamp(0, W - 1)
            ok = ~hole[sy, sx]  # always true by construction; kept as a guarantee
            wt = wt * ok.float()
            acc += wt[..., None] * img[sy, sx]
            wsum += wt
    if bool(((wsum <= 1e-6) & hole).any()):
        return None
    copy = torch.where(hole[..., None], acc / wsum.clamp_min(1e-6)[..., None], img)
    # Meet the rim: the mismatch between the copy and the known pixels next to the hole,
    # interpolated smoothly over the hole (a membrane), added to the copy. Then remove the seams
    # between pieces copied from different places: a Poisson (gradient-domain) blend that keeps
    # the copy's gradients inside each piece and none across a seam or the rim.
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], device=img.device)[None, None]
    kn = (~hole).float()
    nsum = F.conv2d(F.pad((img * kn[..., None]).permute(2, 0, 1)[:, None], (1, 1, 1, 1)), cross)[:, 0].permute(1, 2, 0)
    ncnt = F.conv2d(F.pad(kn[None, None], (1, 1, 1, 1)), cross)[0, 0]
    rim = hole & (ncnt > 0)
    mismatch = torch.where(rim[..., None], nsum / ncnt.clamp_min(1)[..., None] - copy, torch.zeros_like(copy))
    membrane = _smooth_fill(mismatch, rim, smooth_iters)
    near = torch.arange(H, device=img.device) // f, torch.arange(W, device=img.device) // f
    label = offsets[near[0].clamp(max=h - 1)][:, near[1].clamp(max=w - 1)]  # (H, W, 2) piece of each pixel
    label = torch.where(hole[..., None], label, torch.full_like(label, 1 << 20))  # known: its own piece
    return _poisson_seams(copy + membrane, copy, hole, label, 4 * smooth_iters).clamp(0, 1)


def _poisson_seams(
    start: torch.Tensor, guide: torch.Tensor, hole: torch.Tensor, label: torch.Tensor, iters: int
) -> torch.Tensor:
    """Jacobi sweeps of the Poisson equation on the hole's pixels (known pixels fixed): a pixel
    takes the mean over its 4 neighbours of (neighbour + guide difference), where the guide
    difference is ``guide``'s gradient between two pixels of the same ``label`` and 0 between
    pieces (so seams and the rim are smoothed away, texture inside a piece is kept)."""
    ys, xs = torch.nonzero(hole, as_tuple=True)
    H, W = hole.shape
    y0, y1 = max(0, int(ys.min()) - 1), min(H, int(ys.max()) + 2)
    x0, x1 = max(0, int(xs.min()) - 1), min(W, int(xs.max()) + 2)
    u = start[y0:y1, x0:x1].permute(2, 0, 1).clone()
    g = guide[y0:y1, x0:x1].permute(2, 0, 1)
    lab = label[y0:y1, x0:x1]
    h = hole[y0:y1, x0:x1]
    gp = F.pad(g[None], (1, 1, 1, 1), mode="replicate")[0]
    lp = F.pad(lab.permute(2, 0, 1)[None].float(), (1, 1, 1, 1), mode="replicate")[0]
    lab_f = lab.permute(2, 0, 1).float()
    # guide differences towards each neighbour (0 across a seam), summed
    div = torch.zeros_like(u)
    for sl in ((slice(0, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
               (slice(1, -1), slice(0, -2)), (slice(1, -1), slice(2, None))):
        same = (lp[:, sl[0], sl[1]] == lab_f).all(0).float()
        div += (g - gp[:, sl[0], sl[1]]) * same
    def sweep(v: torch.Tensor, rhs: torch.Tensor, free: torch.Tensor, n: int) -> torch.Tensor:
        for _ in range(n):
            p = F.pad(v[None], (1, 1, 1, 1), mode="replicate")[0]
            v = torch.where(free[None], 0.25 * (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] + rhs), v)
        return v

    # The steps between pieces first, globally: one constant per piece (its label), least
    # squares over every pair of 4-neighbours in different pieces (known pixels: constant 0), so
    # a step spread over a whole piece needs no ~size^2 Jacobi sweeps; the sweeps then smooth
    # what is left.
    ids, inv = torch.unique(lab.reshape(-1, 2), dim=0, return_inverse=True)
    inv = inv.reshape(lab.shape[:2])
    n = len(ids)
    fixed = torch.zeros(n, dtype=torch.bool, device=u.device)
    fixed[inv[~h].unique()] = True
    if n > 1 and n <= 4096 and bool(fixed.any()):
        A = torch.zeros(n, n, device=u.device)
        b = torch.zeros(n, u.shape[0], device=u.device)
        for a_idx, b_idx, ua, ub in ((inv[:, :-1], inv[:, 1:], u[:, :, :-1], u[:, :, 1:]),
                                     (inv[:-1], inv[1:], u[:, :-1], u[:, 1:])):
            diff = a_idx != b_idx
            i, j = a_idx[diff], b_idx[diff]
            d = (ub - ua)[:, diff].T  # (E, C): c_i - c_j should be ub - ua
            A.index_put_((i, i), torch.ones_like(i, dtype=A.dtype), accumulate=True)
            A.index_put_((j, j), torch.ones_like(j, dtype=A.dtype), accumulate=True)
            A.index_put_((i, j), -torch.ones_like(i, dtype=A.dtype), accumulate=True)
            A.index_put_((j, i), -torch.ones_like(i, dtype=A.dtype), accumulate=True)
            b.index_add_(0, i, d)
            b.index_add_(0, j, -d)
        free = ~fixed
        Af = A[free][:, free] + 1e-4 * torch.eye(int(free.sum()), device=u.device)
        c = torch.zeros(n, u.shape[0], device=u.device)
        c[free] = torch.linalg.solve(Af, b[free])
        u = u + c[inv].permute(2, 0, 1) * h[None]
    u = sweep(u, div, h, iters)
    out = start.clone()
    out[y0:y1, x0:x1] = u.permute(1, 2, 0)
    return out

"""Person masks, people removal, compositing and the privacy check (pure PyTorch, any device).

Images are ``(H, W, 3)`` float tensors in 0..1, masks ``(H, W)`` in 0..1 (ComfyUI's IMAGE and
MASK conventions without the batch dimension).

Privacy by construction: :func:`remove_people` computes every pixel inside the mask from
pixels outside it only (a multi-scale push-pull fill refined by harmonic diffusion), so no
pixel of a removed person can survive; :func:`composite` changes nothing outside the grown
person mask; :func:`leak_ratio` measures what is left of the input inside the mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import RefSDError

__all__ = [
    "CompositeError",
    "grow_masks",
    "person_mask",
    "extend_to_person",
    "remove_people",
    "composite",
    "match_colors",
    "is_greyscale",
    "no_survivors",
    "leak_ratio",
]


class CompositeError(RefSDError):
    """Bad input to masking, removal or compositing."""


def _check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[-1] != 3:
        raise CompositeError(f"{name} must be an (H, W, 3) tensor in 0..1, got {getattr(image, 'shape', type(image))}")
    return image.float()


def _check_mask(mask: torch.Tensor, hw: tuple[int, int], name: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise CompositeError(f"{name} must be an (H, W) tensor, got {getattr(mask, 'shape', type(mask))}")
    if tuple(mask.shape) != tuple(hw):
        raise CompositeError(
            f"{name} is {tuple(mask.shape)[::-1]} (W, H) but the image is {tuple(hw)[::-1]}; resize the mask to the "
            "image (or fit/render at the image's size)."
        )
    return mask.float().clamp(0, 1)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    # a square (grows corners by sqrt(2), harmless for a safety margin), as two separable 1-D
    # max-pools: the same result as one k x k max-pool, O(k) instead of O(k^2) per pixel
    m = F.max_pool2d(mask[None, None], (1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(m, (k, 1), stride=1, padding=(radius, 0))[0, 0]


def _dilate_coarse(mask: torch.Tensor, radius: int, factor: int = 4) -> torch.Tensor:
    """A cheap superset of ``_dilate(mask, radius)`` for large radii: the dilation done at
    1/``factor`` resolution (at most ``factor`` pixels larger). For bounds, not for margins."""
    if radius < 4 * factor:
        return _dilate(mask, radius)
    H, W = mask.shape
    small = F.max_pool2d(mask[None, None].float(), factor, ceil_mode=True)[0, 0]
    big = _dilate(small, -(-radius // factor))
    return big.repeat_interleave(factor, 0).repeat_interleave(factor, 1)[:H, :W]


def grow_masks(person_masks: torch.Tensor, margin: float = 0.04, min_px: int = 2) -> torch.Tensor:
    """Grow each person's mask ``(P, H, W)`` by ``margin`` x that person's silhouette height
    (at least ``min_px`` pixels), for hair, loose clothes and fitting error; returns ``(P, H, W)``."""
    out = []
    for m in person_masks:
        rows = torch.nonzero(m.amax(1) > 0.5)
        if len(rows) == 0:
            out.append(m.clone())
            continue
        height = int(rows.max() - rows.min()) + 1
        out.append(_dilate((m > 0.5).float(), max(min_px, round(margin * height))))
    return torch.stack(out) if out else person_masks.clone()


def extend_to_person(
    image: torch.Tensor,
    person_masks: torch.Tensor,
    reach: float = 0.25,
    ratio: float = 4.0,
    bins: int = 16,
    scene_gap: float = 0.05,
) -> torch.Tensor:
    """Each fitted silhouette ``(P, H, W)`` extended over the adjacent pixels that look like the
    person rather than the scene: a coat, a dress or long hair that the naked body model does
    not cover. Model-free, colour-guided region growing:

    * a colour histogram (``bins`` per channel) of the person from the silhouette's interior
      (eroded by 1.5 % of the person's height), and one of the scene from everything farther
      than ``scene_gap`` x the person's height from the silhouette (close: a table or a
      helmet beside the person is scene, however much of the image the person fills; a scene
      taken only from beyond ``reach`` left too few pixels in close-ups and the region
      swallowed the background: 84 % of astronaut.png, now 66 %);
    * a pixel within ``reach`` of the silhouette joins the person when its colour is ``ratio``
      times more frequent in the person than in the scene and it is connected to the
      silhouette through such pixels (geodesic growth, one pixel ring per step, octagonal
      distance, so the region's outline is smooth at pixel level).

    Only grows (a larger region is replaced; the privacy margin is added afterwards by
    :func:`person_mask`). ``reach <= 0`` returns the silhouettes unchanged.
    """
    img = _check_image(image)
    H, W = img.shape[:2]
    masks = (person_masks.to(img.device) > 0.5)
    if masks.dim() != 3 or tuple(masks.shape[1:]) != (H, W):
        raise CompositeError(f"person masks {tuple(person_masks.shape)} do not match the image {W} x {H}")
    if reach <= 0 or masks.shape[0] == 0:
        return masks.float()
    if bins < 2 or ratio <= 0:
        raise CompositeError(f"bins must be >= 2 and ratio > 0 (got {bins}, {ratio})")
    q = (img.clamp(0, 1) * (bins - 1e-4)).long()
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    out = []
    for m in masks:
        rows = torch.nonzero(m.any(1))
        if len(rows) == 0:
            out.append(m.float())
            continue
        h = int(rows.max() - rows.min()) + 1
        steps = max(1, round(reach * h))
        zone = _dilate_coarse(m.float(), steps) > 0.5
        core = (1 - _dilate((~m).float(), max(1, round(0.015 * h)))) > 0.5
        if int(core.sum()) < 50:
            core = m
        far = ~(_dilate(m.float(), max(1, round(scene_gap * h))) > 0.5)
        if not bool(far.any()):
            out.append(m.float())
            continue
        fg = torch.bincount(idx[core], minlength=bins ** 3).float() + 0.5
        bg = torch.bincount(idx[far], minlength=bins ** 3).float() + 0.5
        like = (fg / fg.sum() > ratio * (bg / bg.sum()))[idx]
        # Geodesic growth inside the zone's bounding box (the coarse zone contains every pixel
        # within `steps` of the silhouette, so the box holds the whole growth). One pixel per
        # step, alternating a 3x3 square and a 3x3 cross: the growth front after n steps is an
        # octagon n .. 1.12 n px around the silhouette (close to a circle), pixel-exact and
        # smooth, with no trace of the coarse grid (which gave the region 4-8 px staircases).
        ys, xs = torch.nonzero(zone, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        grown = m[y0:y1, x0:x1].float()[None, None]
        allowed = (like[y0:y1, x0:x1] | m[y0:y1, x0:x1]).float()[None, None]
        for i in range(steps):
            row = F.max_pool2d(grown, (1, 3), stride=1, padding=(0, 1))
            if i % 2 == 0:  # square
                nxt = F.max_pool2d(row, (3, 1), stride=1, padding=(1, 0))
            else:  # cross
                nxt = torch.maximum(row, F.max_pool2d(grown, (3, 1), stride=1, padding=(1, 0)))
            nxt = nxt * allowed
            if i % 2 == 0 and torch.equal(nxt, grown):
                break  # a square step added nothing: nothing can grow any more (the cross is smaller)
            grown = nxt
        grown = grown[0, 0] > 0.5
        full = m.clone()
        full[y0:y1, x0:x1] = grown
        out.append(full.float())
    return torch.stack(out)


def person_mask(
    fitted_person_masks: torch.Tensor, user_mask: torch.Tensor | None = None, margin: float = 0.04
) -> tuple[torch.Tensor, torch.Tensor]:
    """The region to replace: the union of the fitted bodies' silhouettes, each grown by a
    margin that scales with the person's size, and an optional user mask (from any
    segmentation node, grown by the same margin of the largest person).

    Returns ``(union (H, W), per_person (P, H, W))``, binary float.
    """
    if fitted_person_masks.dim() != 3:
        raise CompositeError("fitted_person_masks must be (P, H, W)")
    H, W = fitted_person_masks.shape[1:]
    per = grow_masks(fitted_person_masks, margin)
    union = per.amax(0) if per.shape[0] else torch.zeros(H, W, device=per.device)
    if user_mask is not None:
        um = _check_mask(user_mask.to(union.device), (H, W), "user mask")
        if fitted_person_masks.shape[0]:
            rows = torch.nonzero(fitted_person_masks.amax(0).amax(1) > 0.5)
        else:  # nobody fitted (e.g. an image without people): the user mask alone
            rows = torch.zeros(0, 1, dtype=torch.long)
        height = int(rows.max() - rows.min()) + 1 if len(rows) else max(H, W) // 4
        union = torch.maximum(union, _dilate((um > 0.5).float(), max(2, round(margin * height))))
    return union, per


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


def _gaussian_blur(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return mask
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, device=mask.device, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    m = mask[None, None]
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return m[0, 0]


def no_survivors(
    output: torch.Tensor, original: torch.Tensor, region: torch.Tensor, tol: float = 2.0 / 255
) -> torch.Tensor:
    """``output`` with every pixel inside ``region`` that still equals ``original`` (every channel
    within ``tol``, :func:`leak_ratio`'s test) set to ``original`` moved ``tol + 1/255`` towards
    mid-grey (3/255 with the default ``tol``; exact in 8-bit, so it survives saving as PNG).

    New content can match the old by chance (a dark rendered coat over a dark coat, plain
    sky); the change is invisible (at most 5/255) and makes "no pixel of the original person
    survives" hold by construction. Outside ``region`` nothing changes.
    """
    o = _check_image(original)
    p = _check_image(output.to(o.device), "output")
    if o.shape != p.shape:
        raise CompositeError(f"original {tuple(o.shape)} and output {tuple(p.shape)} differ in size")
    reg = _check_mask(region.to(o.device), o.shape[:2], "region") > 0.5
    same = (((p - o).abs() <= tol).all(-1) & reg)[..., None]
    step = tol + 1.0 / 255
    away = torch.where(o < 0.5, o + step, o - step)  # stays inside [0, 1]
    return torch.where(same, away.to(output.dtype), output.to(o.device))


#: BT.601 luma weights (the grey of ComfyUI's and kornia's rgb_to_grayscale).
LUMA = (0.299, 0.587, 0.114)
#: The most a white-balance gain may move one channel against the others (x / 1.01 .. x 1.01).
#: The Monk Skin Tone swatches have HSV hues of 18-40 degrees, but the lightest and darkest are
#: nearly neutral (mst1 #f6ede4 spans 7 % between channels, mst10 #292420 22 % of a dark value),
#: so their hue is fragile: per-channel gains within 1 % keep every swatch within 14-47 degrees
#: (skin's 0-50 degree range), 2 % would already turn mst1 magenta or yellow-green, 8 % blue.
#: A photo's colour cast therefore tints new people very little; exposure does the rest.
MAX_WHITE_BALANCE = 1.01


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA, device=rgb.device, dtype=rgb.dtype)
    return (rgb * w).sum(-1)


def is_greyscale(image: torch.Tensor, where: torch.Tensor | None = None, tol: float = 2.0 / 255) -> bool:
    """True when (the ``where`` pixels of) ``image`` carry no colour: at least 99.5 % of them
    have all three channels within ``tol`` (8-bit rounding of a grey photo, JPEG chroma noise)."""
    img = _check_image(image)
    px = img.reshape(-1, 3) if where is None else img[where.to(img.device).bool()]
    if px.shape[0] == 0:
        return False
    spread = px.amax(-1) - px.amin(-1)
    return float((spread > tol).float().mean()) < 0.005


def match_colors(
    people: torch.Tensor, people_mask: torch.Tensor, scene: torch.Tensor, region: torch.Tensor, strength: float
) -> torch.Tensor:
    """The new people's colours matched to the photo they go into (``people`` ``(H, W, 3)``,
    ``people_mask`` / ``region`` ``(H, W)`` bool, ``scene`` the cleaned photo).

    * A greyscale photo (:func:`is_greyscale` outside ``region``) gets greyscale people (BT.601
      luma), whatever ``strength``: colour people in a black-and-white photo are never right.
    * Exposure: the people's mean luma moves towards the mean luma of a ring around ``region``
      by ``strength`` in log space (gain limited to 0.5..2). Luma only: a per-channel match of
      the people's mean to the scene's mean (the old behaviour) turned skin cyan on a grey scene
      and grey on a green one, because people are not the colour of the scene around them.
    * White balance: the scene's grey-world cast (its mean colour over its mean luma, outside
      ``region``), raised to ``strength`` and limited to :data:`MAX_WHITE_BALANCE` per channel
      with the luma kept, so skin stays within the Monk-scale hue range.
    * Pixels the gain pushes past 1 are scaled down as a whole, keeping their hue.
    """
    if not 0.0 <= strength <= 1.0:
        raise CompositeError(f"match_color is {strength}; use a value between 0 (off) and 1 (full)")
    H, W = scene.shape[:2]
    outside = ~region
    if not bool(outside.any()):
        return people
    if is_greyscale(scene, outside):
        people = _luma(people)[..., None].expand(H, W, 3)
    if strength == 0:
        return people.clamp(0, 1)
    ring = (_dilate(region.float(), max(4, round(0.03 * max(H, W)))) > 0.5) & outside
    if not bool(ring.any()):
        ring = outside
    l_scene = _luma(scene[ring]).mean().clamp_min(1e-3)
    l_people = _luma(people[people_mask]).mean().clamp_min(1e-3)
    exposure = torch.exp(strength * (torch.log(l_scene) - torch.log(l_people))).clamp(0.5, 2.0)
    mean = scene[outside].mean(0).clamp_min(1e-3)
    cast = (mean / _luma(mean).clamp_min(1e-3)) ** strength
    cast = cast.clamp(1 / MAX_WHITE_BALANCE, MAX_WHITE_BALANCE)
    cast = cast / _luma(cast)  # white balance only: the luma stays the exposure's
    out = people * exposure * cast
    # hue-preserving clip: a pixel pushed past 1 is scaled down as a whole (clamping each channel
    # would flatten light skin towards yellow/white: R saturates first, G and B keep rising)
    return (out / out.amax(-1, keepdim=True).clamp_min(1.0)).clamp(0, 1)


def composite(
    background: torch.Tensor,
    person: torch.Tensor,
    person_alpha: torch.Tensor,
    region: torch.Tensor,
    feather_px: float = 1.5,
    match_color: float = 0.5,
    original: torch.Tensor | None = None,
) -> torch.Tensor:
    """Put the new people (rendered or refined) over the cleaned background.

    ``person_alpha`` is the new people's silhouette, feathered inwards by a Gaussian of
    ``feather_px`` and limited to ``region`` (the grown person mask), so nothing outside
    ``region`` changes.
    ``match_color`` (0..1): exposure and white balance of the new people towards the photo's
    (:func:`match_colors`); a greyscale photo always gets greyscale people.
    With ``original`` (the input photo), region pixels that happen to equal it are nudged
    (:func:`no_survivors`), so the privacy check's leak ratio is 0 by construction.
    """
    bg = _check_image(background)
    H, W = bg.shape[:2]
    fg = _check_image(person.to(bg.device), "person")
    if fg.shape[:2] != (H, W):
        raise CompositeError(
            f"person image is {tuple(fg.shape[:2])[::-1]} (W, H) but the background is {(W, H)}; render at the "
            "photo's size or paste crops back first."
        )
    a = _check_mask(person_alpha.to(bg.device), (H, W), "person_alpha")
    reg = _check_mask(region.to(bg.device), (H, W), "region") > 0.5
    if not 0.0 <= match_color <= 1.0:
        raise CompositeError(f"match_color is {match_color}; use a value between 0 (off) and 1 (full)")
    # feather inwards only: the rendered people are over black, so alpha must stay 0 outside them
    alpha = (_gaussian_blur(a, feather_px) * (a > 0.5).float() * reg.float()).clamp(0, 1)
    if bool((a > 0.5).any()):
        fg = match_colors(fg, a > 0.5, bg, reg, match_color)
    out = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
    out = torch.where(reg[..., None], out, bg)
    return out if original is None else no_survivors(out, original, reg.float())


def leak_ratio(
    original: torch.Tensor,
    output: torch.Tensor,
    mask: torch.Tensor,
    tol: float = 2.0 / 255,
    background: torch.Tensor | None = None,
) -> float:
    """Fraction of the pixels inside ``mask`` where ``output`` still shows ``original`` (every
    channel within ``tol``): 0 means no pixel of the removed people survives unchanged.

    With ``background`` (the image with the people removed, :func:`remove_people`), pixels the
    background alone reproduces to within ``3 * tol`` (e.g. plain sky inside the safety
    margin) do not count: they carry nothing of the person.
    """
    o = _check_image(original)
    p = _check_image(output.to(o.device), "output")
    if o.shape != p.shape:
        raise CompositeError(f"original {tuple(o.shape)} and output {tuple(p.shape)} differ in size")
    m = _check_mask(mask.to(o.device), o.shape[:2]) > 0.5
    if background is not None:
        b = _check_image(background.to(o.device), "background")
        m = m & ~((o - b).abs() <= 3 * tol).all(-1)
    n = int(m.sum())
    if n == 0:
        return 0.0
    same = ((o - p).abs() <= tol).all(-1) & m
    return float(same.sum()) / n

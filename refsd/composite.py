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
    image: torch.Tensor, person_masks: torch.Tensor, reach: float = 0.25, ratio: float = 4.0, bins: int = 16
) -> torch.Tensor:
    """Each fitted silhouette ``(P, H, W)`` extended over the adjacent pixels that look like the
    person rather than the scene: a coat, a dress or long hair that the naked body model does
    not cover. Model-free, colour-guided region growing:

    * a colour histogram (``bins`` per channel) of the person from the silhouette's interior
      (eroded by 1.5 % of the person's height), and one of the scene from everything farther
      than ``reach`` x the person's height from the silhouette;
    * a pixel within ``reach`` of the silhouette joins the person when its colour is ``ratio``
      times more frequent in the person than in the scene and it is connected to the
      silhouette through such pixels (geodesic growth, one pixel ring per step).

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
        far = ~zone
        if not bool(far.any()):
            out.append(m.float())
            continue
        fg = torch.bincount(idx[core], minlength=bins ** 3).float() + 0.5
        bg = torch.bincount(idx[far], minlength=bins ** 3).float() + 0.5
        like = (fg / fg.sum() > ratio * (bg / bg.sum()))[idx] & zone
        # geodesic growth inside the zone's bounding box only (cheap)
        ys, xs = torch.nonzero(zone, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        grown, allowed = m[y0:y1, x0:x1].clone(), like[y0:y1, x0:x1] | m[y0:y1, x0:x1]
        ring = max(1, min(4, steps // 8))  # pixels per growth step: crosses gaps up to this wide (safe side)
        for _ in range((steps + ring - 1) // ring):
            nxt = (_dilate(grown.float(), ring) > 0.5) & allowed
            if torch.equal(nxt, grown):
                break
            grown = nxt
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


def remove_people(image: torch.Tensor, mask: torch.Tensor, smooth_iters: int = 60) -> torch.Tensor:
    """Fill ``mask`` from the surrounding background; pixels outside the mask are returned unchanged.

    Classical, model-free inpainting: a push-pull (pyramid) fill gives every hole pixel the
    normalised average of the nearest known pixels at the coarsest scale that has any, then
    ``smooth_iters`` Jacobi iterations of the Laplace equation (harmonic interpolation) with
    the known pixels as boundary conditions remove the blockiness. The result depends only on
    the pixels outside the mask.
    """
    img = _check_image(image)
    H, W = img.shape[:2]
    hole = _check_mask(mask.to(img.device), (H, W)) > 0.5
    if not bool(hole.any()):
        return img.clone()
    known = (~hole).float()
    if not bool(known.any()):
        raise CompositeError("the mask covers the whole image; there is no background to fill from")
    x = (img * known[..., None]).permute(2, 0, 1)[None]  # (1, 3, H, W), person pixels zeroed first
    w = known[None, None]
    # push: pyramid of weighted averages
    levels = [(x, w)]
    while min(levels[-1][0].shape[-2:]) > 1:
        cx, cw = levels[-1]
        sx = F.avg_pool2d(cx, 2, ceil_mode=True)
        sw = F.avg_pool2d(cw, 2, ceil_mode=True)
        levels.append((sx, sw))
    # pull: coarse to fine, fill where the weight is low
    fx, fw = levels[-1]
    fill = fx / fw.clamp_min(1e-8)
    for cx, cw in reversed(levels[:-1]):
        up = F.interpolate(fill, size=cx.shape[-2:], mode="bilinear", align_corners=False)
        here = cx / cw.clamp_min(1e-8)
        alpha = cw.clamp(0, 1)
        fill = alpha * here + (1 - alpha) * up
    out = torch.where(hole[None, None], fill, x)
    # harmonic refinement inside the hole
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], device=img.device)
    kernel = kernel.expand(3, 1, 3, 3)
    h = hole[None, None].expand_as(out)
    for _ in range(smooth_iters):
        avg = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        out = torch.where(h, avg, out)
    result = out[0].permute(1, 2, 0).clamp(0, 1)
    return torch.where(hole[..., None], result, img)


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
    ``match_color`` (0..1) moves the people's per-channel mean towards the scene's mean in a
    ring around ``region`` (exposure and white balance), by that fraction in log space.
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
    if match_color > 0 and bool((a > 0.5).any()):
        ring = (_dilate(reg.float(), max(4, round(0.03 * max(H, W)))) > 0.5) & ~reg
        if bool(ring.any()):
            scene = bg[ring].mean(0).clamp_min(1e-3)
            people = fg[a > 0.5].mean(0).clamp_min(1e-3)
            gain = torch.exp(match_color * (torch.log(scene) - torch.log(people)))
            # white balance and exposure only: limit the gain so colours are never inverted or blown out
            gain = gain.clamp(0.5, 2.0)
            fg = (fg * gain).clamp(0, 1)
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

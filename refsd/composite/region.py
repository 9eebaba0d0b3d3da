"""The person region: the area of a photo that is replaced (stage 3), and the checks shared by the stage.

Images are ``(H, W, 3)`` float tensors in 0..1, masks ``(H, W)`` in 0..1 (ComfyUI's IMAGE and
MASK conventions without the batch dimension). :func:`person_mask` is the union of the fitted
silhouettes, each grown by a margin that scales with the person's size (:func:`grow_masks`),
and an optional user mask; :func:`extend_to_person` first extends a silhouette over the
adjacent pixels that look like the person (a coat, a dress, long hair). Also here:
:class:`CompositeError`, the input checks and the separable dilations the other modules of
:mod:`refsd.composite` use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import RefSDError

__all__ = ["CompositeError", "grow_masks", "extend_to_person", "person_mask"]


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
    segmentation: torch.Tensor | None = None,
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

    * with a person ``segmentation`` ``(H, W)`` (RefSD Detect People's mask, any segmentation
      node), its pixels (> 0.5) join too, whatever their colour: a coat the colour of the scene
      is inside by segmentation. The growth stays geodesic and within ``reach``, so each
      person takes the segmented pixels connected to them.

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
    seg = None
    if segmentation is not None:
        seg = _check_mask(segmentation.to(img.device), (H, W), "person segmentation") > 0.5
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
        if seg is not None:
            like = like | seg
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

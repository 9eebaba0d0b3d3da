"""Compositing (stage 6): the new people over the cleaned photo, with matched colours.

:func:`composite` changes nothing outside the grown person mask: the new people's alpha is
feathered inwards and limited to the region. :func:`match_colors` moves their exposure and
white balance towards the photo's (greyscale people in a greyscale photo,
:func:`is_greyscale`), within :data:`MAX_WHITE_BALANCE` so skin keeps a skin hue.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .privacy import no_survivors
from .region import CompositeError, _check_image, _check_mask, _dilate

__all__ = ["composite", "match_colors", "is_greyscale", "LUMA", "MAX_WHITE_BALANCE"]


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
    have all three channels within ``tol`` (8-bit rounding of a grey photo, JPEG chroma noise),
    or their chroma is neutral and all but constant (BT.601 Cb and Cr: mean within 2/255, standard
    deviation under 1.5/255), as in a black-and-white film decoded from a video codec, whose
    subsampled, compressed chroma leaves pixels a few levels apart (a colour photo: 10-15/255)."""
    img = _check_image(image)
    px = img.reshape(-1, 3) if where is None else img[where.to(img.device).bool()]
    if px.shape[0] == 0:
        return False
    spread = px.amax(-1) - px.amin(-1)
    if float((spread > tol).float().mean()) < 0.005:
        return True
    cb = px @ torch.tensor([-0.168736, -0.331264, 0.5], device=px.device, dtype=px.dtype)
    cr = px @ torch.tensor([0.5, -0.418688, -0.081312], device=px.device, dtype=px.dtype)
    return all(float(c.mean().abs()) < 2.0 / 255 and float(c.std()) < 1.5 / 255 for c in (cb, cr))


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

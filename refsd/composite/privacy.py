"""The privacy check (stage 6): does any pixel of a removed person survive in the output?

:func:`leak_ratio` measures what is left of the input inside the person mask;
:func:`no_survivors` nudges the region pixels that happen to equal the input (invisibly, at
most 5/255), so "no pixel of the original person survives" holds by construction.
"""

from __future__ import annotations

import torch

from .region import CompositeError, _check_image, _check_mask

__all__ = ["no_survivors", "leak_ratio"]


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


def leak_ratio(
    original: torch.Tensor,
    output: torch.Tensor,
    mask: torch.Tensor,
    tol: float = 2.0 / 255,
    background: torch.Tensor | None = None,
) -> float:
    """Fraction of the pixels inside ``mask`` where ``output`` still shows ``original`` (every
    channel within ``tol``): 0 means no pixel of the removed people survives unchanged.

    With ``background`` (the image with the people removed,
    :func:`~refsd.composite.removal.remove_people`), pixels the background alone reproduces to
    within ``3 * tol`` (e.g. plain sky inside the safety margin) do not count: they carry
    nothing of the person.
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

"""Per-person crops at Stable Diffusion resolution, and pasting refined crops back.

A person who is 100 px tall in a 4000 px photo still gets a full-size crop (e.g. 512x768):
each crop box is the person's (grown) mask bounding box plus context, widened to the
target's aspect ratio, and resampled to the target size. Boxes may extend past the image
(padded). Pixel convention: continuous coordinates with pixel centres at ``j + 0.5``, as in
:mod:`refsd.fit.camera`. Images are ``(H, W, C)`` float tensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import RefSDError

__all__ = ["CropError", "CropBox", "crop_boxes", "crop", "paste"]


class CropError(RefSDError):
    """Bad crop size, box or input shapes."""


@dataclass(frozen=True)
class CropBox:
    """Where a crop came from: ``[x0, x1) x [y0, y1)`` in the source image's pixels (may reach
    outside it), resampled to ``width x height``."""

    image_index: int
    person_index: int
    x0: float
    y0: float
    x1: float
    y1: float
    width: int
    height: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropBox:
        return cls(**d)


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or v < 64 or v % 64:
            raise CropError(f"crop {name} is {v}; use a multiple of 64 of at least 64 (e.g. 512 x 768)")


def crop_boxes(
    person_masks: torch.Tensor, width: int = 512, height: int = 768, context: float = 0.15, image_index: int = 0
) -> list[CropBox]:
    """One box per non-empty mask of ``person_masks (P, H, W)``: its bounding box grown by
    ``context`` x its larger side on every side, then widened to ``width / height`` about its
    centre. Empty masks get no box."""
    _check_size(width, height)
    if person_masks.dim() != 3:
        raise CropError(f"person_masks must be (P, H, W), got {tuple(person_masks.shape)}")
    if context < 0:
        raise CropError(f"context is {context}; it must be >= 0 (a fraction of the person's size)")
    boxes = []
    aspect = width / height
    for p, m in enumerate(person_masks):
        pts = torch.nonzero(m > 0.5)
        if len(pts) == 0:
            continue
        y0, x0 = pts.min(0).values.tolist()
        y1, x1 = (pts.max(0).values + 1).tolist()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w, h = (x1 - x0), (y1 - y0)
        pad = context * max(w, h)
        w, h = w + 2 * pad, h + 2 * pad
        if w / h < aspect:
            w = h * aspect
        else:
            h = w / aspect
        boxes.append(CropBox(image_index, p, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, width, height))
    return boxes


def _grid(box: CropBox, H: int, W: int, device) -> torch.Tensor:
    """Sampling grid (normalised, align_corners=False) of the crop's pixel centres in the source."""
    u = box.x0 + (torch.arange(box.width, device=device, dtype=torch.float32) + 0.5) * (box.x1 - box.x0) / box.width
    v = box.y0 + (torch.arange(box.height, device=device, dtype=torch.float32) + 0.5) * (box.y1 - box.y0) / box.height
    gy, gx = torch.meshgrid(2 * v / H - 1, 2 * u / W - 1, indexing="ij")
    return torch.stack((gx, gy), -1)[None]


def crop(image: torch.Tensor, box: CropBox, mode: str = "bilinear", padding: str = "border") -> torch.Tensor:
    """Resample ``image (H, W, C)`` inside ``box`` to ``(box.height, box.width, C)``.

    ``padding``: "border" (repeat the edge; for photos) or "zeros" (black; for conditioning
    maps and masks). ``mode``: "bilinear" or "nearest" (labels).
    """
    if image.dim() != 3:
        raise CropError(f"image must be (H, W, C), got {tuple(image.shape)}")
    H, W = image.shape[:2]
    x = image.float().permute(2, 0, 1)[None]
    out = F.grid_sample(x, _grid(box, H, W, image.device), mode=mode, padding_mode=padding, align_corners=False)
    return out[0].permute(1, 2, 0)


def paste(
    base: torch.Tensor, patch: torch.Tensor, box: CropBox, mask: torch.Tensor | None = None, mode: str = "bilinear"
) -> torch.Tensor:
    """Put ``patch`` (a crop of ``box``, e.g. after refinement) back into ``base (H, W, C)``.

    Destination pixels whose centres fall inside the box take the patch resampled at their
    place; ``mask (H, W)`` in 0..1 (in the base image's pixels, e.g. the person's mask) limits
    and blends the paste. Everything else is unchanged.
    """
    if base.dim() != 3 or patch.dim() != 3 or base.shape[-1] != patch.shape[-1]:
        raise CropError(f"base {tuple(base.shape)} and patch {tuple(patch.shape)} must be (H, W, C) with equal C")
    if tuple(patch.shape[:2]) != (box.height, box.width):
        raise CropError(f"patch is {tuple(patch.shape[:2])[::-1]} (W, H) but the box is {box.width} x {box.height}")
    H, W = base.shape[:2]
    xs = torch.arange(W, device=base.device, dtype=torch.float32) + 0.5
    ys = torch.arange(H, device=base.device, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(
        2 * (ys - box.y0) / (box.y1 - box.y0) - 1, 2 * (xs - box.x0) / (box.x1 - box.x0) - 1, indexing="ij"
    )
    inside = (gx.abs() <= 1) & (gy.abs() <= 1)
    p = patch.float().permute(2, 0, 1)[None].to(base.device)
    back = F.grid_sample(p, torch.stack((gx, gy), -1)[None], mode=mode, padding_mode="border", align_corners=False)
    back = back[0].permute(1, 2, 0)
    alpha = inside.float()
    if mask is not None:
        if tuple(mask.shape) != (H, W):
            raise CropError(f"mask is {tuple(mask.shape)[::-1]} (W, H) but the base image is {W} x {H}")
        alpha = alpha * mask.float().clamp(0, 1).to(base.device)
    out = base.float() * (1 - alpha[..., None]) + back * alpha[..., None]
    return torch.where(alpha[..., None] > 0, out, base.float()).to(base.dtype)

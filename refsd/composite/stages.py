"""How the stages chain: person region, per-person crops and pasting them back.

The ComfyUI nodes (``nodes/composite.py``) and the library pipeline (:mod:`refsd.pipeline`)
both call these functions, so there is one implementation of each step. Images are
``(B, H, W, C)`` batches (ComfyUI's IMAGE convention), masks ``(B, H, W)``; a batch of one
is used for every image (:func:`pick`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .crop import CropBox, crop, crop_boxes, paste
from .privacy import no_survivors
from .region import CompositeError, extend_to_person, person_mask

__all__ = ["pick", "region_masks", "people_crop_boxes", "crop_batch", "crop_mask_batch", "paste_crops"]


def pick(batch: torch.Tensor | None, i: int) -> torch.Tensor | None:
    """Image/mask ``i`` of a batch; a batch of one is used for every image."""
    if batch is None:
        return None
    if batch.shape[0] != 1 and i >= batch.shape[0]:
        raise CompositeError(f"a batch of {batch.shape[0]} was given where {i + 1} or more images are processed")
    return batch[min(i, batch.shape[0] - 1)]


def region_masks(
    model, fit, margin: float = 0.06, masks: Sequence[torch.Tensor | None] = (),
    image: torch.Tensor | None = None, reach: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The region to replace in one image: the fitted silhouettes (with ``image``: extended over
    adjacent pixels of the person's colours up to ``reach`` x their height, for coats and hair,
    :func:`refsd.composite.extend_to_person`) grown by ``margin`` of each person's height,
    united with the given extra masks (a segmentation, the avatars' mask). The extra masks
    also guide the growth: each person takes the segmented pixels connected to them within
    ``reach`` (so a detector's person mask puts a coat into that person's crop, not only into
    the union).

    Returns ``(union (H, W), per_person (P, H, W))`` on the CPU (see :func:`refsd.composite.person_mask`).
    """
    from ..render.scene import fit_person_masks

    fitted = fit_person_masks(model, fit)
    extra = [m.cpu() for m in masks if m is not None]
    user = torch.stack(extra).amax(0) if extra else None
    if image is not None and reach > 0:  # on the model's device (the GPU when there is one)
        fitted = extend_to_person(image.to(fitted.device), fitted, reach, segmentation=user)
    return person_mask(fitted.cpu(), user, margin)


def people_crop_boxes(
    counts: Sequence[int], person_masks: torch.Tensor, width: int = 512, height: int = 768, context: float = 0.15
) -> list[CropBox]:
    """One crop box per fitted person of every image: ``counts[i]`` people in image ``i``,
    ``person_masks`` their grown masks ``(sum(counts), H, W)`` in order (RefSD Person Mask's
    ``person_masks``). Raises :class:`CompositeError` when the counts do not match or no
    person is left."""
    if sum(counts) != person_masks.shape[0]:
        raise CompositeError(
            f"{person_masks.shape[0]} person masks for {sum(counts)} fitted people; connect RefSD Person Mask's "
            "person_masks output made from the same body fit."
        )
    boxes, start = [], 0
    for i, n in enumerate(counts):
        boxes += crop_boxes(person_masks[start:start + n].cpu(), width, height, context, image_index=i)
        start += n
    if not boxes:
        raise CompositeError("no person to crop (every mask is empty); check the fit and the person masks.")
    return boxes


def crop_batch(batch: torch.Tensor | None, boxes: Sequence[CropBox], padding: str = "zeros",
               channels: int = 3) -> torch.Tensor:
    """Crops ``(N, h, w, C)`` of ``batch (B, H, W, C)`` for every box (black when ``batch`` is None).
    ``padding``: "border" for photos, "zeros" for conditioning maps."""
    if not boxes:
        raise CompositeError("no crop boxes")
    w, h = boxes[0].width, boxes[0].height
    if batch is None:
        return torch.zeros(len(boxes), h, w, channels)
    return torch.stack([crop(pick(batch, b.image_index).cpu(), b, padding=padding) for b in boxes])


def crop_mask_batch(mask: torch.Tensor | None, boxes: Sequence[CropBox]) -> torch.Tensor:
    """Crops ``(N, h, w)`` of a mask batch ``(B, H, W)`` (empty when ``mask`` is None)."""
    if mask is None:
        return crop_batch(None, boxes, channels=1)[..., 0]
    return torch.stack([crop(pick(mask, b.image_index).cpu()[..., None], b, padding="zeros")[..., 0] for b in boxes])


def paste_crops(
    images: torch.Tensor, crops: torch.Tensor, boxes: Sequence[CropBox], mask: torch.Tensor | None = None,
    original: torch.Tensor | None = None,
) -> torch.Tensor:
    """Put (refined) crops back into ``images (B, H, W, 3)`` at their boxes, resized to the box
    size when needed; ``mask (B, H, W)`` (e.g. the avatars' mask) limits the paste. With
    ``original`` (the photos) and a mask, pixels inside the mask that equal the photo are nudged
    (:func:`refsd.composite.no_survivors`)."""
    if crops.shape[0] != len(boxes):
        raise CompositeError(f"{crops.shape[0]} crops for {len(boxes)} crop boxes; keep the sampler's batch.")
    out = [images[i].clone() for i in range(images.shape[0])]
    for c, box in zip(crops, boxes, strict=True):
        if tuple(c.shape[:2]) != (box.height, box.width):
            c = F.interpolate(c.permute(2, 0, 1)[None], size=(box.height, box.width),
                              mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        i = box.image_index
        out[i] = paste(out[i], c, box, mask=pick(mask, i))
    if original is not None and mask is not None:
        out = [no_survivors(o, pick(original, i), pick(mask, i)) for i, o in enumerate(out)]
    return torch.stack(out).to(images.dtype)

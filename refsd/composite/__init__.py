"""Stages 3 and 6: the person region, removal (inpainting), crops, paste, blend, privacy."""

from __future__ import annotations

from .blend import composite, is_greyscale, match_colors
from .crop import (
    CropBox,
    CropError,
    crop,
    crop_boxes,
    paste,
)
from .privacy import leak_ratio, no_survivors
from .region import CompositeError, extend_to_person, grow_masks, person_mask
from .removal import remove_people
from .stages import (
    crop_batch,
    crop_mask_batch,
    paste_crops,
    people_crop_boxes,
    pick,
    region_masks,
)

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
    "CropError",
    "CropBox",
    "crop_boxes",
    "crop",
    "paste",
    "pick",
    "region_masks",
    "people_crop_boxes",
    "crop_batch",
    "crop_mask_batch",
    "paste_crops",
]

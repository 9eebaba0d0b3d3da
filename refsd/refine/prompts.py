"""Refinement helpers shared by the ComfyUI nodes and the library: one prompt per person crop.

A crop batch from :func:`refsd.composite.stages.people_crop_boxes` holds one person per crop; SD
samplers (ComfyUI's KSampler, diffusers' pipelines) take one text embedding per batch item,
so every crop can be refined with its own person's description instead of one prompt that
lists everybody in the photo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..composite import CropBox
from ..people import AttributesError, PersonAttributes, build_prompt

__all__ = ["crop_prompts", "stack_cross_attention"]

EMPTY_POSITIVE = "a photo, natural light, high quality"


def crop_prompts(
    people: Sequence[Sequence[PersonAttributes]],
    boxes: Sequence[CropBox],
    extra_positive: str = "",
    extra_negative: str = "",
) -> list[tuple[str, str]]:
    """``(positive, negative)`` for every crop box: the attributes of the person the crop is of.

    ``people[i][p]`` are the attributes of fitted person ``p`` of image ``i`` (what
    :meth:`refsd.render.avatar.AttributeSource.resolve` returns); each box names its image and person.
    """
    out = []
    for k, b in enumerate(boxes):
        if not 0 <= b.image_index < len(people):
            raise AttributesError(
                f"crop {k} is of image {b.image_index} but attributes were resolved for {len(people)} image(s); "
                "use the same body fit for RefSD Crop People and the prompts."
            )
        persons = people[b.image_index]
        if not 0 <= b.person_index < len(persons):
            raise AttributesError(
                f"crop {k} is of person {b.person_index} of image {b.image_index}, which has {len(persons)} fitted "
                "people; use the same body fit for RefSD Crop People and the prompts."
            )
        out.append(build_prompt(persons[b.person_index], extra_positive, extra_negative))
    return out


def stack_cross_attention(conds: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-item text embeddings ``(1, T_i, D)`` -> one batch ``(N, T, D)``.

    Prompts longer than one 77-token chunk have ``T_i`` = 77 k; shorter items are repeated
    along the token axis to the least common multiple, which leaves cross-attention
    unchanged (softmax over repeated keys/values is the same), as ComfyUI does when it
    batches conditionings.
    """
    if not conds:
        raise ValueError("no embeddings to stack")
    dims = {c.shape[-1] for c in conds}
    if len(dims) != 1 or any(c.dim() != 3 or c.shape[0] != 1 for c in conds):
        raise ValueError(f"embeddings must all be (1, T, D) with one D, got {[tuple(c.shape) for c in conds]}")
    length = 1
    for c in conds:
        length = math.lcm(length, c.shape[1])
    return torch.cat([c.repeat(1, length // c.shape[1], 1) for c in conds], 0)

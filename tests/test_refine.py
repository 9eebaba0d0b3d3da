"""Per-person prompts for crop batches (refsd.refine)."""

from __future__ import annotations

import pytest
import torch

from refsd.composite import CropBox
from refsd.people import AttributeDistribution, AttributesError, PersonAttributes, build_prompt
from refsd.refine import crop_prompts, stack_cross_attention


def box(i, p):
    return CropBox(image_index=i, person_index=p, x0=0, y0=0, x1=64, y1=96, width=64, height=96)


def test_each_crop_gets_its_own_persons_prompt():
    dist = AttributeDistribution()
    people = [dist.sample(seed=3, n=2, image_index=0), dist.sample(seed=3, n=1, image_index=1)]
    assert people[0][0] != people[0][1]
    boxes = [box(0, 1), box(1, 0), box(0, 0)]
    prompts = crop_prompts(people, boxes, "sharp", "cartoon")
    assert prompts == [build_prompt(people[0][1], "sharp", "cartoon"), build_prompt(people[1][0], "sharp", "cartoon"),
                       build_prompt(people[0][0], "sharp", "cartoon")]
    assert all("sharp" in p and "cartoon" in n for p, n in prompts)


def test_crop_of_unknown_person_names_the_fix():
    people = [[PersonAttributes()]]
    with pytest.raises(AttributesError, match="person 2 of image 0, which has 1 fitted"):
        crop_prompts(people, [box(0, 2)])
    with pytest.raises(AttributesError, match="image 1 but attributes were resolved for 1 image"):
        crop_prompts(people, [box(1, 0)])


def test_stacking_long_and_short_prompts_keeps_cross_attention_unchanged():
    g = torch.Generator().manual_seed(0)
    short, long = torch.randn(1, 77, 32, generator=g), torch.randn(1, 154, 32, generator=g)
    stacked = stack_cross_attention([short, long, short])
    assert stacked.shape == (3, 154, 32)
    q = torch.randn(5, 32, generator=g)

    def attend(kv):
        return torch.softmax(q @ kv.T / 32 ** 0.5, -1) @ kv

    assert torch.allclose(attend(stacked[0]), attend(short[0]), atol=1e-6)
    assert torch.equal(stacked[1], long[0])
    with pytest.raises(ValueError, match="one D"):
        stack_cross_attention([short, torch.randn(1, 77, 16)])

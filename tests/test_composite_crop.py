"""Per-person crops at SD resolution and paste-back, on a real photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refsd.comfyapi import PACK_ROOT
from refsd.composite import CropBox, CropError, crop, crop_boxes, paste


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    img = np.array(Image.open(PACK_ROOT / "samples" / "camera.png").convert("RGB"))
    return torch.from_numpy(img).float() / 255


def test_boxes_have_the_target_aspect_and_contain_the_person():
    m = torch.zeros(2, 2000, 3000)
    m[0, 1000:1100, 500:540] = 1  # a small far person in a big photo
    m[1, 100:1900, 2000:2600] = 1
    boxes = crop_boxes(torch.cat([m, torch.zeros(1, 2000, 3000)]), 512, 768, context=0.1)
    assert [b.person_index for b in boxes] == [0, 1]  # the empty mask gets no box
    for b, (y0, y1, x0, x1) in zip(boxes, ((1000, 1100, 500, 540), (100, 1900, 2000, 2600)), strict=True):
        assert abs((b.x1 - b.x0) / (b.y1 - b.y0) - 512 / 768) < 1e-9
        assert b.x0 <= x0 and b.x1 >= x1 and b.y0 <= y0 and b.y1 >= y1
        assert (b.width, b.height) == (512, 768)
    # the small person fills most of the crop height: full SD resolution for them
    assert 100 / (boxes[0].y1 - boxes[0].y0) > 0.7
    assert CropBox.from_dict(boxes[0].to_dict()) == boxes[0]


def test_crop_then_paste_restores_the_region(photo):
    m = torch.zeros(1, 512, 512)
    m[0, 120:380, 60:300] = 1
    (box,) = crop_boxes(m, 256, 320, context=0.05)
    c = crop(photo, box)
    assert c.shape == (320, 256, 3)
    back = paste(torch.zeros_like(photo), c, box)
    inside = torch.zeros(512, 512, dtype=torch.bool)
    inside[125:375, 65:295] = True
    err = (back[inside] - photo[inside]).abs()
    assert err.mean() < 0.02  # a resampling round trip
    # outside the box nothing changes; with a mask only the mask changes
    base = torch.rand(512, 512, 3, generator=torch.Generator().manual_seed(0))
    out = paste(base, c, box, mask=m[0])
    assert torch.equal(out[m[0] < 0.5], base[m[0] < 0.5])


def test_crop_pixel_alignment():
    img = torch.zeros(64, 64, 3)
    img[10, 20] = 1.0  # pixel (row 10, col 20), centre (20.5, 10.5)
    box = CropBox(0, 0, 16.0, 8.0, 32.0, 24.0, 64, 64)  # 16 px -> 64 px, 4x
    c = crop(img, box, mode="nearest")
    ys, xs = torch.nonzero(c[..., 0] > 0.5).T
    assert ys.min() == 8 and ys.max() == 11 and xs.min() == 16 and xs.max() == 19


def test_bad_inputs(photo):
    with pytest.raises(CropError, match="multiple of 64"):
        crop_boxes(torch.zeros(1, 10, 10), 500, 768)
    box = CropBox(0, 0, 0.0, 0.0, 10.0, 10.0, 64, 64)
    with pytest.raises(CropError, match="box is 64 x 64"):
        paste(photo, torch.zeros(32, 32, 3), box)

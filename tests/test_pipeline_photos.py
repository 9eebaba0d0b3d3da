"""The real photos of the contact sheet (scripts/contact_sheet.py) and their hand-annotated keypoints.

* ``astronaut.png`` (scikit-image 0.25.2) and ``bus.jpg`` (ultralytics 8.4.190) are fetched by
  ``scripts/fetch_photos.py`` (``make setup`` runs it; here it runs when they are missing) into
  ``$REFSD_CACHE_DIR/photos``, never committed; both wheels and photos are sha256-pinned.
* ``samples/astronaut.json`` / ``samples/bus.json`` (and ``samples/camera.json``) are hand-annotated
  OpenPose COCO-18; they must parse, hold the people annotated, be anatomically consistent, fit
  with good quality and lie on the fitted bodies.
* One render-only pipeline run on astronaut.png: privacy check passed, every region pixel changed,
  nothing outside the region changed.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from refsd.keypoints import COCO18_NAMES, count_people, load_pose_keypoint_file, parse_pose_keypoint

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

_spec = importlib.util.spec_from_file_location("refsd_fetch_photos", ROOT / "scripts" / "fetch_photos.py")
fetch_photos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fetch_photos  # dataclasses look the module up
_spec.loader.exec_module(fetch_photos)

#: photo -> (image size, people annotated)
ANNOTATED = {"camera.png": ((512, 512), 1), "astronaut.png": ((512, 512), 1), "bus.jpg": ((810, 1080), 2)}
MINE = ("astronaut.png", "bus.jpg")  # annotated for this test; camera.json predates it
J = {n: i for i, n in enumerate(COCO18_NAMES)}
#: (right pair, left pair) of limbs whose image lengths must agree within LIMB_RATIO
LIMB_PAIRS = {
    "upper arm": (("RShoulder", "RElbow"), ("LShoulder", "LElbow")),
    "forearm": (("RElbow", "RWrist"), ("LElbow", "LWrist")),
    "thigh": (("RHip", "RKnee"), ("LHip", "LKnee")),
    "shin": (("RKnee", "RAnkle"), ("LKnee", "LAnkle")),
    "neck-shoulder": (("Neck", "RShoulder"), ("Neck", "LShoulder")),
    "nose-eye": (("Nose", "REye"), ("Nose", "LEye")),
}
LIMB_RATIO = 1.6


def _keypoints(name: str) -> Path:
    return SAMPLES / (Path(name).stem + ".json")


@pytest.fixture(scope="module")
def photos() -> dict[str, Path]:
    try:
        return {name: fetch_photos.photo_path(name) for name in ANNOTATED}
    except fetch_photos.FetchError as e:
        pytest.fail(f"{e}\n(`make setup` runs scripts/fetch_photos.py)")


@pytest.fixture(scope="module")
def pipe(anny_cache_dir):
    from refsd.pipeline import RefSDPipeline

    p = RefSDPipeline(refiner=None, anny_cache_dir=anny_cache_dir, device="cpu")
    p.warm_up()
    return p


def _people(name: str) -> list[np.ndarray]:
    size, _ = ANNOTATED[name]
    frame = parse_pose_keypoint(load_pose_keypoint_file(_keypoints(name)), image_sizes=[size], coords="pixels")[0]
    return [p.body for p in frame.people]


def test_photos_fetched_with_pinned_sha256(photos):
    from PIL import Image

    assert fetch_photos.sha256(photos["camera.png"]) == fetch_photos.CAMERA_SHA256
    files = {name: fetch_photos.photo_path(name) for name in fetch_photos.PHOTOS}  # the photos and the test video
    for name, spec in fetch_photos.PHOTOS.items():
        assert files[name].is_file()
        assert fetch_photos.sha256(files[name]) == spec.sha256, name
        if name in ANNOTATED:
            with Image.open(files[name]) as im:
                assert im.size == ANNOTATED[name][0]
    # idempotent: a second call neither downloads nor rewrites
    before = {n: files[n].stat().st_mtime_ns for n in fetch_photos.PHOTOS}
    again = fetch_photos.fetch_all(quiet=True)
    assert {n: p.stat().st_mtime_ns for n, p in again.items()} == before


def test_photos_are_not_committed():
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "--", "*.jpg", "*.png"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    names = {Path(p).name for p in tracked.stdout.split()}
    assert not {"bus.jpg", "astronaut.png"} & names


@pytest.mark.parametrize("name", list(ANNOTATED))
def test_annotations_parse(name):
    size, people = ANNOTATED[name]
    frames = load_pose_keypoint_file(_keypoints(name))
    assert count_people(frames) == [people]
    assert (frames[0]["canvas_width"], frames[0]["canvas_height"]) == size
    bodies = _people(name)
    assert len(bodies) == people
    for body in bodies:
        ok = body[:, 2] > 0
        assert ok.sum() >= 9
        x, y = body[ok, 0], body[ok, 1]
        assert (x >= 0).all() and (x < size[0]).all() and (y >= 0).all() and (y < size[1]).all()


@pytest.mark.parametrize("name", MINE)
def test_annotations_are_anatomically_consistent(name):
    for pi, b in enumerate(_people(name)):
        def pt(j, b=b):
            x, y, c = b[J[j]]
            return (x, y) if c > 0 else None

        # head above neck above hips, every visible eye above the nose, neck between the shoulders
        assert pt("Nose")[1] < pt("Neck")[1]
        for eye in ("REye", "LEye"):
            assert pt(eye)[1] < pt("Nose")[1]
        for hip in ("RHip", "LHip"):
            if pt(hip):
                assert pt(hip)[1] > pt("Neck")[1] + 100
        # everyone annotated faces the camera: the person's right side is on the image's left
        for r, left in (("RShoulder", "LShoulder"), ("REye", "LEye"), ("RHip", "LHip")):
            if pt(r) and pt(left):
                assert pt(r)[0] < pt(left)[0], (name, pi, r)
        assert pt("RShoulder")[0] < pt("Neck")[0] < pt("LShoulder")[0]
        checked = 0
        for limb, (rp, lp) in LIMB_PAIRS.items():
            ends = [pt(j) for j in (*rp, *lp)]
            if any(e is None for e in ends):
                continue
            lr, ll = math.dist(ends[0], ends[1]), math.dist(ends[2], ends[3])
            assert max(lr, ll) / min(lr, ll) <= LIMB_RATIO, (name, pi, limb, lr, ll)
            checked += 1
        assert checked >= (3 if name == "astronaut.png" else 6), (name, pi, checked)
        shoulders = math.dist(pt("RShoulder"), pt("LShoulder"))
        upper_arm = math.dist(pt("RShoulder"), pt("RElbow"))
        assert 0.4 < upper_arm / shoulders < 1.5


@pytest.mark.parametrize("name", MINE)
def test_annotations_fit_and_lie_on_the_body(name, pipe):
    from refsd.fit.api import fit_pose_keypoint
    from refsd.render.scene import fit_person_masks

    size, people = ANNOTATED[name]
    fitter = pipe.body.fitter(pipe.device, torch.float32)
    fit = fit_pose_keypoint(fitter, load_pose_keypoint_file(_keypoints(name)), [size])[0]
    assert fit.num_people == people and not fit.skipped
    assert [p.quality for p in fit.people] == ["good"] * people
    assert max(p.reproj_error_px for p in fit.people) < 0.03 * size[1]
    masks = fit_person_masks(fitter.model, fit).cpu() > 0.5
    for pi, body in enumerate(_people(name)):
        ys, xs = torch.nonzero(masks[pi], as_tuple=True)
        for j in np.nonzero(body[:, 2] > 0)[0]:
            d = torch.sqrt((xs - float(body[j, 0])) ** 2 + (ys - float(body[j, 1])) ** 2).min().item()
            assert d <= 6.0, (name, pi, COCO18_NAMES[j], d)


def test_render_only_pipeline_on_astronaut(photos, pipe):
    from refsd.pipeline import load_image

    res = pipe(photos["astronaut.png"], _keypoints("astronaut.png"), seed=3)
    image = load_image(photos["astronaut.png"])
    assert res.image.shape == image.shape
    assert res.num_people == 1 and not res.unfitted
    assert res.privacy_passed and res.leak_ratio == 0.0
    region = res.region > 0.5
    # the region is the woman, not the flag, the shuttle model or the table beside her (it was
    # 84 % of the image when the scene colours came only from beyond the reach; now ~66 %)
    assert 0.4 < region.float().mean().item() < 0.72
    changed = (res.image - image).abs().amax(-1) > 0
    assert changed[region].float().mean().item() == 1.0
    assert not changed[~region].any()
    # the avatar covers the annotated face and shoulders
    body = _people("astronaut.png")[0]
    for j in ("Nose", "Neck", "RShoulder", "LShoulder"):
        x, y = body[J[j], :2]
        assert res.avatar_mask[int(y), int(x)] > 0.5, j


@pytest.mark.parametrize("name", ["astronaut.png", "bus.jpg"])
def test_colour_match_keeps_skin_hues_on_real_colour_photos(photos, name):
    """On real colour photos (daylight bus street, studio portrait) the colour match moves the ten
    Monk skin swatches' hue by at most 16 degrees and keeps every one inside the skin-hue range
    (HSV 0-50 degrees) and its saturation (>= 0.7x): the same bounds as the synthetic casts in
    test_composite.py, here with the photos' own light."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_composite import _dilate_box, _hsv_hue_sat, _skin_people

    from refsd.composite import composite, is_greyscale, remove_people
    from refsd.pipeline import load_image

    scene = load_image(photos[name])
    assert not is_greyscale(scene)
    h, w = scene.shape[:2]
    people, mask, which = _skin_people(h, w)
    region = _dilate_box(mask)
    clean = remove_people(scene, region)
    h0, s0 = _hsv_hue_sat(people)
    out = composite(clean, people, mask.float(), region.float(), feather_px=0.0, match_color=1.0)
    h1, s1 = _hsv_hue_sat(out)
    moved = []
    for i in range(10):
        sel = which == i
        assert -0.5 <= float(h1[sel].min()) and float(h1[sel].max()) <= 50.0, i
        shift = float((h1[sel] - h0[sel]).abs().max())
        assert shift <= 16.0, (i, shift)
        assert float(s1[sel].mean()) >= 0.7 * float(s0[sel].mean()), i
        moved.append(round(shift, 1))
    print(name, "max hue shift per Monk tone (deg):", moved)

"""The person detector (refsd.detect) on real photos with the real BlazePose files.

* the decoding maths (anchors, NMS, rotated crops and their inverse, tiles) on exact cases;
* the whole detector against MediaPipe's reference runtime (ai-edge-litert) running the same
  graphs: landmarks within 0.5 px, masks within 1e-3, on the photos;
* quality against the hand annotations: camera.png, astronaut.png, bus.jpg (every full-body
  person found);
* the person masks: the cameraman's dark coat inside the detector's mask and inside the region;
* bad input: no person, 16 x 16, 8K, gray, RGBA, NaN, batches, bad arguments, missing files.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refsd.detect import (
    DetectError,
    DetectModelsMissing,
    PersonDetector,
    decode,
)
from refsd.keypoints import load_pose_keypoint_file, matched_errors, parse_pose_keypoint

sys.path.insert(0, str(Path(__file__).parent))
from helpers import require_detect_models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _photo(name: str) -> np.ndarray:
    if name == "camera.png":
        return np.array(Image.open(ROOT / "samples" / name).convert("RGB"))
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_photos

    return np.array(Image.open(fetch_photos.photo_path(name)).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    return PersonDetector("full", model_dirs=[require_detect_models()])


@pytest.fixture(scope="module")
def detections(detector):
    return {n: detector(_photo(n)) for n in ("camera.png", "astronaut.png", "bus.jpg")}


# ---------------------------------------------------------------------------
# Decoding maths
# ---------------------------------------------------------------------------
def test_anchors_are_mediapipes_layout():
    a = decode.ssd_anchors()
    assert a.shape == (2254, 2)  # 28x28x2 + 14x14x2 + 7x7x6
    assert torch.allclose(a[0], torch.tensor([0.5 / 28, 0.5 / 28]))
    assert torch.equal(a[0], a[1])  # two anchors per cell of the stride-8 map
    assert torch.allclose(a[1568], torch.tensor([0.5 / 14, 0.5 / 14]))
    assert torch.allclose(a[-1], torch.tensor([6.5 / 7, 6.5 / 7]))
    assert torch.equal(a[-6], a[-1])  # strides 32, 32, 32 share one map: 6 anchors per cell


def test_weighted_nms_merges_overlaps_by_score():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=torch.float32)
    kps = torch.zeros(3, 4, 2)
    kps[1] += 4.0
    scores = torch.tensor([0.9, 0.3, 0.6])
    b, k, s = decode.weighted_nms(boxes, kps, scores, min_score=0.5)
    assert s == pytest.approx([0.9, 0.6])  # the 0.3 box is under the threshold
    b, k, s = decode.weighted_nms(boxes, kps, scores, min_score=0.1)
    assert s == pytest.approx([0.9, 0.6])
    assert b[0][0] == pytest.approx(0.3 / 1.2)  # (0.9 * 0 + 0.3 * 1) / 1.2
    assert float(k[0][0, 0]) == pytest.approx(4 * 0.3 / 1.2)
    assert decode.weighted_nms(boxes, kps, scores, min_score=0.1, max_count=1)[2] == pytest.approx([0.9])


def test_roi_is_upright_for_a_standing_person_and_turns_with_them():
    hips, head = torch.tensor([100.0, 200.0]), torch.tensor([100.0, 120.0])
    roi = decode.detection_rois(torch.stack([hips, head, hips, head])[None])[0]
    assert roi.tolist() == pytest.approx([100, 200, 2 * 80 * 1.25, 0.0], abs=1e-5)
    lying = decode.detection_rois(torch.stack([hips, hips + torch.tensor([80.0, 0]), hips, hips])[None])[0]
    assert float(lying[3]) == pytest.approx(math.pi / 2, abs=1e-6)  # head to the right: turned 90 deg
    # the crop's top centre (the head side) lands on the head in both cases
    for r, top in ((roi, head), (lying, hips + torch.tensor([80.0, 0]))):
        p = decode.roi_to_image(r[None], torch.tensor([[[0.5, 0.5 - 1 / 2.5]]]))[0, 0]
        assert torch.allclose(p, top, atol=1e-4)


def test_crop_and_mask_back_are_inverse_maps():
    """A rotated crop of a smooth image, warped back, is the image again inside the ROI (bilinear
    twice on a linear ramp is exact up to float32 rounding of coordinates ~1e-5 px)."""
    h, w = 120, 160
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    ramp = (0.002 * xs + 0.003 * ys).float()
    roi = torch.tensor([[80.0, 60.0, 64.0, 0.6]])
    crop = decode.crop_rois(ramp[..., None].expand(h, w, 3).contiguous(), roi, 64)[0, ..., 0]
    back = decode.roi_mask_to_image(crop, roi[0], h, w)
    inner = decode.roi_mask_to_image(torch.ones(64, 64), roi[0], h, w) > 0.999
    assert int(inner.sum()) > 0.8 * 64 * 64
    assert float((back - ramp)[inner].abs().max()) < 1e-4


@pytest.mark.parametrize("length,side", [(100, 100), (512, 256), (1080, 405), (7680, 2160)])
def test_tiles_cover_the_photo_half_overlapping(length, side):
    starts = decode.tile_starts(length, side)
    assert starts[0] == 0 and starts[-1] + side == max(length, side)
    assert all(b - a <= side / 2 + 1 for a, b in zip(starts, starts[1:], strict=False))


# ---------------------------------------------------------------------------
# Against the reference runtime
# ---------------------------------------------------------------------------
class _LiteRT:
    """The same .tflite graph run by MediaPipe's own runtime, one image at a time."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(str(path))
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.outs = [o["index"] for o in self.it.get_output_details()]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        res = []
        for b in range(x.shape[0]):
            self.it.set_tensor(self.inp, x[b : b + 1].numpy().astype(np.float32))
            self.it.invoke()
            res.append([torch.from_numpy(self.it.get_tensor(o).copy()) for o in self.outs])
        return [torch.cat(r) for r in zip(*res, strict=True)]


@pytest.mark.parametrize("name", ["camera.png", "bus.jpg"])
def test_detector_matches_the_reference_runtime(detector, detections, name):
    """Landmarks within 0.5 px and masks within 1e-3 of the same decoding on LiteRT's outputs.

    The mask is the sigmoid of logits reaching +-1700, so at its edge a 1e-5 px difference of the
    ROI (the detector's float32 rounding) moves single pixels by up to ~1e-2: the mask is held to
    1e-3 on 99.9 % of the pixels and 1e-4 on average (the networks alone, on one crop, are compared
    in test_detect_tflite.py)."""
    d = require_detect_models()
    ref = PersonDetector("full", model_dirs=[d])
    ref.detector, ref.landmarker = _LiteRT(d / "pose_detection.tflite"), _LiteRT(d / "pose_landmark_full.tflite")
    mine, theirs = detections[name], ref(_photo(name))
    assert mine.num_people == theirs.num_people >= 1
    for a, b in zip(mine.people, theirs.people, strict=True):
        assert np.abs(a.landmarks[:, :2] - b.landmarks[:, :2]).max() < 0.5
        assert np.abs(a.landmarks[:, 3:] - b.landmarks[:, 3:]).max() < 1e-3
        diff = (a.mask - b.mask).abs()
        assert float((diff > 1e-3).float().mean()) < 1e-3 and float(diff.mean()) < 1e-4
        assert a.score == pytest.approx(b.score, abs=1e-3)


# ---------------------------------------------------------------------------
# Quality on real photos
# ---------------------------------------------------------------------------
def _errors_vs_annotation(name: str, dets) -> list[tuple[float, float]]:
    """Per annotated person: (median pixel error of the best-matching detected person, the
    annotated person's height in pixels)."""
    img = _photo(name)
    ann = parse_pose_keypoint(load_pose_keypoint_file(ROOT / "samples" / (Path(name).stem + ".json")),
                              (img.shape[1], img.shape[0]))[0]
    return matched_errors(ann, dets.frame())


def test_every_annotated_person_is_found(detections):
    """camera.png: the cameraman; astronaut.png; bus.jpg: both full-body people (the two cut by the
    frame edges are not annotated). Each annotated person's median joint error is under 15 % of the
    height of their annotated joints (measured: 36 px of 275 on camera.png, whose hips hide under
    the coat; ~4 % on astronaut.png and bus.jpg, see bench/detect.py)."""
    assert detections["camera.png"].num_people == 1
    assert detections["astronaut.png"].num_people == 1
    assert detections["bus.jpg"].num_people >= 2
    for name in ("camera.png", "astronaut.png", "bus.jpg"):
        errs = _errors_vs_annotation(name, detections[name])
        assert all(e < 0.15 * h for e, h in errs), (name, errs)


@pytest.mark.parametrize("variant", ["lite", "heavy"])
def test_lite_and_heavy_models_find_the_same_people(variant):
    d = require_detect_models()
    if not (d / f"pose_landmark_{variant}.tflite").is_file():
        pytest.skip(f"pose_landmark_{variant}.tflite comes from npm at set-up (refsd models fetch --all)")
    det = PersonDetector(variant, model_dirs=[d])
    for name, count in (("camera.png", 1), ("bus.jpg", 2)):
        dets = det(_photo(name))
        assert dets.num_people == count, (variant, name, dets.scores())
        assert all(e < 0.15 * h for e, h in _errors_vs_annotation(name, dets))


def test_keypoints_are_coco18_with_feet_and_real_confidences(detections):
    frame = detections["bus.jpg"].frame()
    assert frame.image_size == (810, 1080)
    for p in frame.people:
        assert p.body.shape == (18, 3) and p.foot.shape == (6, 3)
        conf = p.body[:, 2]
        assert ((conf >= 0) & (conf <= 1)).all() and conf.max() > 0.9 and len(np.unique(conf)) > 5
        assert np.isnan(p.foot[[1, 4], 0]).all()  # BlazePose has no small toes
        assert (p.foot[[0, 2, 3, 5], 2] > 0.3).all()  # heels and big toes of standing people
        neck, rs, ls = p.body[1, :2], p.body[2, :2], p.body[5, :2]
        assert np.allclose(neck, (rs + ls) / 2)
        assert p.body[0, 1] < neck[1] < p.body[8, 1] < p.body[10, 1]  # nose above neck above hip above ankle
    # the astronaut's legs are below the frame: missing, not guessed
    astro = detections["astronaut.png"].frame().people[0]
    assert np.isnan(astro.body[[9, 10, 12, 13], 0]).all()


def test_person_mask_holds_the_coat_and_the_region_uses_it(detections, anny_model):
    """The cameraman's dark pixels (coat, hair, gloves: dark, left of x = 360, not the tripod's legs
    below y = 300 right of x = 225) lie in the detector's mask (99.6 % measured) and all of them in
    the region made from the fitted body with the detector's mask as segmentation."""
    import json

    from refsd.composite import extend_to_person, person_mask
    from refsd.fit import BodyFitter
    from refsd.fit.api import fit_pose_keypoint
    from refsd.render.scene import fit_person_masks

    photo = torch.from_numpy(_photo("camera.png")).float() / 255
    dark = photo.mean(-1) < 0.2
    dark[:, 360:] = False
    dark[:60] = False
    dark[300:, 225:] = False  # the tripod's legs
    det = detections["camera.png"]
    m = det.union_mask()
    assert m.shape == (512, 512) and torch.equal(m, det.masks()[0])
    assert float((m > 0.5)[dark].float().mean()) > 0.99
    assert float((m > 0.5).float().mean()) < 0.45  # the man, not the scene
    frames = json.loads((ROOT / "samples" / "camera.json").read_text())
    fit = fit_pose_keypoint(BodyFitter(anny_model), frames, [(512, 512)])[0]
    sil = fit_person_masks(anny_model, fit).cpu()
    region, per = person_mask(extend_to_person(photo, sil, 0.25, segmentation=m), m, 0.06)
    assert float(region[dark].min()) == 1.0 and float(per[0][dark].min()) == 1.0  # the person's own crop too
    assert float(region.mean()) < 0.6


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
def test_no_person_tiny_and_blank_images_give_no_people(detector):
    for img in (np.zeros((16, 16, 3), np.uint8), np.full((300, 400, 3), 200, np.uint8), np.zeros((1, 1, 3))):
        d = detector(img)
        assert d.num_people == 0 and d.frame().people == [] and d.masks().shape == (0, *img.shape[:2])
        assert d.union_mask().shape == img.shape[:2] and float(d.union_mask().sum()) == 0
        assert "no person" in d.frame().warnings[0]


def test_gray_rgba_and_8k_photos(detector, detections):
    rgb = _photo("camera.png")
    gray = detector(rgb.mean(-1).astype(np.uint8))
    rgba = detector(np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], -1))
    as_float = detector(torch.from_numpy(rgb).float() / 255)
    base = detections["camera.png"].people[0].landmarks
    for d in (gray, rgba, as_float):
        assert d.num_people == 1
        assert np.abs(d.people[0].landmarks[:, :2] - base[:, :2]).max() < 3.0  # camera.png is gray already
    big = Image.fromarray(_photo("bus.jpg")).resize((4320, 5760), Image.BILINEAR)  # 5760 x 4320: 8K-class
    d = detector(np.asarray(big))
    assert d.num_people >= 2 and d.masks().shape[1:] == (5760, 4320)


def test_bad_images_and_arguments_are_clear_errors(detector):
    with pytest.raises(DetectError, match="one image of a batch"):
        detector(np.zeros((2, 64, 64, 3)))
    with pytest.raises(DetectError, match="empty"):
        detector(np.zeros((0, 10, 3)))
    nan = np.zeros((64, 64, 3), np.float32)
    nan[3, 3] = np.nan
    with pytest.raises(DetectError, match="NaN"):
        detector(nan)
    with pytest.raises(DetectError, match="0..1"):
        detector(np.zeros((64, 64, 3)), min_score=2)
    with pytest.raises(DetectError, match="lite, full, heavy"):
        PersonDetector("huge")


def test_missing_model_files_name_the_folder_and_the_fetch_command(tmp_path):
    with pytest.raises(DetectModelsMissing) as e:
        PersonDetector("heavy", model_dirs=[tmp_path])
    msg = str(e.value)
    assert str(tmp_path) in msg and "pose_detection.tflite" in msg and "pose_landmark_heavy.tflite" in msg
    assert "refsd models fetch" in msg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(detections):
    d = PersonDetector("full", model_dirs=[require_detect_models()], device="cuda")(_photo("bus.jpg"))
    for a, b in zip(d.people, detections["bus.jpg"].people, strict=True):
        assert np.abs(a.landmarks[:, :2] - b.landmarks[:, :2]).max() < 0.5


def test_following_a_video_finds_the_people_the_detector_misses(detector):
    """MediaPipe's tracking mode (``follow``) on bus.jpg under a 4 px/frame pan: with the detector
    made blind (min_score 0.99: its scores here are 0.91-0.98), frame 9 still has both men, found
    where frame 8 had them, once each; following a frame's own people adds no one."""
    from refsd.testing.video import pan_video

    photo = np.asarray(Image.fromarray(_photo("bus.jpg")).resize((405, 540), Image.LANCZOS))
    frames = pan_video(photo, 10, (320, 480), (4, 0))
    prev = detector(frames[8])
    men = [p for p in prev.people if p.box[3] > 150]  # the two men (faces at y ~ 220; not the top edge)
    assert len(men) == 2 and all(p.align is not None and not p.followed for p in men)
    assert detector(frames[9], min_score=0.99).num_people == 0
    found = detector(frames[9], min_score=0.99, follow=men)
    assert found.num_people == 2 and all(p.followed for p in found.people)
    for p in found.people:
        # the same man: his landmarks moved by the pan (4 px left) and his own step, not to the other man
        d = [np.median(np.linalg.norm(p.landmarks[:, :2] - (q.landmarks[:, :2] - [4, 0]), axis=1)) for q in men]
        assert min(d) < 8 and max(d) > 40, d
        assert p.score == p.presence > 0.5 and p.mask.shape == (480, 320)
    again = detector(frames[8], follow=prev.people)
    assert again.num_people == prev.num_people
    assert detector(frames[9], follow=[]).num_people == detector(frames[9]).num_people

"""The face pipeline (refsd.detect.FaceAnalyzer: YuNet + SFace in torch) against OpenCV 4.x's
``FaceDetectorYN`` / ``FaceRecognizerSF`` running the same files, on real photos.

OpenCV (``opencv-python-headless>=4.8,<5``) is a test-only reference: RefSD never imports it.
Skipped where cv2 is missing, or is 5.x (whose FaceRecognizerSF cannot run SFace's file).

Tolerances, derived:

* Detection: YuNet's raw outputs agree within RTOL = 1e-4 of their scale between float32
  implementations (tests/test_detect_onnx.py derives it). Box offsets and log-sizes (|value|
  <= ~3) then carry <= 3e-4 noise, times the stride (<= 32 px): <= 0.01 px on centres and
  landmarks, and a relative 3e-4 on sizes; so boxes and landmarks agree within
  PX_TOL + SIZE_RTOL x the box's side (0.02 px + 5e-4 x side), scores (square roots of
  sigmoid products, noise ~1e-6) within SCORE_TOL = 1e-4. Counts agree when no candidate
  lies within 1e-3 of the score threshold (checked).
* Alignment: OpenCV's warpAffine rounds each source position to 1/32 px (through 1/1024-px
  fixed point: <= 1/64 + 1/1024 px per axis), weighs the four taps in 15-bit fixed point
  (weights rounded to sum to 2**15: <= 255 x 3.5 x 2**-16 = 0.014 levels) and rounds to 8 bits
  (0.5 level); RefSD samples exactly in float. Per pixel and channel, |RefSD x 255 - OpenCV|
  <= 0.5 + 0.017 (Dx + Dy) + 0.03, Dx / Dy the largest step between horizontally /
  vertically adjacent taps around the sample (its 2 x 2 cell and the cells next to it).
* Features: on the same aligned crop, RefSD's SFace and OpenCV's agree to 1 - cos <= 1e-6
  (RTOL 1e-4 per element gives ~1e-7); through the two alignments (crops differing by the
  rounding above, 0.3 level on average) the features agree to cos >= 0.999.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the reference, test-only) missing")
if int(cv2.__version__.split(".")[0]) >= 5:
    pytest.skip(f"OpenCV {cv2.__version__}: FaceRecognizerSF of OpenCV 5 cannot run SFace; install "
                "opencv-python-headless<5", allow_module_level=True)

from refsd.detect import (  # noqa: E402
    FACE_KEYS,
    MODEL_FILES,
    SFACE_COSINE_THRESHOLD,
    DetectModelsMissing,
    Face,
    FaceAnalyzer,
    FaceError,
    facemath,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REFSD_CACHE_DIR", ROOT / ".cache"))
PX_TOL, SIZE_RTOL, SCORE_TOL = 0.02, 5e-4, 1e-4
PHOTOS = ("camera.png", "astronaut.png", "bus.jpg")


def _face_dir() -> Path:
    d = CACHE / "detect"
    if not all((d / MODEL_FILES[k].name).is_file() for k in FACE_KEYS):
        msg = f"the face model files are not in {d}: run `make detect-models` (refsd models fetch --dest {d})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@functools.cache
def _photo(name: str) -> np.ndarray:
    from PIL import Image

    path = ROOT / "samples" / name if name == "camera.png" else CACHE / "photos" / name
    if not path.is_file():
        pytest.skip(f"{path} missing: fetch the test photos with `make photos`")
    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def fa() -> FaceAnalyzer:
    return FaceAnalyzer(model_dirs=[_face_dir()])


@functools.cache
def _cv_recognizer():
    return cv2.FaceRecognizerSF.create(str(_face_dir() / MODEL_FILES[FACE_KEYS[1]].name), "")


def _cv_detect(bgr: np.ndarray, threshold: float) -> np.ndarray:
    det = cv2.FaceDetectorYN.create(str(_face_dir() / MODEL_FILES[FACE_KEYS[0]].name), "",
                                    (bgr.shape[1], bgr.shape[0]), threshold, 0.3, 5000)
    _, faces = det.detect(bgr)
    return np.zeros((0, 15), np.float32) if faces is None else faces


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def _assert_same_faces(mine: list[Face], ref: np.ndarray, scale: float = 1.0) -> None:
    """``mine`` (photo px) against OpenCV's rows (px of an image ``scale`` times the photo)."""
    assert len(mine) == len(ref), ([f.score for f in mine], ref[:, 14])
    for f, r in zip(mine, ref, strict=True):
        side = max(r[2], r[3])
        tol = PX_TOL + SIZE_RTOL * side
        box = (np.array(f.box) + 0.5) * scale - 0.5
        lm = (f.landmarks + 0.5) * scale - 0.5
        assert np.abs(box - [r[0], r[1], r[0] + r[2], r[1] + r[3]]).max() <= tol, (box, r[:4])
        assert np.abs(lm - r[4:14].reshape(5, 2)).max() <= tol, (lm, r[4:14])
        assert abs(f.score - r[14]) <= SCORE_TOL


@pytest.mark.parametrize("threshold", [0.35, None])
@pytest.mark.parametrize("name", PHOTOS)
def test_detector_matches_opencv(fa, name, threshold):
    rgb = _photo(name)
    thr = fa.score_threshold if threshold is None else threshold
    near = [f.score for f in fa.detect(rgb, score_threshold=thr - 0.01) if abs(f.score - thr) < 1e-3]
    assert not near, f"a candidate scores {near} at the threshold {thr}: the count comparison is ill-posed"
    _assert_same_faces(fa.detect(rgb, score_threshold=thr), _cv_detect(_bgr(rgb), thr))


def test_downscaled_detection_maps_back_to_the_photo(fa):
    """bus.jpg (810 x 1080) at max_side 640: OpenCV on the very pixels YuNet saw; the faces map
    back to the photo by the scale, pixel centres at integers."""
    rgb = _photo("bus.jpg")
    seen = fa.detection_image(rgb, max_side=640).numpy()
    assert seen.shape == (640, 480, 3)
    ref = _cv_detect(np.ascontiguousarray(seen[..., ::-1] * 255), 0.5)
    mine = fa.detect(rgb, max_side=640, score_threshold=0.5)
    assert len(mine) == 2
    _assert_same_faces(mine, ref, scale=480 / 810)
    full = fa.detect(rgb, score_threshold=0.5)  # and near where the full-size pass puts them
    for a, b in zip(mine, full, strict=True):
        assert np.abs(a.landmarks - b.landmarks).max() < 0.15 * (b.box[2] - b.box[0])


def _tap_bound(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(112, 112, 3): 0.5 + 0.017 (Dx + Dy) + 0.03 per output pixel (see the module docstring);
    Dx, Dy over the sample's cell and its neighbours (a 1/64-px shift may cross into them)."""
    inv = facemath.invert_affine(facemath.similarity_transforms(landmarks[None]))[0]
    grid = np.stack(np.meshgrid(np.arange(112.0), np.arange(112.0)), -1)
    src = grid @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(src[..., 0]).astype(int), np.floor(src[..., 1]).astype(int)
    pad = np.pad(rgb.astype(np.float64), ((2, 3), (2, 3), (0, 0)))  # zeros outside, as both warps read

    def tap(dy, dx):
        return pad[np.clip(y0 + dy + 2, 0, pad.shape[0] - 1), np.clip(x0 + dx + 2, 0, pad.shape[1] - 1)]

    steps = [np.abs(tap(j, i + 1) - tap(j, i)) for j in range(-1, 3) for i in range(-1, 2)]
    dx = np.max(steps, axis=0)
    dy = np.max([np.abs(tap(j + 1, i) - tap(j, i)) for j in range(-1, 2) for i in range(-1, 3)], axis=0)
    return 0.5 + 0.017 * (dx + dy) + 0.03


@pytest.mark.parametrize("name", PHOTOS)
def test_alignment_and_features_match_opencv(fa, name):
    rgb = _photo(name)
    bgr = _bgr(rgb)
    rec = _cv_recognizer()
    rows = _cv_detect(bgr, 0.35)
    assert len(rows)
    lms = rows[:, 4:14].reshape(-1, 5, 2)
    aligned = fa.align(rgb, lms).numpy() * 255
    feats = fa.embed(rgb, lms).numpy()
    for k, row in enumerate(rows):
        crop = rec.alignCrop(bgr, row)  # uint8 BGR 112 x 112
        diff = np.abs(aligned[k] - crop[..., ::-1].astype(np.float64))
        bound = _tap_bound(rgb, lms[k])
        assert (diff <= bound).all(), (diff.max(), np.unravel_index(np.argmax(diff - bound), diff.shape))
        assert diff.mean() < 0.5
        ref = rec.feature(crop)[0]
        ref = ref / np.linalg.norm(ref)
        same_crop = fa.embed_aligned(crop[None, ..., ::-1].copy())[0].numpy()
        assert 1 - float(same_crop @ ref) <= 1e-6
        assert float(feats[k] @ ref) >= 0.999, float(feats[k] @ ref)
        assert rec.match(feats[k][None], ref[None], cv2.FaceRecognizerSF_FR_COSINE) >= 0.999


@pytest.mark.parametrize("name", PHOTOS)
def test_whole_pipeline_matches_opencv(fa, name):
    rgb = _photo(name)
    bgr = _bgr(rgb)
    rec = _cv_recognizer()
    faces = fa.detect(rgb)
    rows = _cv_detect(bgr, fa.score_threshold)
    assert len(faces) == len(rows) >= 1
    mine = fa.embed(rgb, faces).numpy()
    for k, row in enumerate(rows):
        ref = rec.feature(rec.alignCrop(bgr, row))[0]
        assert float(mine[k] @ ref) / np.linalg.norm(ref) >= 0.999


# --- what the faces are -----------------------------------------------------------------------


def _annotated(name: str, w: int, h: int) -> list[np.ndarray]:
    """Each annotated person's COCO-18 (x, y, confidence): nose 0, right eye 14, left eye 15."""
    data = json.loads((ROOT / "samples" / (Path(name).stem + ".json")).read_text())
    return [np.array(p["pose_keypoints_2d"], np.float64).reshape(18, 3) for p in data[0]["people"]]


@pytest.mark.parametrize("name,count", [("camera.png", 1), ("astronaut.png", 1), ("bus.jpg", 2)])
def test_faces_are_where_the_people_are(fa, name, count):
    """camera.png: the cameraman (score 0.89, side-lit: OpenCV's usual 0.9 would miss him);
    astronaut.png: Eileen Collins; bus.jpg: the two people facing the camera (the two cut by
    the frame turn away or are cut off)."""
    rgb = _photo(name)
    faces = fa.detect(rgb)
    assert len(faces) == count, [f.score for f in faces]
    people = _annotated(name, rgb.shape[1], rgb.shape[0])
    for f in faces:
        side = f.box[2] - f.box[0]
        nose = [p for p in people if p[0, 2] > 0 and np.hypot(*(p[0, :2] - f.landmarks[2])) < 0.25 * side]
        assert len(nose) == 1, (f, [p[0] for p in people])
        p = nose[0]
        if p[14, 2] > 0:  # the person's right eye, on the image's left
            assert np.hypot(*(p[14, :2] - f.landmarks[0])) < 0.25 * side
        x0, y0, x1, y1 = f.box
        assert x0 < p[0, 0] < x1 and y0 < p[0, 1] < y1
        assert f.landmarks[0, 0] < f.landmarks[1, 0]  # right eye left of the left eye: frontal


def _features(fa, rgb):
    faces = fa.detect(rgb)
    return fa.embed(rgb, faces)


def test_identity_survives_flip_and_brightness(fa):
    """MODELS.md measured with OpenCV: astronaut ~0.95, camera ~0.875 (here x1.25 brighter: 0.89 / 0.89)."""
    for name in ("astronaut.png", "camera.png"):
        rgb = _photo(name)
        changed = np.clip(rgb[:, ::-1].astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
        a, b = _features(fa, rgb), _features(fa, changed)
        assert len(a) == len(b) == 1
        sim = float(fa.similarity(a, b))
        assert sim >= SFACE_COSINE_THRESHOLD + 0.3, (name, sim)


def test_different_people_are_different(fa):
    feats = torch.cat([_features(fa, _photo(n)) for n in PHOTOS])  # cameraman, astronaut, two bus passengers
    assert feats.shape == (4, 128) and torch.allclose(feats.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = fa.similarity(feats, feats)
    assert torch.allclose(sim, sim.T, atol=1e-6) and torch.allclose(sim.diag(), torch.ones(4), atol=1e-5)
    off = sim[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < SFACE_COSINE_THRESHOLD, sim  # measured 0.09 - 0.21
    assert not FaceAnalyzer.same_identity(off).any()


def test_blur_removes_identity(fa):
    """Gaussian blur of the astronaut's face: sigma 2 keeps the identity (0.83), sigma 6 does not
    (0.31, aligned at the sharp photo's landmarks), though YuNet still finds the face."""
    rgb = _photo("astronaut.png")
    ref = _features(fa, rgb)
    lm = fa.detect(rgb)[0].landmarks
    sims = {}
    for sigma in (2, 6):
        blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
        assert len(fa.detect(blurred)) == 1
        sims[sigma] = float(fa.similarity(ref, fa.embed(blurred, lm)))
    assert sims[2] >= SFACE_COSINE_THRESHOLD > sims[6], sims


# --- the API on awkward input ---------------------------------------------------------------


def test_awkward_images(fa):
    assert fa.detect(np.zeros((16, 16, 3), np.uint8)) == [] and fa.detect(np.ones((1, 1))) == []
    rgb = _photo("astronaut.png")
    ref = fa.detect(rgb)
    gray = (rgb.astype(np.float32) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    assert len(fa.detect(gray)) == 1 and fa.embed(gray, ref).shape == (1, 128)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    got = fa.detect(rgba)
    assert len(got) == 1 and got[0].box == ref[0].box and np.array_equal(got[0].landmarks, ref[0].landmarks)
    as_float = torch.from_numpy(rgb).float() / 255
    assert torch.allclose(fa.embed(as_float, ref), fa.embed(rgb, ref), atol=1e-5)
    for empty in ([], np.zeros((0, 5, 2)), torch.zeros(0, 5, 2)):
        assert fa.embed(rgb, empty).shape == (0, 128) and fa.align(rgb, empty).shape == (0, 112, 112, 3)
    assert fa.similarity(fa.embed(rgb, []), fa.embed(rgb, ref)).shape == (0, 1)


def test_landmarks_from_elsewhere_and_batches(fa):
    """embed() takes any landmarks: the astronaut's, applied to her brightened photo; a face
    wholly outside the photo aligns to black; a batch gives what single faces give."""
    rgb = _photo("astronaut.png")
    f = fa.detect(rgb)[0]
    bright = np.clip(rgb.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    assert float(fa.similarity(fa.embed(rgb, f), fa.embed(bright, f.landmarks))) > 0.8
    outside = f.landmarks + 5000
    assert fa.align(rgb, outside).abs().max() == 0
    lms = np.stack([f.landmarks, f.landmarks[:, ::-1] * [1, 0.9], outside])
    batch = fa.embed(rgb, torch.from_numpy(lms))
    singles = torch.cat([fa.embed(rgb, lm) for lm in lms])
    assert batch.shape == (3, 128) and torch.allclose(batch, singles, atol=1e-5)
    assert torch.allclose(fa.embed(rgb, [f]), fa.embed(rgb, lms[:1].reshape(1, 10)), atol=0)


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_an_8k_photo_runs_at_max_side_in_bounded_memory(fa):
    """An 8K-wide photo (7680 x 4320) with the astronaut 4x enlarged: YuNet sees it at 1280 x 720,
    the photo is never converted to float at once (that alone would be 400 MB, and resizing it
    as one tensor 800 MB), and the face maps back to 8K pixels."""
    from PIL import Image

    rgb = _photo("astronaut.png")
    big = np.zeros((4320, 7680, 3), np.uint8)
    big[1000:3048, 3000:5048] = np.asarray(Image.fromarray(rgb).resize((2048, 2048), Image.BILINEAR))
    try:  # reset the process's peak RSS (Linux: clear_refs 5), so the peak below is this call's
        Path("/proc/self/clear_refs").write_text("5")
        before = _kb("VmRSS")
    except (OSError, KeyError):
        before = None
    faces = fa.detect(big)
    if before is not None:
        grown_mb = (_kb("VmHWM") - before) / 1024
        assert grown_mb < 300, grown_mb  # measured ~150 MB (conversion in bands + YuNet at 1280 x 720)
    assert fa.detection_image(big).shape == (720, 1280, 3)
    assert len(faces) == 1
    ref = fa.detect(rgb)[0]
    expected = (ref.landmarks + 0.5) * 4 - 0.5 + [3000, 1000]
    assert np.abs(faces[0].landmarks - expected).max() < 0.05 * (faces[0].box[2] - faces[0].box[0])
    assert float(fa.similarity(fa.embed(big, faces), fa.embed(rgb, ref))) >= SFACE_COSINE_THRESHOLD


def test_small_crops_upscale(fa):
    """A tight crop of one face (110 x 120) is found, and with min_side it is looked at larger."""
    crop = _photo("astronaut.png")[60:180, 170:280]
    assert fa.detection_size(110, 120, min_side=320) == (293, 320)
    for faces in (fa.detect(crop), fa.detect(crop, min_side=320)):
        assert len(faces) == 1 and 0 <= faces[0].landmarks.min() and faces[0].landmarks.max() < 120


def test_bad_arguments_are_clear(fa, tmp_path):
    rgb = _photo("astronaut.png")
    lm = fa.detect(rgb)[0].landmarks
    for bad, match in ((np.full((5, 2), 3.0), "degenerate"), (lm * np.nan, "NaN"), (np.zeros((2, 4, 2)), "5, 2")):
        with pytest.raises(FaceError, match=match):
            fa.embed(rgb, bad)
    for image in (np.zeros((2, 8, 8, 3)), np.zeros((0, 8, 3)), np.zeros((8, 8, 2))):
        with pytest.raises(FaceError):
            fa.detect(image)
    with pytest.raises(FaceError):
        fa.detect(rgb, score_threshold=1.5)
    with pytest.raises(FaceError):
        FaceAnalyzer(model_dirs=[_face_dir()], max_side=8)
    with pytest.raises(FaceError, match="112"):
        fa.embed_aligned(np.zeros((1, 64, 64, 3)))
    with pytest.raises(FaceError):
        fa.similarity(np.zeros((2, 128)), np.zeros((2, 64)))
    with pytest.raises(DetectModelsMissing) as err:
        FaceAnalyzer(model_dirs=[tmp_path])
    msg = str(err.value)
    assert all(MODEL_FILES[k].name in msg for k in FACE_KEYS) and "refsd models fetch" in msg and str(tmp_path) in msg

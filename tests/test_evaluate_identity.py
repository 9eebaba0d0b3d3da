"""refsd.evaluate.identity on real photos with the real face models (fetched at set-up):

* the astronaut against a flipped and brightened copy of herself: a leak;
* against a different person's photo (the cameraman): no leak;
* against her photo blurred (sigma 4 and 6 px: the face still "leaks no equal pixel"): a leak --
  blur is not pseudonymization; the sharp-only SFace cosine alone would miss it (< 0.363);
* the cameraman with his face region replaced by the render-only pipeline: passes;
* a photo without a face (16 x 16), keypoint people whose head is out of view, size mismatch.

Thresholds asserted are SFace's own (0.363) with margins taken from what the models measure on
these photos (same face 0.87-1.0, different people <= 0.3; MODELS.md / README "Evaluation").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from refsd.evaluate import IdentityError, check_identity, gaussian_blur
from refsd.keypoints import load_pose_keypoint_file, parse_pose_keypoint
from refsd.pipeline import load_image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / ".cache" / "photos"


@pytest.fixture(scope="module")
def analyzer():
    from helpers import require_detect_models

    from refsd.detect import FaceAnalyzer

    return FaceAnalyzer(model_dirs=[require_detect_models()])


def _photo(name: str) -> torch.Tensor:
    path = ROOT / "samples" / name if name == "camera.png" else PHOTOS / name
    if not path.is_file():
        pytest.skip(f"{path} not fetched (make setup)")
    return load_image(path)


def _people(name: str, size):
    return parse_pose_keypoint(load_pose_keypoint_file(ROOT / "samples" / name), [size])[0].people


def test_same_face_flipped_and_brightened_leaks(analyzer):
    astro = _photo("astronaut.png")
    copy = (astro.flip(1) * 1.15 + 0.05).clamp(0, 1)
    r = check_identity(astro, copy, _people("astronaut.json", (512, 512)), analyzer=analyzer)
    assert len(r.faces) == 1 and r.faces[0].person == 0
    assert r.faces[0].leak and r.faces[0].similarity > 0.7 and not r.passed
    assert not r.faces[0].found_in_output  # the face moved (flipped): found elsewhere, still matched


def test_identical_output_leaks_with_similarity_one(analyzer):
    cam = _photo("camera.png")
    r = check_identity(cam, cam.clone(), analyzer=analyzer)
    assert len(r.faces) == 1 and r.faces[0].found_in_output
    assert r.faces[0].similarity == pytest.approx(1.0, abs=1e-4) and r.leaks == 1


def test_a_different_person_does_not_leak(analyzer):
    r = check_identity(_photo("astronaut.png"), _photo("camera.png"), analyzer=analyzer)
    assert len(r.faces) == 1 and r.passed
    assert r.faces[0].similarity < 0.363 - 0.05  # worst case over every blur level


@pytest.mark.parametrize("sigma", [4.0, 6.0])
def test_a_blurred_face_leaks(analyzer, sigma):
    astro = _photo("astronaut.png")
    blurred = gaussian_blur(astro, sigma)
    r = check_identity(astro, blurred, _people("astronaut.json", (512, 512)), analyzer=analyzer)
    (f,) = r.faces
    assert f.leak and not r.passed and f.similarity > 0.7 and f.blur > 0
    assert f.similarity > f.similarity_sharp + 0.3  # the blurred gallery finds what the sharp one barely sees
    if sigma == 6.0:
        assert f.similarity_sharp < 0.363  # plain SFace would call it another person


def test_gaussian_blur_matches_its_definition():
    img = torch.zeros(41, 41, 3)
    img[20, 20] = 1.0
    out = gaussian_blur(img, 2.0)
    x = torch.arange(-6, 7, dtype=torch.float32)
    k = torch.exp(-(x**2) / 8)
    k = k / k.sum()
    # float32 sums of 13 terms of magnitude <= 1: error ~ 13 * 2^-24 relative
    assert torch.allclose(out[14:27, 14:27, 0], torch.outer(k, k), atol=1e-6)
    assert float(out.sum()) == pytest.approx(3.0, abs=1e-5)
    assert gaussian_blur(img, 0) is img


def test_render_only_output_of_camera_passes(analyzer, anny_cache_dir):
    from refsd.pipeline import RefSDPipeline

    pipe = RefSDPipeline(identity_check=True, device="cpu", anny_cache_dir=anny_cache_dir)
    res = pipe(ROOT / "samples" / "camera.png", ROOT / "samples" / "camera.json", seed=0)
    assert res.identity is not None and res.identity.passed and res.privacy_passed
    (f,) = res.identity.faces
    assert f.person == 0 and (f.similarity is None or f.similarity < 0.363)
    again = check_identity(_photo("camera.png"), res.image, _people("camera.json", (512, 512)), analyzer=analyzer)
    assert again.to_dict() == res.identity.to_dict()


def test_no_face_and_bad_input(analyzer):
    tiny = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert check_identity(tiny, tiny, analyzer=analyzer).faces == []
    cam = _photo("camera.png")
    # a keypoint person whose head is out of view: listed as without a face, nothing to leak
    people = _people("camera.json", (512, 512))
    people[0].body[[0, 14, 15, 16, 17], :] = (np.nan, np.nan, 0.0)
    r = check_identity(cam, torch.zeros_like(cam), people, analyzer=analyzer)
    assert r.passed and all(not f.found_in_output for f in r.faces)
    with pytest.raises(IdentityError, match="differ in size"):
        check_identity(cam, cam[:100], analyzer=analyzer)
    gray = cam.mean(-1)  # (H, W): as a grayscale photo
    assert len(check_identity(gray, gray, analyzer=analyzer).faces) == 1

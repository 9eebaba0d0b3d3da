"""Fixtures for the pipeline / CLI / Ray tests (tests/ is on sys.path).

* ``tiny_models`` (session): random tiny SD1.5 + depth/OpenPose/Canny ControlNets written by
  :func:`refsd.testing.write_test_models` into a pytest temporary folder: a diffusers
  folder, ControlNet folders, and the same weights as single-file ``.safetensors``
  checkpoints with weight-free local config folders.
* ``small_scene`` (session): the sample photo at 160x160 and its keypoints (the JSON's
  512x512 canvas is rescaled by the keypoint parser).
* ``dataset`` (function): a folder with three small images and their keypoints
  (``a.png``, ``sub/b.jpg`` a crop with shifted keypoints, ``c.png`` a mirrored copy),
  plus ``notes.txt`` (not an image), ``broken.png`` (corrupt, with keypoints) and
  ``nokp.png`` (no keypoints).
* ``no_network``: any socket ``connect`` fails the test (a guard, not a component mock).
* ``anny_env``: ``ANNY_CACHE_DIR`` pointing at the session's Anny cache, so the command line
  and the library reuse the one model built for the session.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageOps

PACK_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PNG = PACK_ROOT / "samples" / "camera.png"
SAMPLE_JSON = PACK_ROOT / "samples" / "camera.json"
CROP = (64, 128)  # crop size of the tests (width, height)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    from refsd.testing import write_test_models

    return write_test_models(tmp_path_factory.mktemp("tiny-diffusers"))


@pytest.fixture(scope="session")
def small_scene() -> tuple[Image.Image, list]:
    im = Image.open(SAMPLE_PNG).convert("RGB").resize((160, 160), Image.LANCZOS)
    return im, json.loads(SAMPLE_JSON.read_text())


def write_dataset(folder: Path) -> Path:
    """The ``dataset`` fixture's files (see the module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    im = Image.open(SAMPLE_PNG).convert("RGB")
    kp = json.loads(SAMPLE_JSON.read_text())
    im.resize((160, 160), Image.LANCZOS).save(folder / "a.png")
    (folder / "a.json").write_text(json.dumps(kp))
    # a crop: keypoints shifted by the crop offset, canvas = the crop
    im.crop((0, 64, 448, 512)).resize((128, 128), Image.LANCZOS).save(folder / "sub" / "b.jpg", quality=95)
    kb = json.loads(json.dumps(kp))
    pts = kb[0]["people"][0]["pose_keypoints_2d"]
    for i in range(0, len(pts), 3):
        if pts[i + 2] > 0:
            pts[i + 1] -= 64
    kb[0]["canvas_width"] = kb[0]["canvas_height"] = 448
    (folder / "sub" / "b.json").write_text(json.dumps(kb))
    # a mirror image: x -> W - x (left/right joints keep their labels: the fit sees a back view)
    ImageOps.mirror(im).resize((144, 144), Image.LANCZOS).save(folder / "c.png")
    kc = json.loads(json.dumps(kp))
    pts = kc[0]["people"][0]["pose_keypoints_2d"]
    for i in range(0, len(pts), 3):
        if pts[i + 2] > 0:
            pts[i] = 512 - pts[i]
    (folder / "c.json").write_text(json.dumps(kc))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "broken.json").write_text(json.dumps(kp))
    im.resize((96, 96)).save(folder / "nokp.png")
    return folder


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "photos")


@pytest.fixture
def no_network(monkeypatch):
    attempts: list = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError(f"network access attempted in a test that must stay offline: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield attempts
    assert attempts == [], f"network connections were attempted: {attempts}"


@pytest.fixture
def anny_env(monkeypatch, anny_cache_dir) -> Path:
    monkeypatch.setenv("ANNY_CACHE_DIR", str(anny_cache_dir))
    return anny_cache_dir

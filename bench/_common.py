"""Shared by the benchmark scripts (run as ``python bench/<name>.py``, so this folder is on the path):
the real photos and the timing loop."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

#: the real photos of people: samples/camera.png (committed) and the two fetched at set-up
PHOTOS = ("camera.png", "astronaut.png", "bus.jpg")


def photo(name: str) -> np.ndarray:
    """One of :data:`PHOTOS` as an (H, W, 3) uint8 array (astronaut / bus from scripts/fetch_photos.py's cache)."""
    if name == "camera.png":
        return np.array(Image.open(ROOT / "samples" / name).convert("RGB"))
    import fetch_photos

    return np.array(Image.open(fetch_photos.photo_path(name)).convert("RGB"))


def timeit(fn, repeats: int, sync=lambda: None) -> float:
    """Milliseconds of the fastest of ``repeats`` calls of ``fn`` after one warm-up call (``sync``
    waits for the device after each call)."""
    fn()  # warm-up
    sync()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best * 1e3

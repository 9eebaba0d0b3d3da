"""Fixtures for the body model tests (imported by test_body*.py; tests/ is on sys.path).

* ``anny_cache_dir`` (session): ``$REFSD_CACHE_DIR/anny`` when REFSD_CACHE_DIR is set (the
  Makefile sets it, so the ~1-2 minute Anny cache build happens once and persists between
  runs), else a pytest temporary folder (built once per session).
* ``anny_model`` (session): the Anny backend, float32, CPU. Records the cache build (if this
  session had to do it) in ``ANNY_BUILD``.
* ``smplx_dir`` (session): a temporary folder with synthetic SMPLX_NEUTRAL.npz / SMPLX_MALE.npz.
* ``smplx_model`` (session): the SMPL-X backend on the synthetic neutral file.
* ``body``: both backends in turn (parametrized).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from refsd.body import get_body_model
from refsd.body.anny_cache import anny_cache_file
from refsd.testing import write_synthetic_smplx

#: What the session's Anny construction did: built (bool), seconds, progress calls, listing.
ANNY_BUILD: dict = {}


@pytest.fixture(scope="session")
def anny_cache_dir(tmp_path_factory) -> Path:
    root = os.environ.get("REFSD_CACHE_DIR")
    if root:
        path = Path(root) / "anny"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("anny-cache")


@pytest.fixture(scope="session")
def anny_model(anny_cache_dir):
    calls: list[tuple[float, str]] = []
    built = not anny_cache_file(anny_cache_dir).is_file()
    start = time.monotonic()
    model = get_body_model("anny", cache_dir=anny_cache_dir, progress=lambda f, m: calls.append((f, m)))
    ANNY_BUILD.update(
        built=built,
        seconds=time.monotonic() - start,
        progress=calls,
        listing=sorted(p.name for p in anny_cache_dir.iterdir()),
    )
    return model


@pytest.fixture(scope="session")
def smplx_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("smplx-models")
    write_synthetic_smplx(folder, "neutral", seed=0)
    write_synthetic_smplx(folder, "male", seed=0)
    return folder


@pytest.fixture(scope="session")
def smplx_model(smplx_dir):
    return get_body_model("smplx", model_dir=smplx_dir)


@pytest.fixture(params=["anny", "smplx"])
def body(request):
    return request.getfixturevalue(f"{request.param}_model")


def random_params(model, batch: int, scale: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random (but human) parameters for ``model``."""
    g = torch.Generator().manual_seed(seed)
    p = model.zero_params(batch)
    out = {}
    for k, v in p.items():
        noise = torch.randn(v.shape, generator=g, dtype=torch.float64).to(v)
        if k == "shape":
            lo, hi = model.shape_bounds()
            out[k] = (v + 0.1 * noise).clamp(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo))
        else:
            out[k] = v + scale * noise
    return out

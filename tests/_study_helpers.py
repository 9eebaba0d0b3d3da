"""A real run to build test studies from (imported by test_study*.py; tests/ is on sys.path).

:func:`pseudonymized_run` runs ``refsd pseudonymize --refiner none --save-extras`` (render-only,
real fit, real removal) over ``camera.png`` (1 person, hand-annotated keypoints) and ``bus.jpg``
(2 people) once into ``$REFSD_CACHE_DIR/test-study/`` and reuses it afterwards, like the random
test models: the run is made in a private folder and renamed into place, so concurrent test
sessions never see half a run. :func:`copy_run` gives a test its own copy to damage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
BASE = CACHE / "test-study"
PHOTOS = {
    "camera.png": ROOT / "samples" / "camera.png",
    "camera.json": ROOT / "samples" / "camera.json",
    "bus.jpg": CACHE / "photos" / "bus.jpg",
    "bus.json": ROOT / "samples" / "bus.json",
}


def env() -> dict[str, str]:
    """The environment for ``refsd`` subprocesses (the cache with the detector's files and Anny)."""
    return dict(os.environ, REFSD_CACHE_DIR=str(CACHE))


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:  # another session published first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)


def pseudonymized_run() -> tuple[Path, Path]:
    """``(photos folder, run output folder)``; made on first use (about a minute), then reused."""
    photos, run = BASE / "photos", BASE / "run"
    if (run / "manifest.jsonl").is_file():
        return photos, run
    missing = [str(p) for p in PHOTOS.values() if not p.is_file()]
    if missing:
        pytest.skip(f"test photos missing ({', '.join(missing)}): run `make setup` (scripts/fetch_photos.py)")
    BASE.mkdir(parents=True, exist_ok=True)
    if not photos.is_dir():
        tmp = BASE / f"photos.{os.getpid()}.tmp"
        tmp.mkdir(exist_ok=True)
        for name, src in PHOTOS.items():
            shutil.copy(src, tmp / name)
        _publish(tmp, photos)
    tmp = BASE / f"run.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-m", "refsd.cli", "pseudonymize", str(photos), "-o", str(tmp), "--refiner", "none",
         "--save-extras", "--people", "file", "--no-progress", "--seed", "3"],
        env=env(), capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    _publish(tmp, run)
    return photos, run


def copy_run(dest: Path, source: bool | None = None) -> Path:
    """A copy of the run's output folder in ``dest``; ``source``: True writes each record's absolute
    ``source`` path (what newer runs record), False removes it, None keeps the manifest as made."""
    photos, run = pseudonymized_run()
    shutil.copytree(run, dest)
    if source is not None:
        lines = []
        for line in (dest / "manifest.jsonl").read_text().splitlines():
            rec = json.loads(line)
            rec.pop("source", None)
            if source:
                rec["source"] = str(photos / rec["image"])
            lines.append(json.dumps(rec))
        (dest / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]

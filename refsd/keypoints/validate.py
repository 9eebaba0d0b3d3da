"""Input validation: the ``POSE_KEYPOINT`` structure, keypoint files and caller arguments.

``POSE_KEYPOINT`` (as produced by comfyui_controlnet_aux's DWPose/OpenPose nodes and
ComfyUI core's SDPose node) is a list with one dict per frame::

    [{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...],   # OpenPose-18
                  "face_keypoints_2d": [...],          # optional, 70 points
                  "hand_left_keypoints_2d": [...],     # optional, 21 points
                  "hand_right_keypoints_2d": [...],    # optional, 21 points
                  "foot_keypoints_2d": [...]},         # optional (SDPose), 6 points
                 ...],
      "canvas_width": 512, "canvas_height": 768}, ...]

A single frame dict (not wrapped in a list) is accepted and wrapped.
:func:`validate_pose_keypoint` checks that structure, :func:`load_pose_keypoint_file` reads
and checks a JSON file of it. The private ``_check_*`` helpers (and the ``Coords`` /
``HandOrder`` / ``Size`` argument types) check the options of the parsing and writing
functions in :mod:`refsd.keypoints.parse` and :mod:`refsd.keypoints.frames`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import KeypointError
from .formats import KEYPOINT_FORMATS

__all__ = [
    "KEYPOINT_ARRAYS",
    "validate_pose_keypoint",
    "load_pose_keypoint_file",
    "count_people",
]

# Flat x,y,c arrays a person dict may carry, with the point counts we accept for each.
KEYPOINT_ARRAYS: dict[str, tuple[int, ...]] = {
    "pose_keypoints_2d": (18, 25, 17, 133),
    "face_keypoints_2d": (70, 68),
    "hand_left_keypoints_2d": (21,),
    "hand_right_keypoints_2d": (21,),
    "foot_keypoints_2d": (6,),
}

# Types of the parsing / writing options checked below.
Coords = Literal["auto", "pixels", "normalized"]
HandOrder = Literal["left_first", "right_first"]
Size = tuple[int, int]

_FORMAT_HINT = (
    "Expected POSE_KEYPOINT JSON: a list of frames, each "
    '{"people": [{"pose_keypoints_2d": [x, y, confidence, ...]}], "canvas_width": W, "canvas_height": H}, '
    "as written by DWPose/OpenPose nodes (comfyui_controlnet_aux) or ComfyUI's SDPose node."
)


def _fail(where: str, problem: str) -> KeypointError:
    return KeypointError(f"{where}: {problem}. {_FORMAT_HINT}")


def _check_array(where: str, key: str, arr: Any) -> None:
    if arr is None:
        return
    if not isinstance(arr, list):
        raise _fail(where, f"'{key}' must be a flat list of numbers, got {type(arr).__name__}")
    if len(arr) == 0:
        return  # detectors write [] for a missing face or hand
    if len(arr) % 3 != 0:
        raise _fail(where, f"'{key}' has {len(arr)} numbers; it must hold x, y, confidence triples (a multiple of 3)")
    n = len(arr) // 3
    allowed = KEYPOINT_ARRAYS[key]
    if n not in allowed:
        raise _fail(where, f"'{key}' has {n} points; supported counts are {', '.join(map(str, allowed))}")
    for i, v in enumerate(arr):
        if v is None:
            continue  # some writers use null for a missing point; treated as not detected
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _fail(where, f"'{key}'[{i}] is {v!r}; keypoint values must be numbers")
        if isinstance(v, float) and math.isinf(v):
            raise _fail(where, f"'{key}'[{i}] is infinite")


def validate_pose_keypoint(data: Any, source: str = "POSE_KEYPOINT") -> list[dict]:
    """Check ``data`` is POSE_KEYPOINT and return it as a list of frame dicts.

    NaN values are allowed here (they mark missing points and are ignored by the
    fitter); structural problems raise :class:`KeypointError` naming the frame,
    person and key at fault.
    """
    if data is None:
        raise KeypointError(
            f"{source}: no keypoints (None). Connect the POSE_KEYPOINT output of a pose detector "
            "(DWPose/OpenPose/SDPose) or of RefSD Load Pose Keypoints."
        )
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, tuple):
        data = list(data)
    if not isinstance(data, list):
        raise _fail(source, f"top level is {type(data).__name__}, not a list of frames")
    if len(data) == 0:
        raise KeypointError(
            f"{source}: empty POSE_KEYPOINT (no frames). The pose detector produced nothing: check that it "
            "ran on an image and that its POSE_KEYPOINT output is the one connected, or load a keypoint file."
        )
    for fi, frame in enumerate(data):
        where = f"{source} frame {fi}"
        if not isinstance(frame, dict):
            raise _fail(where, f"frame is {type(frame).__name__}, not a dict")
        if "people" not in frame:
            raise _fail(where, "missing the 'people' list")
        people = frame["people"]
        if not isinstance(people, list):
            raise _fail(where, f"'people' is {type(people).__name__}, not a list")
        for key in ("canvas_width", "canvas_height"):
            if key in frame and frame[key] is not None:
                v = frame[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise _fail(where, f"'{key}' is {v!r}; it must be a positive number of pixels")
        for pi, person in enumerate(people):
            pwhere = f"{where} person {pi}"
            if not isinstance(person, dict):
                raise _fail(pwhere, f"person is {type(person).__name__}, not a dict")
            if not any(person.get(k) for k in KEYPOINT_ARRAYS):
                raise _fail(pwhere, "no keypoint arrays (expected at least 'pose_keypoints_2d')")
            for key in KEYPOINT_ARRAYS:
                _check_array(pwhere, key, person.get(key))
    return data


def load_pose_keypoint_file(path: str | Path) -> list[dict]:
    """Read and validate a POSE_KEYPOINT JSON file.

    Raises :class:`KeypointError` for a missing file, invalid JSON (with line and
    column) or a structure that is not POSE_KEYPOINT.
    """
    p = Path(path)
    if not p.is_file():
        raise KeypointError(f"keypoint file not found: {p}. Put the JSON file in ComfyUI's input folder (or upload it).")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KeypointError(f"{p.name}: not a UTF-8 text file ({e}). Save the keypoints as JSON text.") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeypointError(
            f"{p.name}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}. Fix the file or re-export it."
        ) from e
    return validate_pose_keypoint(data, source=p.name)


def count_people(frames: list[dict]) -> list[int]:
    """Number of people in each frame."""
    return [len(f.get("people") or []) for f in frames]


# ---------------------------------------------------------------------------
# Argument checks (for refsd.keypoints.parse / refsd.keypoints.frames)
# ---------------------------------------------------------------------------


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise KeypointError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, choices))}.")
    return value


def _check_format(fmt: str) -> str:
    return _check_choice("fmt", fmt, tuple(KEYPOINT_FORMATS))


def _check_size(size: Any, what: str) -> Size:
    try:
        w, h = (float(v) for v in size)
    except (TypeError, ValueError):
        raise KeypointError(f"{what} is {size!r}; give it as (width, height) in pixels.") from None
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise KeypointError(f"{what} is {size!r}; width and height must be positive numbers of pixels.")
    return int(round(w)), int(round(h))


def _is_size_pair(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.shape == (2,)
    return (
        isinstance(x, (tuple, list))
        and len(x) == 2
        and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in x)
    )


def _check_common(coords: str, hand_order: str, min_confidence: float, min_joints: int) -> None:
    _check_choice("coords", coords, ("auto", "pixels", "normalized"))
    _check_choice("hand_order", hand_order, ("left_first", "right_first"))
    if not (isinstance(min_confidence, (int, float)) and 0.0 <= min_confidence <= 1.0):
        raise KeypointError(f"min_confidence={min_confidence!r}; use a number from 0 to 1 (0.3 matches DWPose).")
    if not (isinstance(min_joints, int) and 0 <= min_joints <= 18):
        raise KeypointError(f"min_joints={min_joints!r}; use a whole number from 0 to 18 (default 4).")

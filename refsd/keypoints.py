"""2D keypoints: ComfyUI's ``POSE_KEYPOINT`` format, validation and file loading.

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

On top of validation, :func:`parse_pose_keypoint` turns POSE_KEYPOINT into
:class:`FrameKeypoints` / :class:`PersonKeypoints` (numpy ``(K, 3)`` x, y, confidence arrays
in pixels of the target image), and :func:`to_pose_keypoint` writes them back. The module
also defines the keypoint formats (OpenPose COCO-18, BODY_25, COCO-17, COCO-WholeBody-133,
the 6 foot points, 70-point face, 21-point hands) and converts between them.

Conventions:

* Missing or low-confidence points are ``x = y = NaN, confidence = 0`` -- never a real
  point at (0, 0). :func:`present_mask` tells which points are present.
* R/L in joint names are the subject's anatomical sides.
* ``hand_order="left_first"`` (default, comfyui_controlnet_aux) reads
  ``hand_left_keypoints_2d`` as the left hand; ``"right_first"`` (ComfyUI's SDPose node)
  swaps the two hand arrays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import KeypointError

__all__ = [
    "KeypointError",
    "KEYPOINT_ARRAYS",
    "KEYPOINT_FORMATS",
    "COCO18_NAMES",
    "BODY25_NAMES",
    "COCO17_NAMES",
    "FOOT6_NAMES",
    "WHOLEBODY133_PARTS",
    "COCO17_TO_COCO18",
    "COCO18_TO_COCO17",
    "BODY25_TO_COCO18",
    "COCO18_TO_BODY25",
    "NORMALIZED_COORD_LIMIT",
    "NORMALIZED_MIN_CANVAS",
    "PersonKeypoints",
    "FrameKeypoints",
    "validate_pose_keypoint",
    "load_pose_keypoint_file",
    "count_people",
    "parse_pose_keypoint",
    "image_sizes_from_batch",
    "from_array",
    "to_array",
    "to_pose_keypoint",
    "missing_points",
    "present_mask",
    "coco17_to_coco18",
    "coco18_to_coco17",
    "body25_to_coco18",
    "coco18_to_body25",
    "face68_to_face70",
    "wholebody133_to_parts",
    "parts_to_wholebody133",
]

# Flat x,y,c arrays a person dict may carry, with the point counts we accept for each.
KEYPOINT_ARRAYS: dict[str, tuple[int, ...]] = {
    "pose_keypoints_2d": (18, 25, 17, 133),
    "face_keypoints_2d": (70, 68),
    "hand_left_keypoints_2d": (21,),
    "hand_right_keypoints_2d": (21,),
    "foot_keypoints_2d": (6,),
}

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
# Keypoint formats
# ---------------------------------------------------------------------------

#: OpenPose COCO-18 body order (what ``pose_keypoints_2d`` holds in comfyui_controlnet_aux
#: and SDPose output). R/L are the subject's anatomical sides.
COCO18_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip

#: OpenPose BODY_25 order.
BODY25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip

#: MS-COCO 17 body order (also the first 17 points of COCO-WholeBody-133).
COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

#: The 6 foot points of COCO-WholeBody (indices 17..22), SDPose's ``foot_keypoints_2d`` and
#: BODY_25's points 19..24 -- the same order in all three.
FOOT6_NAMES: tuple[str, ...] = (
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

#: Index ranges ``[start, stop)`` of the parts of a COCO-WholeBody-133 array.
WHOLEBODY133_PARTS: dict[str, tuple[int, int]] = {
    "body": (0, 17),
    "foot": (17, 23),
    "face": (23, 91),
    "hand_left": (91, 112),
    "hand_right": (112, 133),
}

#: Number of points per whole-array format accepted by :func:`from_array` / :func:`to_array`.
KEYPOINT_FORMATS: dict[str, int] = {"coco18": 18, "body25": 25, "coco17": 17, "wholebody133": 133}

#: For each COCO-18 index, the COCO-17 index it comes from (-1: Neck, derived from the shoulders).
COCO17_TO_COCO18: tuple[int, ...] = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
#: For each COCO-17 index, the COCO-18 index it comes from.
COCO18_TO_COCO17: tuple[int, ...] = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
#: For each COCO-18 index, the BODY_25 index it comes from.
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
#: For each BODY_25 index 0..18, the COCO-18 index it comes from (-1: MidHip, the mean of the hips).
#: BODY_25 points 19..24 are the 6 foot points in :data:`FOOT6_NAMES` order.
COCO18_TO_BODY25: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, -1, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)

_C18 = {n: i for i, n in enumerate(COCO18_NAMES)}

#: A coordinate value this large or smaller (over all confident points of a frame) means
#: ``coords="auto"`` reads the frame as normalized 0..1 (see :func:`parse_pose_keypoint`).
NORMALIZED_COORD_LIMIT = 1.5
#: ... provided the reference canvas (or image) is larger than this many pixels on both sides.
NORMALIZED_MIN_CANVAS = 8

Coords = Literal["auto", "pixels", "normalized"]
HandOrder = Literal["left_first", "right_first"]
Size = tuple[int, int]


# ---------------------------------------------------------------------------
# Array helpers and converters between formats
# ---------------------------------------------------------------------------


def missing_points(n: int) -> np.ndarray:
    """An ``(n, 3)`` array of missing points: x, y = NaN, confidence 0."""
    out = np.zeros((n, 3), dtype=np.float64)
    out[:, :2] = np.nan
    return out


def present_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask over ``points[..., :, :]``: confidence > 0 and finite x, y."""
    p = np.asarray(points, dtype=np.float64)
    return (p[..., 2] > 0) & np.isfinite(p[..., 0]) & np.isfinite(p[..., 1])


def _as_points(arr: Any, k: int | None = None, name: str = "array") -> np.ndarray:
    """(..., K, 2|3) -> float64 (..., K, 3); a missing confidence column becomes 1 for finite points."""
    a = np.array(arr, dtype=np.float64, copy=True)
    if a.ndim < 2 or a.shape[-1] not in (2, 3):
        raise KeypointError(
            f"{name}: shape {a.shape} is not (..., K, 3) x, y, confidence (or (..., K, 2) x, y). "
            "Reshape the keypoints to one row per point."
        )
    if k is not None and a.shape[-2] != k:
        raise KeypointError(f"{name}: {a.shape[-2]} points, expected {k}. Pass an array of the named format.")
    if a.shape[-1] == 2:
        conf = np.where(np.isfinite(a).all(axis=-1), 1.0, 0.0)[..., None]
        a = np.concatenate([a, conf], axis=-1)
    return a


def _mark_missing(a: np.ndarray) -> np.ndarray:
    """Normalize the missing-point representation in place: x, y = NaN and confidence 0."""
    bad = ~present_mask(a)
    a[bad, 0:2] = np.nan
    a[bad, 2] = 0.0
    return a


def _midpoint(a: np.ndarray, i: int, j: int) -> np.ndarray:
    """Mean of points i and j where both are present (confidence = the smaller one), else missing."""
    both = present_mask(a[..., i, :]) & present_mask(a[..., j, :])
    out = np.empty(a.shape[:-2] + (3,), dtype=np.float64)
    out[..., :2] = (a[..., i, :2] + a[..., j, :2]) / 2.0
    out[..., 2] = np.minimum(a[..., i, 2], a[..., j, 2])
    out[~both, :2] = np.nan
    out[~both, 2] = 0.0
    return out


def _gather(a: np.ndarray, index: Sequence[int]) -> np.ndarray:
    """Pick points by index (-1 -> missing point) along axis -2."""
    idx = np.asarray(index)
    out = a[..., np.where(idx < 0, 0, idx), :].copy()
    out[..., idx < 0, 0:2] = np.nan
    out[..., idx < 0, 2] = 0.0
    return out


def coco17_to_coco18(arr: Any) -> np.ndarray:
    """COCO-17 ``(..., 17, 3)`` -> OpenPose COCO-18 ``(..., 18, 3)``.

    The Neck is the mean of the two shoulders when both are present (confidence = the
    smaller shoulder confidence), else missing -- as DWPose derives it.
    """
    a = _mark_missing(_as_points(arr, 17, "COCO-17 array"))
    out = _gather(a, COCO17_TO_COCO18)
    out[..., 1, :] = _midpoint(a, 5, 6)
    return out


def coco18_to_coco17(arr: Any) -> np.ndarray:
    """OpenPose COCO-18 ``(..., 18, 3)`` -> COCO-17 ``(..., 17, 3)`` (the Neck is dropped)."""
    a = _mark_missing(_as_points(arr, 18, "COCO-18 array"))
    return _gather(a, COCO18_TO_COCO17)


def body25_to_coco18(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """BODY_25 ``(..., 25, 3)`` -> ``(body (..., 18, 3) COCO-18, foot (..., 6, 3))``.

    MidHip is dropped; the foot points 19..24 keep their order (:data:`FOOT6_NAMES`).
    """
    a = _mark_missing(_as_points(arr, 25, "BODY_25 array"))
    return _gather(a, BODY25_TO_COCO18), a[..., 19:25, :].copy()


def coco18_to_body25(body: Any, foot: Any | None = None) -> np.ndarray:
    """COCO-18 ``(..., 18, 3)`` (+ optional foot ``(..., 6, 3)``) -> BODY_25 ``(..., 25, 3)``.

    MidHip is the mean of RHip and LHip when both are present, else missing; the feet
    (19..24) come from ``foot`` or are missing.
    """
    b = _mark_missing(_as_points(body, 18, "COCO-18 array"))
    head = _gather(b, COCO18_TO_BODY25)
    head[..., 8, :] = _midpoint(b, _C18["RHip"], _C18["LHip"])
    if foot is None:
        feet = np.broadcast_to(missing_points(6), b.shape[:-2] + (6, 3)).copy()
    else:
        feet = _mark_missing(_as_points(foot, 6, "foot array"))
    return np.concatenate([head, feet], axis=-2)


def face68_to_face70(face: Any, body: Any | None = None) -> np.ndarray:
    """68 face landmarks -> OpenPose's 70 (68 + right pupil + left pupil).

    The pupils are taken from the COCO-18 body's REye / LEye when ``body`` is given (what
    DWPose in comfyui_controlnet_aux and SDPose write there), else they are missing.
    """
    f = _mark_missing(_as_points(face, 68, "face array"))
    if body is None:
        eyes = np.broadcast_to(missing_points(2), f.shape[:-2] + (2, 3)).copy()
    else:
        b = _mark_missing(_as_points(body, 18, "COCO-18 array"))
        eyes = b[..., [_C18["REye"], _C18["LEye"]], :]
    return np.concatenate([f, eyes], axis=-2)


def wholebody133_to_parts(arr: Any) -> dict[str, np.ndarray]:
    """COCO-WholeBody-133 ``(..., 133, 3)`` -> its parts.

    Returns ``{"body": COCO-18 (..., 18, 3) (Neck derived from the shoulders), "coco17":
    (..., 17, 3), "foot": (..., 6, 3), "face": (..., 70, 3) (68 + pupils from the body eyes),
    "hand_left": (..., 21, 3), "hand_right": (..., 21, 3)}``. In WholeBody the left hand
    (91..111) comes first; that order is the standard and is not affected by ``hand_order``.
    """
    a = _mark_missing(_as_points(arr, 133, "COCO-WholeBody-133 array"))
    parts = {name: a[..., s:e, :].copy() for name, (s, e) in WHOLEBODY133_PARTS.items()}
    body = coco17_to_coco18(parts["body"])
    return {
        "body": body,
        "coco17": parts["body"],
        "foot": parts["foot"],
        "face": face68_to_face70(parts["face"], body),
        "hand_left": parts["hand_left"],
        "hand_right": parts["hand_right"],
    }


def parts_to_wholebody133(
    body: Any,
    foot: Any | None = None,
    face: Any | None = None,
    hand_left: Any | None = None,
    hand_right: Any | None = None,
) -> np.ndarray:
    """COCO-18 body + optional foot (6), face (70 or 68; pupils dropped), hands (21) -> ``(..., 133, 3)``."""
    b = coco18_to_coco17(body)
    lead = b.shape[:-2]

    def part(x: Any, k: int, name: str) -> np.ndarray:
        if x is None:
            return np.broadcast_to(missing_points(k), lead + (k, 3)).copy()
        p = _mark_missing(_as_points(x, None, name))
        if k == 68 and p.shape[-2] == 70:
            p = p[..., :68, :]
        if p.shape[-2] != k:
            raise KeypointError(f"{name}: {p.shape[-2]} points, expected {k}. Pass the part in its own format.")
        return p

    return np.concatenate(
        [
            b,
            part(foot, 6, "foot array"),
            part(face, 68, "face array"),
            part(hand_left, 21, "left hand array"),
            part(hand_right, 21, "right hand array"),
        ],
        axis=-2,
    )


# ---------------------------------------------------------------------------
# Parsed keypoints
# ---------------------------------------------------------------------------


@dataclass
class PersonKeypoints:
    """One person's 2D keypoints in **pixels of the target image**.

    Every array is ``(K, 3)`` float64 ``x, y, confidence``. A missing or low-confidence
    point (below the parser's ``min_confidence``) is ``x = y = NaN, confidence = 0`` -- never
    a point at (0, 0) -- so a fitter that weights by confidence (or masks with
    :func:`present_mask`) ignores it.

    Attributes:
        body: ``(18, 3)`` OpenPose COCO-18 (see :data:`COCO18_NAMES`).
        foot: ``(6, 3)`` in :data:`FOOT6_NAMES` order, or None when the source had no feet.
        hand_left: ``(21, 3)`` the subject's left hand (OpenPose hand order), or None.
        hand_right: ``(21, 3)`` the subject's right hand, or None.
        face: ``(70, 3)`` 68 landmarks + right pupil + left pupil, or None.
        index: the person's index in its source frame's ``people`` list.
    """

    body: np.ndarray
    foot: np.ndarray | None = None
    hand_left: np.ndarray | None = None
    hand_right: np.ndarray | None = None
    face: np.ndarray | None = None
    index: int = 0

    def __post_init__(self) -> None:
        self.body = _mark_missing(_as_points(self.body, 18, "body"))
        for name, k in (("foot", 6), ("hand_left", 21), ("hand_right", 21), ("face", 70)):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _mark_missing(_as_points(v, k, name)))

    @property
    def body25(self) -> np.ndarray:
        """``(25, 3)`` BODY_25: MidHip = mean of the hips when both exist; feet from :attr:`foot`."""
        return coco18_to_body25(self.body, self.foot)

    @property
    def coco17(self) -> np.ndarray:
        """``(17, 3)`` COCO-17 body."""
        return coco18_to_coco17(self.body)

    @property
    def wholebody133(self) -> np.ndarray:
        """``(133, 3)`` COCO-WholeBody (missing parts as missing points; face pupils dropped)."""
        return parts_to_wholebody133(self.body, self.foot, self.face, self.hand_left, self.hand_right)

    def as_format(self, fmt: str) -> np.ndarray:
        """The person as a ``(K, 3)`` array of ``fmt`` (one of :data:`KEYPOINT_FORMATS`)."""
        fmt = _check_format(fmt)
        if fmt == "coco18":
            return self.body.copy()
        return getattr(self, fmt)

    def parts(self) -> dict[str, np.ndarray]:
        """The arrays that are not None, by name (body, foot, hand_left, hand_right, face)."""
        out = {"body": self.body}
        for name in ("foot", "hand_left", "hand_right", "face"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    def num_confident(self, threshold: float = 0.0) -> int:
        """Number of body (COCO-18) joints present with confidence >= ``threshold``."""
        m = present_mask(self.body) & (self.body[:, 2] >= threshold)
        return int(m.sum())

    def bbox(self, include_parts: bool = True) -> tuple[float, float, float, float] | None:
        """``(x0, y0, x1, y1)`` around the present points (body, plus feet, hands and face
        when ``include_parts``), or None if no point is present."""
        arrays = list(self.parts().values()) if include_parts else [self.body]
        pts = np.concatenate([a[present_mask(a), :2] for a in arrays], axis=0)
        if len(pts) == 0:
            return None
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def scaled(self, sx: float, sy: float) -> PersonKeypoints:
        """A copy with x multiplied by ``sx`` and y by ``sy`` (missing points stay missing)."""

        def sc(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            b = a.copy()
            b[:, 0] *= sx
            b[:, 1] *= sy
            return b

        return PersonKeypoints(
            body=sc(self.body),  # type: ignore[arg-type]
            foot=sc(self.foot),
            hand_left=sc(self.hand_left),
            hand_right=sc(self.hand_right),
            face=sc(self.face),
            index=self.index,
        )


@dataclass
class FrameKeypoints:
    """The people of one image.

    Attributes:
        people: the kept people (each with >= ``min_joints`` confident body joints).
        canvas: ``(W, H)`` of the keypoints' source canvas (``canvas_width``/``canvas_height``;
            the image size when the source had none).
        image_size: ``(W, H)`` of the target image; every coordinate is in its pixels.
        skipped: ``(person index in the source frame, reason)`` for each dropped person.
        warnings: human-readable notes (skipped people, no people, rescaling, broadcast, ...).
        coords: how the source coordinates were read: "pixels" or "normalized".
        frame_index: index of the POSE_KEYPOINT frame these keypoints came from.
    """

    people: list[PersonKeypoints] = field(default_factory=list)
    canvas: Size = (0, 0)
    image_size: Size = (0, 0)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    coords: str = "pixels"
    frame_index: int = 0

    @property
    def num_people(self) -> int:
        return len(self.people)


# ---------------------------------------------------------------------------
# Parsing
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


def image_sizes_from_batch(images: Any) -> list[Size]:
    """``(W, H)`` per image of a ComfyUI IMAGE batch (anything with ``.shape`` ``(B, H, W, C)``)."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4:
        raise KeypointError(
            f"expected an IMAGE batch of shape (batch, height, width, channels), got shape {shape}. "
            "Connect an IMAGE output (e.g. Load Image)."
        )
    return [(int(shape[2]), int(shape[1]))] * int(shape[0])


class _RawPerson:
    """One person's parts in source units (before scaling), cleaned of missing points."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.parts: dict[str, np.ndarray] = {}
        self.negative = 0  # confident points dropped for negative coordinates


def _clean(points: np.ndarray, min_confidence: float, raw: _RawPerson) -> np.ndarray:
    """Mark missing: conf <= 0 or < min_confidence, NaN coords, exactly (0, 0), negative coords."""
    a = points
    conf_ok = (a[:, 2] > 0) & (a[:, 2] >= min_confidence)
    finite = np.isfinite(a[:, 0]) & np.isfinite(a[:, 1])
    with np.errstate(invalid="ignore"):
        negative = finite & ((a[:, 0] < 0) | (a[:, 1] < 0))
        at_origin = finite & (a[:, 0] == 0) & (a[:, 1] == 0)
    raw.negative += int((conf_ok & negative).sum())
    keep = conf_ok & finite & ~negative & ~at_origin
    a[~keep, 0:2] = np.nan
    a[~keep, 2] = 0.0
    return a


def _flat(values: Any) -> np.ndarray:
    """Flat x,y,c list (None entries = missing) -> (K, 3)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64).reshape(-1, 3)


def _raw_from_dict(person: dict, index: int, hand_order: str, min_confidence: float) -> _RawPerson:
    raw = _RawPerson(index)

    def get(key: str) -> np.ndarray | None:
        v = person.get(key)
        if not v:
            return None
        return _clean(_flat(v), min_confidence, raw)

    pose = get("pose_keypoints_2d")
    foot = get("foot_keypoints_2d")
    face = get("face_keypoints_2d")
    first, second = get("hand_left_keypoints_2d"), get("hand_right_keypoints_2d")
    hand_left, hand_right = (first, second) if hand_order == "left_first" else (second, first)
    if pose is None:
        body = missing_points(18)
    elif len(pose) == 18:
        body = pose
    elif len(pose) == 25:
        body, pose_foot = body25_to_coco18(pose)
        foot = foot if foot is not None else pose_foot
    elif len(pose) == 17:
        body = coco17_to_coco18(pose)
    else:  # 133: a whole COCO-WholeBody array in pose_keypoints_2d
        wb = wholebody133_to_parts(pose)
        body = wb["body"]
        foot = foot if foot is not None else wb["foot"]
        face = face if face is not None else wb["face"]
        hand_left = hand_left if hand_left is not None else wb["hand_left"]
        hand_right = hand_right if hand_right is not None else wb["hand_right"]
    if face is not None and len(face) == 68:
        face = face68_to_face70(face, body)
    raw.parts["body"] = body
    for name, v in (("foot", foot), ("hand_left", hand_left), ("hand_right", hand_right), ("face", face)):
        if v is not None:
            raw.parts[name] = v
    return raw


def _max_coord(raws: list[_RawPerson]) -> float | None:
    vals = [np.abs(a[present_mask(a), :2]).max() for r in raws for a in r.parts.values() if present_mask(a).any()]
    return float(max(vals)) if vals else None


def _hand_order_hint(p: PersonKeypoints) -> bool:
    """True when the hands sit clearly closer to the opposite body wrists (order looks swapped)."""
    if p.hand_left is None or p.hand_right is None:
        return False
    lw, rw = p.body[_C18["LWrist"]], p.body[_C18["RWrist"]]
    hl, hr = p.hand_left[0], p.hand_right[0]
    if not (present_mask(np.stack([lw, rw, hl, hr]))).all():
        return False
    straight = np.hypot(*(hl[:2] - lw[:2])) + np.hypot(*(hr[:2] - rw[:2]))
    crossed = np.hypot(*(hl[:2] - rw[:2])) + np.hypot(*(hr[:2] - lw[:2]))
    return bool(crossed < 0.5 * straight)


def _build_frame(
    raws: list[_RawPerson],
    *,
    where: str,
    canvas: Size | None,
    image_size: Size | None,
    coords: str,
    min_joints: int,
    hand_order: str,
    frame_index: int,
) -> FrameKeypoints:
    warnings: list[str] = []
    if canvas is None and image_size is None:
        raise KeypointError(
            f"{where}: no canvas_width/canvas_height and no image size, so the keypoints cannot be placed. "
            "Pass the image sizes (image_sizes=...) or add canvas_width/canvas_height to the frame."
        )
    ref = canvas if canvas is not None else image_size
    target = image_size if image_size is not None else ref
    assert ref is not None and target is not None
    top = _max_coord(raws)
    if coords == "auto":
        normalized = top is not None and top <= NORMALIZED_COORD_LIMIT and min(ref) > NORMALIZED_MIN_CANVAS
        mode = "normalized" if normalized else "pixels"
    else:
        mode = coords
        if mode == "normalized" and top is not None and top > NORMALIZED_COORD_LIMIT:
            raise KeypointError(
                f"{where}: coords='normalized' but coordinates go up to {top:g}, which are pixels, not 0..1 "
                "fractions of the canvas. Use coords='auto' or coords='pixels'."
            )
        if mode == "pixels" and top is not None and top <= NORMALIZED_COORD_LIMIT and min(ref) > NORMALIZED_MIN_CANVAS:
            warnings.append(
                f"{where}: coords='pixels' but every coordinate is <= {top:g} on a {ref[0]}x{ref[1]} canvas; "
                "these look like normalized 0..1 values. Use coords='auto' or 'normalized' if the people come "
                "out squeezed into the top-left corner."
            )
    if mode == "normalized":
        sx, sy = float(target[0]), float(target[1])
    else:
        sx, sy = target[0] / ref[0], target[1] / ref[1]
        if (sx, sy) != (1.0, 1.0):
            warnings.append(
                f"{where}: keypoint canvas {ref[0]}x{ref[1]} differs from the image {target[0]}x{target[1]}; "
                f"coordinates were rescaled by ({sx:.4g}, {sy:.4g})."
            )
    if canvas is not None and image_size is not None:
        ca, ia = canvas[0] / canvas[1], image_size[0] / image_size[1]
        if abs(ca / ia - 1.0) > 0.01:
            warnings.append(
                f"{where}: the keypoint canvas {canvas[0]}x{canvas[1]} has another aspect ratio than the image "
                f"{image_size[0]}x{image_size[1]}, so the keypoints were stretched unevenly to fit. If the pose "
                "looks off, run the pose detector on this very image (or on a resize of it without cropping)."
            )
    people: list[PersonKeypoints] = []
    skipped: list[tuple[int, str]] = []
    for raw in raws:
        p = PersonKeypoints(index=raw.index, **raw.parts).scaled(sx, sy)
        pwhere = f"{where} person {raw.index}"
        if raw.negative:
            warnings.append(
                f"{pwhere}: {raw.negative} point(s) with negative coordinates were treated as missing "
                "(detectors write -1 for undetected points). If your coordinates have another origin, shift "
                "them so (0, 0) is the image's top-left corner."
            )
        n = p.num_confident()
        if n < min_joints:
            reason = (
                f"only {n} confident body joint(s), fewer than min_joints={min_joints}; too little to fit a "
                "body. Lower min_confidence/min_joints, or use a crop where the person is more visible."
            )
            skipped.append((raw.index, reason))
            warnings.append(f"{pwhere} skipped: {reason}")
            continue
        if _hand_order_hint(p):
            other = "right_first" if hand_order == "left_first" else "left_first"
            warnings.append(
                f"{pwhere}: the left hand sits at the right wrist and vice versa; the hand arrays look swapped. "
                f"If the keypoints come from {'SDPose' if other == 'right_first' else 'comfyui_controlnet_aux'}, "
                f"use hand_order='{other}'."
            )
        people.append(p)
    if not raws:
        warnings.append(
            f"{where}: no people in the keypoints; the image passes through unchanged. If it shows people, "
            "check that the pose detector ran on this image (or lower its detection threshold)."
        )
    return FrameKeypoints(
        people=people,
        canvas=ref,
        image_size=target,
        skipped=skipped,
        warnings=warnings,
        coords=mode,
        frame_index=frame_index,
    )


def _check_common(coords: str, hand_order: str, min_confidence: float, min_joints: int) -> None:
    _check_choice("coords", coords, ("auto", "pixels", "normalized"))
    _check_choice("hand_order", hand_order, ("left_first", "right_first"))
    if not (isinstance(min_confidence, (int, float)) and 0.0 <= min_confidence <= 1.0):
        raise KeypointError(f"min_confidence={min_confidence!r}; use a number from 0 to 1 (0.3 matches DWPose).")
    if not (isinstance(min_joints, int) and 0 <= min_joints <= 18):
        raise KeypointError(f"min_joints={min_joints!r}; use a whole number from 0 to 18 (default 4).")


def parse_pose_keypoint(
    data: Any,
    image_sizes: Sequence[Size] | Size | None = None,
    *,
    coords: Coords = "auto",
    hand_order: HandOrder = "left_first",
    min_confidence: float = 0.3,
    min_joints: int = 4,
    require_people: bool = False,
    source: str = "POSE_KEYPOINT",
) -> list[FrameKeypoints]:
    """Parse ComfyUI ``POSE_KEYPOINT`` into per-image keypoints in image pixels.

    Args:
        data: POSE_KEYPOINT (list of frame dicts, or one frame dict), as validated by
            :func:`validate_pose_keypoint`. ``pose_keypoints_2d`` may hold OpenPose-18, BODY_25,
            COCO-17 or COCO-WholeBody-133 points; the body is converted to COCO-18.
        image_sizes: the target images' ``(W, H)``: a list with one size per image (e.g.
            :func:`image_sizes_from_batch`), one ``(W, H)`` used for every frame, or None to
            keep each frame's canvas as its image.
        coords: "auto" (default), "pixels" or "normalized". **Auto rule**, per frame: if every
            present coordinate is <= :data:`NORMALIZED_COORD_LIMIT` (1.5) in absolute value and the
            canvas (or, without a canvas, the image) is larger than :data:`NORMALIZED_MIN_CANVAS`
            (8 px) on both sides, the frame is normalized 0..1 (comfyui_controlnet_aux OpenPose);
            otherwise pixels of the canvas (DWPose, SDPose). Normalized coordinates are multiplied
            by the image size; pixel coordinates are rescaled by image/canvas per axis.
        hand_order: "left_first" (default; comfyui_controlnet_aux and OpenPose convention):
            ``hand_left_keypoints_2d`` is the subject's left hand. "right_first" (for ComfyUI's
            SDPose node, which packs WholeBody's hands right-first): ``hand_left_keypoints_2d`` is
            stored as :attr:`PersonKeypoints.hand_right` and ``hand_right_keypoints_2d`` as
            ``hand_left``. Nothing else is swapped (body, feet and face keep their sides, and no
            point is mirrored). A 133-point ``pose_keypoints_2d`` is not affected.
        min_confidence: points below it (default 0.3, DWPose's and SDPose's drawing threshold)
            are treated as missing.
        min_joints: people with fewer present COCO-18 body joints (a Neck derived from the
            shoulders counts) are skipped and listed in ``skipped`` and ``warnings``.
        require_people: raise :class:`KeypointError` when no frame has a person left.
        source: name used in messages.

    Missing points: a point is missing when its confidence is 0 or below ``min_confidence``,
    a coordinate is NaN/None, it is exactly (0, 0) (the producers' ``0,0,0``), or a coordinate
    is negative (the producers' -1 marker; a warning counts such points if they were
    confident). Missing points become ``x = y = NaN, confidence = 0``.

    Frames vs images (``image_sizes`` a list of M sizes, N frames):
        * N == M: frame i goes with image i.
        * N == 1, M > 1: the one frame is broadcast to every image (a detector ran on one
          image of a batch); each result notes it in ``warnings``.
        * otherwise (N > M, or 1 < N < M): :class:`KeypointError` naming both counts.

    Returns one :class:`FrameKeypoints` per image (per frame when ``image_sizes`` is None or
    a single size). A frame without people passes through with an empty ``people`` list and a
    warning (unless ``require_people``).
    """
    _check_common(coords, hand_order, min_confidence, min_joints)
    frames = validate_pose_keypoint(data, source=source)
    n = len(frames)
    if isinstance(image_sizes, np.ndarray):
        image_sizes = image_sizes.tolist()
    if image_sizes is None:
        pairs: list[tuple[int, Size | None]] = [(i, None) for i in range(n)]
    elif _is_size_pair(image_sizes):
        size = _check_size(image_sizes, "image size")
        pairs = [(i, size) for i in range(n)]
    else:
        if isinstance(image_sizes, (str, bytes)) or not isinstance(image_sizes, Sequence):
            raise KeypointError(
                f"image_sizes is {type(image_sizes).__name__}; give a list of (width, height), one per image, "
                "or a single (width, height)."
            )
        sizes = [_check_size(s, f"image_sizes[{i}]") for i, s in enumerate(image_sizes)]
        m = len(sizes)
        if m == 0:
            raise KeypointError("image_sizes is empty; pass the size of at least one image.")
        if n == m:
            pairs = list(enumerate(sizes))
        elif n == 1:
            pairs = [(0, s) for s in sizes]
        elif n > m:
            raise KeypointError(
                f"{source} has {n} keypoint frames but there are only {m} images. Pass the same image batch "
                "that the pose detector saw, or pick the matching frames (e.g. with a frame/batch selector) so "
                "both counts are equal."
            )
        else:
            raise KeypointError(
                f"{source} has {n} keypoint frames but there are {m} images; only one frame (used for every "
                "image) or one frame per image can be matched. Run the pose detector on the whole image batch, "
                "or pass only the images the keypoints belong to."
            )
    out: list[FrameKeypoints] = []
    for image_index, (fi, size) in enumerate(pairs):
        frame = frames[fi]
        where = f"{source} frame {fi}"
        cw, ch = frame.get("canvas_width"), frame.get("canvas_height")
        canvas = _check_size((cw, ch), f"{where} canvas") if cw is not None and ch is not None else None
        raws = [_raw_from_dict(p, pi, hand_order, min_confidence) for pi, p in enumerate(frame["people"])]
        fk = _build_frame(
            raws,
            where=where,
            canvas=canvas,
            image_size=size,
            coords=coords,
            min_joints=min_joints,
            hand_order=hand_order,
            frame_index=fi,
        )
        if n == 1 and len(pairs) > 1:
            fk.warnings.append(
                f"{source} has 1 frame for {len(pairs)} images; it was used for image {image_index} too. "
                "Run the pose detector on the whole batch if the images show different poses."
            )
        out.append(fk)
    if require_people and not any(f.people for f in out):
        raise KeypointError(
            f"{source}: no person with at least {min_joints} confident body joints in any frame. Check that the pose "
            "detector ran on these images and found people, or lower min_confidence / min_joints."
        )
    return out


def from_array(
    arr: Any,
    fmt: str = "coco18",
    *,
    image_size: Size | None = None,
    canvas: Size | None = None,
    coords: Coords = "pixels",
    min_confidence: float = 0.3,
    min_joints: int = 4,
) -> FrameKeypoints:
    """People from an array of one keypoint format (e.g. a detector's raw output).

    Args:
        arr: ``(N, K, 3)`` x, y, confidence (or ``(N, K, 2)`` x, y: confidence 1 for finite
            points), or ``(K, 3)`` for one person.
        fmt: "coco18", "body25", "coco17" or "wholebody133" (:data:`KEYPOINT_FORMATS`).
        image_size: target image ``(W, H)``; defaults to ``canvas``.
        canvas: ``(W, H)`` the coordinates refer to; defaults to ``image_size``. At least one
            of the two is required.
        coords: "pixels" (default), "normalized" or "auto", as in :func:`parse_pose_keypoint`.
        min_confidence, min_joints: as in :func:`parse_pose_keypoint`; missing points follow
            the same rules.
    """
    fmt = _check_format(fmt)
    _check_common(coords, "left_first", min_confidence, min_joints)
    a = _as_points(arr, KEYPOINT_FORMATS[fmt], f"{fmt} array")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise KeypointError(f"{fmt} array: shape {a.shape}; pass (people, points, 3) or (points, 3).")
    image_size = _check_size(image_size, "image_size") if image_size is not None else None
    canvas = _check_size(canvas, "canvas") if canvas is not None else None
    raws = []
    for i, pts in enumerate(a):
        raw = _RawPerson(i)
        pts = _clean(pts.copy(), min_confidence, raw)
        if fmt == "coco18":
            raw.parts["body"] = pts
        elif fmt == "coco17":
            raw.parts["body"] = coco17_to_coco18(pts)
        elif fmt == "body25":
            raw.parts["body"], raw.parts["foot"] = body25_to_coco18(pts)
        else:
            wb = wholebody133_to_parts(pts)
            for name in ("body", "foot", "face", "hand_left", "hand_right"):
                raw.parts[name] = wb[name]
        raws.append(raw)
    return _build_frame(
        raws,
        where=f"{fmt} array",
        canvas=canvas,
        image_size=image_size,
        coords=coords,
        min_joints=min_joints,
        hand_order="left_first",
        frame_index=0,
    )


def to_array(people: Sequence[PersonKeypoints] | FrameKeypoints, fmt: str = "coco18") -> np.ndarray:
    """``(N, K, 3)`` array of ``fmt`` for the people (missing points: NaN, NaN, 0)."""
    fmt = _check_format(fmt)
    ps = people.people if isinstance(people, FrameKeypoints) else list(people)
    if not ps:
        return np.zeros((0, KEYPOINT_FORMATS[fmt], 3), dtype=np.float64)
    return np.stack([p.as_format(fmt) for p in ps])


# ---------------------------------------------------------------------------
# Writing POSE_KEYPOINT
# ---------------------------------------------------------------------------


def _to_flat(a: np.ndarray | None, sx: float, sy: float, binary: bool) -> list[float]:
    if a is None:
        return []
    out: list[float] = []
    ok = present_mask(a)
    for (x, y, c), good in zip(a.tolist(), ok.tolist(), strict=True):
        if good:
            out += [x * sx, y * sy, 1.0 if binary else c]
        else:
            out += [0.0, 0.0, 0.0]
    return out


def to_pose_keypoint(
    frames: Sequence[FrameKeypoints],
    *,
    hand_order: HandOrder = "left_first",
    coords: Literal["pixels", "normalized"] = "pixels",
    confidence: Literal["keep", "binary"] = "keep",
) -> list[dict]:
    """Write frames back as POSE_KEYPOINT (one dict per frame).

    Coordinates are written in pixels of each frame's ``image_size`` (which becomes
    ``canvas_width``/``canvas_height``), or as 0..1 fractions of it with
    ``coords="normalized"`` (comfyui_controlnet_aux's OpenPose convention). Missing points are
    written ``0, 0, 0`` like the producers do. Each person gets ``pose_keypoints_2d`` (18),
    ``face_keypoints_2d`` (70) and both hand arrays (``[]`` when absent), plus
    ``foot_keypoints_2d`` (6) when it has feet; skipped people are not written.
    ``hand_order="right_first"`` writes SDPose's packing (the right hand into
    ``hand_left_keypoints_2d``). ``confidence="binary"`` writes 1.0 for every present point as
    comfyui_controlnet_aux does (its readers drop points with confidence < 1);
    ``"keep"`` (default) writes the stored confidences, which :func:`parse_pose_keypoint`
    reads back unchanged.
    """
    _check_choice("hand_order", hand_order, ("left_first", "right_first"))
    _check_choice("coords", coords, ("pixels", "normalized"))
    _check_choice("confidence", confidence, ("keep", "binary"))
    binary = confidence == "binary"
    out = []
    for f in frames:
        w, h = f.image_size
        sx, sy = (1.0 / w, 1.0 / h) if coords == "normalized" else (1.0, 1.0)
        people = []
        for p in f.people:
            first, second = (p.hand_left, p.hand_right) if hand_order == "left_first" else (p.hand_right, p.hand_left)
            d: dict[str, Any] = {
                "pose_keypoints_2d": _to_flat(p.body, sx, sy, binary),
                "face_keypoints_2d": _to_flat(p.face, sx, sy, binary),
                "hand_left_keypoints_2d": _to_flat(first, sx, sy, binary),
                "hand_right_keypoints_2d": _to_flat(second, sx, sy, binary),
            }
            if p.foot is not None:
                d["foot_keypoints_2d"] = _to_flat(p.foot, sx, sy, binary)
            people.append(d)
        out.append({"people": people, "canvas_width": int(w), "canvas_height": int(h)})
    return out

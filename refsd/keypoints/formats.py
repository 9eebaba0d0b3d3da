"""Keypoint formats and the conversions between them.

The name tables and index maps of OpenPose COCO-18, BODY_25, MS-COCO 17, COCO-WholeBody-133,
the 6 foot points, the 70-point face (68 landmarks + 2 pupils) and the 21-point hands, plus
converters between them on numpy ``(..., K, 3)`` x, y, confidence arrays.

Conventions:

* Missing or low-confidence points are ``x = y = NaN, confidence = 0`` -- never a real
  point at (0, 0). :func:`present_mask` tells which points are present.
* R/L in joint names are the subject's anatomical sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import KeypointError

__all__ = [
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

#: Number of points per whole-array format accepted by :func:`refsd.keypoints.from_array` /
#: :func:`refsd.keypoints.to_array`.
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

"""Assembling :class:`FrameKeypoints` from one frame's source points.

The shared back end of :func:`refsd.keypoints.parse_pose_keypoint` and
:func:`refsd.keypoints.from_array`: cleaning missing points (low confidence, NaN, exactly
(0, 0), negative coordinates), deciding whether coordinates are pixels or normalized 0..1
(:data:`NORMALIZED_COORD_LIMIT`, :data:`NORMALIZED_MIN_CANVAS`), scaling them to the target
image, skipping people with too few joints, and the warnings about all of it.
"""

from __future__ import annotations

import numpy as np

from ..errors import KeypointError
from .formats import _C18, present_mask
from .frames import FrameKeypoints, PersonKeypoints
from .validate import Size

__all__ = [
    "NORMALIZED_COORD_LIMIT",
    "NORMALIZED_MIN_CANVAS",
]

#: A coordinate value this large or smaller (over all confident points of a frame) means
#: ``coords="auto"`` reads the frame as normalized 0..1 (see :func:`refsd.keypoints.parse_pose_keypoint`).
NORMALIZED_COORD_LIMIT = 1.5
#: ... provided the reference canvas (or image) is larger than this many pixels on both sides.
NORMALIZED_MIN_CANVAS = 8


class _RawPerson:
    """One person's parts in source units (before scaling), cleaned of missing points."""

    def __init__(self, index: int, track_id: int | None = None) -> None:
        self.index = index
        self.track_id = track_id
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
        p = PersonKeypoints(index=raw.index, track_id=raw.track_id, **raw.parts).scaled(sx, sy)
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

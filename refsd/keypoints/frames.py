"""Parsed keypoints: :class:`PersonKeypoints` / :class:`FrameKeypoints` and writing them back.

A person's keypoints are numpy ``(K, 3)`` x, y, confidence arrays in pixels of the target
image (missing points ``x = y = NaN, confidence = 0``); a frame holds the people of one image.
:func:`to_array` stacks people into an array of one keypoint format, and
:func:`to_pose_keypoint` writes frames back as ComfyUI ``POSE_KEYPOINT``
(``hand_order="right_first"`` writes SDPose's hand packing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .formats import (
    KEYPOINT_FORMATS,
    _as_points,
    _mark_missing,
    coco18_to_body25,
    coco18_to_coco17,
    parts_to_wholebody133,
    present_mask,
)
from .validate import HandOrder, Size, _check_choice, _check_format

__all__ = [
    "PersonKeypoints",
    "FrameKeypoints",
    "to_array",
    "to_pose_keypoint",
    "matched_errors",
]


@dataclass
class PersonKeypoints:
    """One person's 2D keypoints in **pixels of the target image**.

    Every array is ``(K, 3)`` float64 ``x, y, confidence``. A missing or low-confidence
    point (below the parser's ``min_confidence``) is ``x = y = NaN, confidence = 0`` -- never
    a point at (0, 0) -- so a fitter that weights by confidence (or masks with
    :func:`refsd.keypoints.present_mask`) ignores it.

    Attributes:
        body: ``(18, 3)`` OpenPose COCO-18 (see :data:`refsd.keypoints.COCO18_NAMES`).
        foot: ``(6, 3)`` in :data:`refsd.keypoints.FOOT6_NAMES` order, or None when the source had no feet.
        hand_left: ``(21, 3)`` the subject's left hand (OpenPose hand order), or None.
        hand_right: ``(21, 3)`` the subject's right hand, or None.
        face: ``(70, 3)`` 68 landmarks + right pupil + left pupil, or None.
        index: the person's index in its source frame's ``people`` list.
        track_id: who the person is across the frames of a video (RefSD Track People's
            ``track_id`` key in POSE_KEYPOINT), or None for a still image.
    """

    body: np.ndarray
    foot: np.ndarray | None = None
    hand_left: np.ndarray | None = None
    hand_right: np.ndarray | None = None
    face: np.ndarray | None = None
    index: int = 0
    track_id: int | None = None

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
        """The person as a ``(K, 3)`` array of ``fmt`` (one of :data:`refsd.keypoints.KEYPOINT_FORMATS`)."""
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
            track_id=self.track_id,
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
    ``foot_keypoints_2d`` (6) when it has feet, and ``track_id`` when it has one (a video's
    tracked person; other readers ignore the key); skipped people are not written.
    ``hand_order="right_first"`` writes SDPose's packing (the right hand into
    ``hand_left_keypoints_2d``). ``confidence="binary"`` writes 1.0 for every present point as
    comfyui_controlnet_aux does (its readers drop points with confidence < 1);
    ``"keep"`` (default) writes the stored confidences, which :func:`refsd.keypoints.parse_pose_keypoint`
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
            if p.track_id is not None:
                d["track_id"] = int(p.track_id)
            people.append(d)
        out.append({"people": people, "canvas_width": int(w), "canvas_height": int(h)})
    return out


def matched_errors(
    reference: FrameKeypoints, found: FrameKeypoints, *, min_confidence: float = 0.3, min_joints: int = 6
) -> list[tuple[float, float]]:
    """Per person of ``reference`` (e.g. a hand annotation): the median COCO-18 joint distance in
    pixels to the best-matching person of ``found`` (``inf`` when none shares ``min_joints``
    joints above ``min_confidence``), and the height of the reference person's joints."""
    out = []
    for ref in reference.people:
        best = np.inf
        for p in found.people:
            ok = (ref.body[:, 2] > 0) & (p.body[:, 2] > min_confidence)
            if ok.sum() >= min_joints:
                best = min(best, float(np.median(np.linalg.norm(ref.body[ok, :2] - p.body[ok, :2], axis=1))))
        _, y0, _, y1 = ref.bbox(include_parts=False)
        out.append((best, y1 - y0))
    return out

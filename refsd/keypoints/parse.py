"""Reading people: ``POSE_KEYPOINT`` and keypoint arrays -> :class:`FrameKeypoints`.

:func:`parse_pose_keypoint` turns validated POSE_KEYPOINT into :class:`FrameKeypoints` /
:class:`PersonKeypoints` (numpy ``(K, 3)`` x, y, confidence arrays in pixels of the target
image), matching frames to images; :func:`from_array` does the same for an array of one
keypoint format. Any body format is converted to COCO-18.

``hand_order="left_first"`` (default, comfyui_controlnet_aux) reads
``hand_left_keypoints_2d`` as the left hand; ``"right_first"`` (ComfyUI's SDPose node)
swaps the two hand arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import KeypointError
from .build import _build_frame, _clean, _RawPerson
from .formats import (
    KEYPOINT_FORMATS,
    _as_points,
    body25_to_coco18,
    coco17_to_coco18,
    face68_to_face70,
    missing_points,
    wholebody133_to_parts,
)
from .frames import FrameKeypoints
from .validate import (
    Coords,
    HandOrder,
    Size,
    _check_common,
    _check_format,
    _check_size,
    _is_size_pair,
    validate_pose_keypoint,
)

__all__ = [
    "image_sizes_from_batch",
    "parse_pose_keypoint",
    "from_array",
]


def image_sizes_from_batch(images: Any) -> list[Size]:
    """``(W, H)`` per image of a ComfyUI IMAGE batch (anything with ``.shape`` ``(B, H, W, C)``)."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4:
        raise KeypointError(
            f"expected an IMAGE batch of shape (batch, height, width, channels), got shape {shape}. "
            "Connect an IMAGE output (e.g. Load Image)."
        )
    return [(int(shape[2]), int(shape[1]))] * int(shape[0])


def _flat(values: Any) -> np.ndarray:
    """Flat x,y,c list (None entries = missing) -> (K, 3)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64).reshape(-1, 3)


def _raw_from_dict(person: dict, index: int, hand_order: str, min_confidence: float) -> _RawPerson:
    tid = person.get("track_id")
    raw = _RawPerson(index, int(tid) if isinstance(tid, (int, np.integer)) and not isinstance(tid, bool) else None)

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
            :func:`refsd.keypoints.validate_pose_keypoint`. ``pose_keypoints_2d`` may hold
            OpenPose-18, BODY_25, COCO-17 or COCO-WholeBody-133 points; the body is converted
            to COCO-18.
        image_sizes: the target images' ``(W, H)``: a list with one size per image (e.g.
            :func:`image_sizes_from_batch`), one ``(W, H)`` used for every frame, or None to
            keep each frame's canvas as its image.
        coords: "auto" (default), "pixels" or "normalized". **Auto rule**, per frame: if every
            present coordinate is <= :data:`refsd.keypoints.NORMALIZED_COORD_LIMIT` (1.5) in
            absolute value and the canvas (or, without a canvas, the image) is larger than
            :data:`refsd.keypoints.NORMALIZED_MIN_CANVAS` (8 px) on both sides, the frame is
            normalized 0..1 (comfyui_controlnet_aux OpenPose); otherwise pixels of the canvas
            (DWPose, SDPose). Normalized coordinates are multiplied by the image size; pixel
            coordinates are rescaled by image/canvas per axis.
        hand_order: "left_first" (default; comfyui_controlnet_aux and OpenPose convention):
            ``hand_left_keypoints_2d`` is the subject's left hand. "right_first" (for ComfyUI's
            SDPose node, which packs WholeBody's hands right-first): ``hand_left_keypoints_2d`` is
            stored as :attr:`refsd.keypoints.PersonKeypoints.hand_right` and
            ``hand_right_keypoints_2d`` as ``hand_left``. Nothing else is swapped (body, feet
            and face keep their sides, and no point is mirrored). A 133-point
            ``pose_keypoints_2d`` is not affected.
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
        fmt: "coco18", "body25", "coco17" or "wholebody133" (:data:`refsd.keypoints.KEYPOINT_FORMATS`).
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

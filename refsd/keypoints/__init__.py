"""Stage 1, find the people: keypoint formats, parsing, validation and drawing.

Modules, in import order: :mod:`~refsd.keypoints.formats` (keypoint formats and conversions),
:mod:`~refsd.keypoints.validate` (POSE_KEYPOINT structure, keypoint files, argument checks),
:mod:`~refsd.keypoints.frames` (:class:`PersonKeypoints` / :class:`FrameKeypoints`, writing
POSE_KEYPOINT), :mod:`~refsd.keypoints.build` (assembling frames: missing points, coordinate
mode, scaling), :mod:`~refsd.keypoints.parse` (POSE_KEYPOINT and arrays -> frames) and
:mod:`~refsd.keypoints.draw` (OpenPose-style skeleton drawing). Import from the package.
"""

from __future__ import annotations

from ..errors import KeypointError
from .build import NORMALIZED_COORD_LIMIT, NORMALIZED_MIN_CANVAS
from .draw import (
    BODY_COLORS,
    HAND_EDGE_COLORS,
    HAND_EDGES,
    LIMB_SEQ,
    draw_person,
    draw_pose,
)
from .formats import (
    BODY25_NAMES,
    BODY25_TO_COCO18,
    COCO17_NAMES,
    COCO17_TO_COCO18,
    COCO18_NAMES,
    COCO18_TO_BODY25,
    COCO18_TO_COCO17,
    FOOT6_NAMES,
    KEYPOINT_FORMATS,
    WHOLEBODY133_PARTS,
    body25_to_coco18,
    coco17_to_coco18,
    coco18_to_body25,
    coco18_to_coco17,
    face68_to_face70,
    missing_points,
    parts_to_wholebody133,
    present_mask,
    wholebody133_to_parts,
)
from .frames import FrameKeypoints, PersonKeypoints, matched_errors, to_array, to_pose_keypoint
from .parse import from_array, image_sizes_from_batch, parse_pose_keypoint
from .validate import KEYPOINT_ARRAYS, count_people, load_pose_keypoint_file, validate_pose_keypoint

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
    "matched_errors",
    "missing_points",
    "present_mask",
    "coco17_to_coco18",
    "coco18_to_coco17",
    "body25_to_coco18",
    "coco18_to_body25",
    "face68_to_face70",
    "wholebody133_to_parts",
    "parts_to_wholebody133",
    "BODY_COLORS",
    "LIMB_SEQ",
    "HAND_EDGES",
    "HAND_EDGE_COLORS",
    "draw_pose",
    "draw_person",
]

"""Keypoint similarity: COCO's OKS on OpenPose COCO-18 + the six foot points, person by person.

Shared by the evaluation (:mod:`refsd.evaluate.pose`: pose kept) and the tracker
(:mod:`refsd.keypoints.track`: who is who from frame to frame). ``OKS = mean over the reference's
visible joints of exp(-d^2 / (2 s^2 k^2))``, ``k = 2 sigma`` (:data:`SIGMAS`), ``s^2`` the person's
area: COCO takes it from the segment; from keypoints alone it is ``0.53 x`` the joints' box padded
by 1.25 (mmpose's convention for COCO-style data with boxes only, the box as top-down pose
pipelines pad it).
"""

from __future__ import annotations

import numpy as np

from .frames import PersonKeypoints

__all__ = ["SIGMAS", "JOINT_NAMES", "BOX_PAD", "AREA_PER_BOX", "person_joints", "person_height", "person_area",
           "oks_terms", "oks", "box_of"]

#: COCO's per-keypoint sigmas in COCO-18 order (the neck, which COCO lacks, takes the shoulders'
#: 0.079), then COCO-WholeBody's six foot sigmas in FOOT6 order (left big toe, left small toe,
#: left heel, right big toe, right small toe, right heel).
SIGMAS = np.array(
    [0.026, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089,
     0.025, 0.025, 0.035, 0.035,
     0.068, 0.066, 0.066, 0.092, 0.094, 0.094]
)  # fmt: skip
JOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
    "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel",
)  # fmt: skip
BOX_PAD = 1.25
AREA_PER_BOX = 0.53


def person_joints(person: PersonKeypoints, min_confidence: float = 0.0) -> np.ndarray:
    """``(24, 3)`` x, y, visible (0/1): COCO-18 body then the six foot points (missing: NaN, 0)."""
    foot = person.foot if person.foot is not None else np.full((6, 3), np.nan)
    pts = np.concatenate([np.asarray(person.body, float), np.asarray(foot, float)], axis=0)
    vis = np.isfinite(pts[:, :2]).all(1) & (np.nan_to_num(pts[:, 2]) > min_confidence)
    out = pts.copy()
    out[:, 2] = vis
    out[~vis, :2] = np.nan
    return out


def person_height(joints: np.ndarray) -> float:
    """The vertical extent (px) of the visible joints (0 with fewer than two)."""
    y = joints[joints[:, 2] > 0, 1]
    return float(y.max() - y.min()) if len(y) >= 2 else 0.0


def person_area(joints: np.ndarray, mask_area: float | None = None) -> float:
    """The OKS area ``s^2`` in px^2: ``mask_area`` when given, else 0.53 x the visible joints'
    box padded by 1.25 (at least 1 px^2)."""
    if mask_area is not None and mask_area > 0:
        return float(mask_area)
    p = joints[joints[:, 2] > 0, :2]
    if len(p) < 2:
        return 1.0
    w, h = (p.max(0) - p.min(0)) * BOX_PAD
    return max(1.0, AREA_PER_BOX * float(w) * float(h))


def oks_terms(ref: np.ndarray, pred: np.ndarray, area: float) -> np.ndarray:
    """Per joint ``exp(-d^2 / (2 area k^2))`` (0 where the prediction lacks the joint; NaN where the
    reference does not see it)."""
    k2 = (2.0 * SIGMAS) ** 2
    d2 = ((ref[:, :2] - pred[:, :2]) ** 2).sum(1)
    e = np.exp(-d2 / (2.0 * area * k2))
    e = np.where(pred[:, 2] > 0, e, 0.0)
    return np.where(ref[:, 2] > 0, e, np.nan)


def oks(ref: np.ndarray, pred: np.ndarray, area: float) -> float:
    """The OKS of ``pred`` against ``ref`` (both ``(24, 3)`` from :func:`person_joints`); 0 when
    the reference sees no joint."""
    t = oks_terms(ref, pred, area)
    t = t[np.isfinite(t)]
    return float(t.mean()) if len(t) else 0.0


def box_of(joints: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` of the visible joints, or None with fewer than two."""
    p = joints[joints[:, 2] > 0, :2]
    if len(p) < 2:
        return None
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    return float(x0), float(y0), float(x1), float(y1)

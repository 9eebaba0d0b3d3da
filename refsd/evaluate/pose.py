"""Pose kept: how well the keypoints found on the output match the input's, person by person.

Metrics (COCO-18 body + the six BODY_25 / COCO-WholeBody foot points, pixels of one image):

* **OKS** (object keypoint similarity, COCO's keypoint metric): the mean over the reference's
  visible joints of ``exp(-d^2 / (2 s^2 k^2))`` with ``k = 2 sigma`` (COCO's per-joint sigmas,
  :data:`SIGMAS`) and ``s^2`` the person's area. A joint missing in the prediction scores 0.
  COCO takes the area from the person's segment; without one (keypoints only) the area is
  ``0.53 x`` the person box, mmpose's convention for COCO-style data with boxes only, the box
  being the keypoints' extent padded by 1.25 (the top-down pose convention) -- or the person
  mask's pixel count when a mask is given. 1.0 = every joint in the same place.
* **PCK@a**: the fraction of the reference's visible joints found within ``a x`` the person's
  height (the vertical extent of their visible joints, feet included) -- PCK@0.05 and @0.1.
* Both per **joint group** (:data:`JOINT_GROUPS`: head, torso, arms, legs, feet), so a user sees
  *where* the pose drifts (hands and feet first, usually).

People are matched between reference and prediction by OKS with the Hungarian algorithm (each
prediction used once); a reference person without a match scores OKS 0 and PCK 0 ("not found").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..keypoints import FrameKeypoints, PersonKeypoints

__all__ = [
    "SIGMAS",
    "JOINT_NAMES",
    "JOINT_GROUPS",
    "PCK_THRESHOLDS",
    "PersonPose",
    "person_joints",
    "person_area",
    "person_height",
    "oks_terms",
    "compare_people",
    "compare_frames",
]

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
#: Joint groups (indices into :data:`JOINT_NAMES`).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (0, 14, 15, 16, 17),
    "torso": (1, 2, 5, 8, 11),
    "arms": (3, 4, 6, 7),
    "legs": (9, 10, 12, 13),
    "feet": (18, 19, 20, 21, 22, 23),
}
PCK_THRESHOLDS: tuple[float, ...] = (0.05, 0.1)
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


def _nanmean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


@dataclass
class PersonPose:
    """How one reference person's pose came out: ``matched`` (index of the predicted person, or
    None), ``oks``, ``pck`` (``{"0.05": x, "0.1": y}``), per-group ``oks_groups`` / ``pck_groups``
    (None for a group the reference does not see), ``visible`` joints, ``height_px``,
    ``median_error_px`` (over the joints found in both)."""

    index: int
    matched: int | None
    oks: float
    pck: dict[str, float]
    oks_groups: dict[str, float | None] = field(default_factory=dict)
    pck_groups: dict[str, float | None] = field(default_factory=dict)
    visible: int = 0
    height_px: float = 0.0
    median_error_px: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _score(i: int, ref: np.ndarray, pred: np.ndarray | None, j: int | None, area: float) -> PersonPose:
    vis = ref[:, 2] > 0
    height = person_height(ref)
    if pred is None:
        zero = {g: (0.0 if vis[list(ix)].any() else None) for g, ix in JOINT_GROUPS.items()}
        return PersonPose(i, None, 0.0, {str(a): 0.0 for a in PCK_THRESHOLDS}, zero, dict(zero),
                          int(vis.sum()), height, None)
    terms = oks_terms(ref, pred, area)
    d = np.linalg.norm(ref[:, :2] - pred[:, :2], axis=1)
    found = vis & (pred[:, 2] > 0)
    pck, pck_groups = {}, {}
    for a in PCK_THRESHOLDS:
        hit = np.full(len(ref), np.nan)
        hit[vis] = (found & (np.nan_to_num(d, nan=np.inf) <= a * height))[vis]
        pck[str(a)] = _nanmean(hit) or 0.0
        if a == max(PCK_THRESHOLDS):  # the groups at the looser threshold
            pck_groups = {g: _nanmean(hit[list(ix)]) for g, ix in JOINT_GROUPS.items()}
    return PersonPose(
        i, j, _nanmean(terms) or 0.0, pck,
        {g: _nanmean(terms[list(ix)]) for g, ix in JOINT_GROUPS.items()}, pck_groups,
        int(vis.sum()), height, float(np.median(d[found])) if found.any() else None,
    )


def compare_people(
    reference: Sequence[PersonKeypoints],
    predicted: Sequence[PersonKeypoints],
    *,
    min_confidence: float = 0.3,
    mask_areas: Sequence[float | None] | None = None,
) -> list[PersonPose]:
    """One :class:`PersonPose` per reference person: matched to the predicted people by OKS
    (Hungarian assignment, each prediction used once); joints below ``min_confidence`` count
    as not visible (reference) / not found (prediction). ``mask_areas`` (per reference person,
    px^2) replace the box-based OKS area."""
    from scipy.optimize import linear_sum_assignment

    refs = [person_joints(p, min_confidence) for p in reference]
    preds = [person_joints(p, min_confidence) for p in predicted]
    areas = [person_area(r, None if mask_areas is None else mask_areas[i]) for i, r in enumerate(refs)]
    match: dict[int, int] = {}
    if refs and preds:
        cost = np.zeros((len(refs), len(preds)))
        for i, r in enumerate(refs):
            for j, p in enumerate(preds):
                cost[i, j] = -(_nanmean(oks_terms(r, p, areas[i])) or 0.0)
        rows, cols = linear_sum_assignment(cost)
        match = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 0}
    return [_score(i, r, preds[match[i]] if i in match else None, match.get(i), areas[i]) for i, r in enumerate(refs)]


def compare_frames(reference: FrameKeypoints, predicted: FrameKeypoints, **kw) -> list[PersonPose]:
    """:func:`compare_people` on two keypoint frames of the same image size."""
    return compare_people(reference.people, predicted.people, **kw)

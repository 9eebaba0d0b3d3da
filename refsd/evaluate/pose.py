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

The OKS itself lives in :mod:`refsd.keypoints.similarity` (the tracker uses it too).
People are matched between reference and prediction by OKS with the Hungarian algorithm (each
prediction used once); a reference person without a match scores OKS 0 and PCK 0 ("not found").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..keypoints import FrameKeypoints, PersonKeypoints
from ..keypoints.similarity import JOINT_NAMES, SIGMAS, oks_terms, person_area, person_height, person_joints

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

#: Joint groups (indices into :data:`JOINT_NAMES`).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (0, 14, 15, 16, 17),
    "torso": (1, 2, 5, 8, 11),
    "arms": (3, 4, 6, 7),
    "legs": (9, 10, 12, 13),
    "feet": (18, 19, 20, 21, 22, 23),
}
PCK_THRESHOLDS: tuple[float, ...] = (0.05, 0.1)


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

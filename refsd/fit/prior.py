"""Anatomical pose parameterisation, pose prior and joint limits for the fitter.

Each of the 21 body joints is rotated by ``rotvec_j = A_j @ alpha_j`` where ``A_j`` is a
per-joint frame (identity, i.e. the world-aligned rest axes X = subject's left, Y = up,
Z = forward, except for the elbows, whose frame is (flexion axis, upper-arm axis, third
axis) so that flexion is one number). The prior on ``alpha`` is a Gaussian (mean, std) per
degree of freedom plus soft limits, written from textbook ranges of motion (AAOS/Kapandji
style numbers, rounded), not learned from any dataset:

* knees and elbows are hinges (flexion 0..150 deg; the other two axes stay within a few
  degrees), which removes the "bend the wrong way" solutions of monocular fitting;
* hips flex far forward (to 125 deg) but extend only 30 deg back, so a thigh seen
  foreshortened is preferably placed in front of the body;
* the spine, neck and head bend forward more than backward; collars, feet and wrists
  move little.

Values are given for the subject's left side in a T-pose rest skeleton; the right side is
mirrored (``(x, y, z) -> (x, -y, -z)`` for axis-angle components), and the shoulders are
shifted for models whose rest pose is an A-pose (the arm's rest angle is measured from the
model's own rest joints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PosePrior", "build_prior", "JOINT_TABLE", "POSE_MODES"]

D = math.radians

# name: ((mean_x, mean_y, mean_z), (std...), (lo...), (hi...)) in degrees, LEFT side / centre.
JOINT_TABLE: dict[str, tuple[tuple[float, float, float], ...]] = {
    "hip": ((-10, 0, 5), (50, 12, 10), (-130, -40, -30), (30, 40, 50)),
    "knee": ((15, 0, 0), (55, 3, 3), (-3, -10, -8), (155, 10, 8)),
    "ankle": ((0, 0, 0), (12, 8, 8), (-40, -25, -25), (30, 25, 25)),
    "foot": ((0, 0, 0), (4, 3, 3), (-15, -10, -10), (30, 10, 10)),
    "spine1": ((3, 0, 0), (9, 10, 5), (-20, -25, -20), (40, 25, 20)),
    "spine2": ((3, 0, 0), (9, 10, 5), (-20, -25, -20), (40, 25, 20)),
    "spine3": ((3, 0, 0), (9, 10, 5), (-20, -25, -20), (40, 25, 20)),
    "neck": ((5, 0, 0), (10, 14, 7), (-40, -50, -30), (45, 50, 30)),
    "head": ((3, 0, 0), (8, 10, 6), (-30, -40, -25), (35, 40, 25)),
    "collar": ((0, 0, 0), (4, 5, 5), (-15, -20, -15), (15, 20, 25)),
    # shoulder (T-pose rest): x = twist about the arm, y < 0 = arm forward, z < 0 = arm down
    "shoulder": ((0, -15, -65), (30, 45, 45), (-90, -150, -100), (90, 50, 120)),
    # elbow frame: (flexion, twist about the upper arm, third)
    "elbow": ((25, 0, 0), (35, 25, 3), (-3, -80, -8), (150, 80, 8)),
    "wrist": ((0, 0, 0), (15, 15, 15), (-60, -60, -60), (60, 60, 60)),
}

# POSE_JOINT_NAMES order (SMPL joints 1..21)
_JOINTS = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip


@dataclass
class PosePrior:
    frames: torch.Tensor  # (21, 3, 3): rotvec_j = frames[j] @ alpha_j
    mean: torch.Tensor  # (21, 3) radians
    std: torch.Tensor  # (21, 3)
    lo: torch.Tensor  # (21, 3)
    hi: torch.Tensor  # (21, 3)

    def to_rotvec(self, alpha: torch.Tensor) -> torch.Tensor:
        """``(..., 21, 3)`` anatomical angles -> body_pose axis-angle."""
        return torch.einsum("jab,...jb->...ja", self.frames, alpha)

    def from_rotvec(self, rotvec: torch.Tensor) -> torch.Tensor:
        return torch.einsum("jba,...jb->...ja", self.frames, rotvec)

    def residuals(self, alpha: torch.Tensor, w_prior: float = 1.0, w_limit: float = 10.0) -> torch.Tensor:
        """``(..., 21*3*2)`` prior residuals (Gaussian) and limit residuals (hinge beyond limits)."""
        z = (alpha - self.mean) / self.std * w_prior
        over = torch.relu(alpha - self.hi) + torch.relu(self.lo - alpha)
        return torch.cat([z.flatten(-2), (over * w_limit / D(5)).flatten(-2)], -1)

    def sample_rotvec(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, 21, 3)`` body poses: half uniform inside the joint limits, half from the Gaussian."""
        u = torch.rand(n, 21, 3, generator=generator, dtype=torch.float64)
        uni = self.lo + (self.hi - self.lo) * u
        gau = self.mean + self.std * torch.randn(n, 21, 3, generator=generator, dtype=torch.float64)
        gau = torch.maximum(torch.minimum(gau, self.hi), self.lo)
        pick = (torch.arange(n) % 2 == 0)[:, None, None]
        return self.to_rotvec(torch.where(pick, uni, gau))

    def init_alpha(self, batch: int, family: str = "mean") -> torch.Tensor:
        """Starting angles (and mixture-component mean) of a pose mode in :data:`POSE_MODES`."""
        if family not in POSE_MODES:
            raise ValueError(f"unknown pose mode {family!r}; use one of {', '.join(POSE_MODES)}")
        a = self.mean.expand(batch, -1, -1).clone()
        idx = {n: i for i, n in enumerate(_JOINTS)}
        for joint, axis, degrees, relative in POSE_MODES[family]:
            a[:, idx[joint], axis] = (self.mean[idx[joint], axis] if relative else 0.0) + D(degrees)
        return a


#: Pose modes of the mixture prior: (joint, axis, degrees, relative to the mean?) changes from
#: the mean standing pose. Generic activity modes, written by hand.
POSE_MODES: dict[str, tuple[tuple[str, int, float, bool], ...]] = {
    "mean": (),
    "sit": tuple((f"{s}_{j}", 0, d, False) for s in ("left", "right") for j, d in (("hip", -85), ("knee", 90))),
    "crouch": tuple((f"{s}_{j}", 0, d, False) for s in ("left", "right") for j, d in (("hip", -100), ("knee", 130)))
    + (("spine1", 0, 20, False),),
    "bend": tuple((s, 0, 25, False) for s in ("spine1", "spine2", "spine3"))
    + tuple((f"{s}_hip", 0, -40, False) for s in ("left", "right")),
    "arms_up": (("left_shoulder", 2, 130, True), ("right_shoulder", 2, -130, True)),
}


def _mirror(v: tuple[float, float, float]) -> tuple[float, float, float]:
    return (v[0], -v[1], -v[2])


def _mirror_bounds(lo, hi):
    return (lo[0], -hi[1], -hi[2]), (hi[0], -lo[1], -lo[2])


def build_prior(rest_joints: torch.Tensor) -> PosePrior:
    """Build the prior for a model from its rest joints ``(22, 3)`` (root first, SMPL order)."""
    J = rest_joints.detach().to(torch.float64).cpu()
    idx = {n: i + 1 for i, n in enumerate(_JOINTS)}  # +1: root is joint 0
    frames = torch.eye(3, dtype=torch.float64).repeat(21, 1, 1)
    mean = torch.zeros(21, 3, dtype=torch.float64)
    std = torch.ones(21, 3, dtype=torch.float64)
    lo = torch.zeros(21, 3, dtype=torch.float64)
    hi = torch.zeros(21, 3, dtype=torch.float64)
    for j, name in enumerate(_JOINTS):
        side = "left" if name.startswith("left_") else "right" if name.startswith("right_") else None
        key = name.split("_", 1)[1] if side else name
        m, s, lo_, hi_ = JOINT_TABLE[key]
        m, lo_, hi_ = list(m), list(lo_), list(hi_)
        if key == "shoulder":
            # measure how far below horizontal the model's rest upper arm points (A-pose > 0)
            sh, el = J[idx[f"{side}_shoulder"]], J[idx[f"{side}_elbow"]]
            d = el - sh
            drop = math.degrees(math.atan2(-float(d[1]), abs(float(d[0]))))
            m[2] += drop
            lo_[2] += drop
            hi_[2] += drop
        if side == "right":
            m = list(_mirror(tuple(m)))
            lo_, hi_ = (list(v) for v in _mirror_bounds(tuple(lo_), tuple(hi_)))
        if key == "elbow":
            sh, el = J[idx[f"{side}_shoulder"]], J[idx[f"{side}_elbow"]]
            d = el - sh
            d = d / d.norm()
            fwd = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
            flex = torch.linalg.cross(d, fwd)
            flex = flex / flex.norm()
            third = torch.linalg.cross(flex, d)
            frames[j] = torch.stack([flex, d, third], 1)
            # the frame already handles the side: flexion positive on both sides
            m, lo_, hi_ = list(JOINT_TABLE["elbow"][0]), list(JOINT_TABLE["elbow"][2]), list(JOINT_TABLE["elbow"][3])
        mean[j] = torch.tensor([D(v) for v in m], dtype=torch.float64)
        std[j] = torch.tensor([D(v) for v in s], dtype=torch.float64)
        lo[j] = torch.tensor([D(v) for v in lo_], dtype=torch.float64)
        hi[j] = torch.tensor([D(v) for v in hi_], dtype=torch.float64)
    return PosePrior(frames, mean, std, lo, hi)

"""Synthetic videos with known 3D: people walking, turning, crossing, hidden for a while.

Each person is the body model itself in a walking cycle (hips, knees and arms swinging in the
fitter's anatomical angles), moving over a floor 4-7 m in front of the fitter's default camera
(512 x 512, 60 deg), at 25 frames per second. The 2D keypoints are the model's BODY_25
projection with 2 px Gaussian noise and 10 % of points dropped at random, as a detector would
give; a person nearer the camera hides the joints of a farther one behind their 2D box, and in
``occlusion`` one walker is not detected at all for a few frames. The ground truth is every
person's 14 COCO joints in camera space per frame (NaN where the person is not in the frame's
keypoints), and who is who (``truth_ids``). Used by ``tests/test_fit_video.py`` and
``bench/video.py``; :func:`accel_error` and :func:`sequence_pa_mpjpe` are the metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..body import POSE_JOINT_NAMES as JOINTS
from ..fit.camera import Camera
from ..fit.kinematics import matrix_to_axis_angle, rot_x, rot_y
from ..fit.metrics import pa_mpjpe
from ..fit.prior import build_prior
from ..keypoints import FrameKeypoints, from_array

__all__ = ["SyntheticSequence", "KINDS", "make_sequence", "fitted_joints", "accel_error", "sequence_pa_mpjpe",
           "EVAL_COCO18"]

KINDS = ("walking", "turning", "crossing", "occlusion")
EVAL_COCO18 = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # neck, nose, arms, legs (as bench/fit.py)
IMG, FPS = 512, 25.0


@dataclass
class SyntheticSequence:
    """``frames``: the 2D keypoints per frame (people in a shuffled order, no track ids);
    ``truth_ids``: the true identity of each person of each frame; ``joints``: identity ->
    ``(F, 14, 3)`` camera-space joints in metres (NaN in frames where that person is absent)."""

    kind: str
    frames: list[FrameKeypoints]
    truth_ids: list[list[int]]
    joints: dict[int, np.ndarray] = field(default_factory=dict)
    camera: Camera | None = None


def _walk_alpha(J, phase: float, drop: dict[str, float]) -> torch.Tensor:
    """(21, 3) anatomical angles (radians) of a walking cycle at ``phase``."""
    s, c = math.sin(phase), math.cos(phase)
    deg = {
        "left_hip": (-22 * s, 0, 0), "right_hip": (22 * s, 0, 0),
        "left_knee": (8 + 30 * max(0.0, -c), 0, 0), "right_knee": (8 + 30 * max(0.0, c), 0, 0),
        "left_shoulder": (0, -18 * s, -75), "right_shoulder": (0, -18 * s, 75),
        "left_elbow": (20 + 8 * max(0.0, s), 0, 0), "right_elbow": (20 + 8 * max(0.0, -s), 0, 0),
        "spine1": (4, 3 * s, 0), "neck": (5, 0, 0),
    }
    a = torch.zeros(21, 3, dtype=torch.float64)
    for j, name in enumerate(JOINTS):
        a[j] = torch.tensor([math.radians(v) for v in deg.get(name, (0, 0, 0))], dtype=torch.float64)
        if name.endswith("shoulder"):
            side = name.split("_")[0]
            a[j, 2] += drop[side] if side == "left" else -drop[side]
    return a


def _people_motion(kind: str, t: int, n: int):
    """Per person: (identity, yaw rad, x m, z m, phase rad) at frame ``t`` of ``n``."""
    v = 1.2 / FPS  # 1.2 m/s
    step = 2 * math.pi / 28  # a stride cycle every 28 frames
    if kind == "walking":
        return [(0, math.pi / 2, -1.6 + v * t, 5.0, step * t)]
    if kind == "turning":  # a quarter circle: from walking across to walking away
        ang = (math.pi / 2) * t / max(1, n - 1)
        return [(0, math.pi / 2 - ang, -1.2 + 1.5 * math.sin(ang), 4.5 + 1.5 * (1 - math.cos(ang)), step * t)]
    if kind == "crossing":
        return [(0, math.pi / 2, -1.8 + v * t, 4.2, step * t), (1, -math.pi / 2, 1.9 - v * t, 6.0, step * t + 1.3)]
    if kind == "occlusion":
        return [(0, math.pi / 2, -1.6 + v * t, 5.0, step * t)]
    raise ValueError(f"unknown sequence kind {kind!r}; use one of {KINDS}")


def make_sequence(model, kind: str, frames: int = 40, seed: int = 0) -> SyntheticSequence:
    """A synthetic video of ``frames`` frames (module docstring) with ``model`` (Anny or SMPL-X)."""
    rng = np.random.default_rng(seed)
    cam = Camera.from_fov(IMG, IMG, 60.0)
    zero = model(**model.zero_params(1))
    rest = zero.pose_joints[0].detach().double().cpu()
    prior = build_prior(rest)
    drop = {side: math.atan2(-float((rest[ei] - rest[si])[1]), abs(float((rest[ei] - rest[si])[0])))
            for side, (si, ei) in (("left", (16, 18)), ("right", (17, 19)))}
    foot_y = float(zero.coco18[0, [10, 13], 1].min())  # the ankles' model height (y up; flipped into the camera: -y)
    seq = SyntheticSequence(kind, [], [], {}, cam)
    dt, dev = model.dtype, model.device
    flip = rot_x(torch.tensor(math.pi, dtype=torch.float64))
    for t in range(frames):
        people, ids, boxes = [], [], []
        for ident, yaw, x, z, phase in _people_motion(kind, t, frames):
            R = flip @ rot_y(torch.tensor(yaw, dtype=torch.float64))
            params = model.zero_params(1)
            params.update(global_orient=matrix_to_axis_angle(R)[None].to(dev, dt),
                          body_pose=prior.to_rotvec(_walk_alpha(rest, phase, drop))[None].to(dev, dt),
                          transl=torch.zeros(1, 3, device=dev, dtype=dt))
            with torch.no_grad():
                out = model(**params)
            trans = torch.tensor([x, 1.55 + foot_y, z], dtype=torch.float64)  # the floor 1.55 m below the camera
            kp = out.body25[0].double().cpu() + trans
            uv = torch.stack([cam.fx * kp[:, 0] / kp[:, 2] + cam.cx, cam.fy * kp[:, 1] / kp[:, 2] + cam.cy], -1).numpy()
            uvn = uv + rng.normal(0, 2.0, uv.shape)
            conf = np.full(len(uvn), 0.9)
            conf[rng.uniform(size=len(uvn)) < 0.10] = 0.0
            conf[~((uvn[:, 0] >= 0) & (uvn[:, 0] < IMG) & (uvn[:, 1] >= 0) & (uvn[:, 1] < IMG))] = 0.0
            gt = (out.coco18[0].double().cpu() + trans)[EVAL_COCO18].numpy()
            seq.joints.setdefault(ident, np.full((frames, 14, 3), np.nan))[t] = gt
            people.append(np.concatenate([uvn, conf[:, None]], 1))
            ids.append(ident)
            boxes.append((uv.min(0), uv.max(0), z))
        # a nearer person hides what of a farther one lies behind their 2D box
        for a in range(len(people)):
            for b in range(len(people)):
                if boxes[b][2] < boxes[a][2]:
                    lo, hi = boxes[b][0], boxes[b][1]
                    inside = ((people[a][:, :2] >= lo) & (people[a][:, :2] <= hi)).all(1)
                    people[a][inside, 2] = 0.0
        keep = [k for k in range(len(people)) if (people[k][:15, 2] > 0).sum() >= 6]
        if kind == "occlusion" and frames // 2 <= t < frames // 2 + 6:
            keep = []  # the walker is not detected for six frames
        for k in range(len(people)):
            if k not in keep:
                seq.joints[ids[k]][t] = np.nan
        order = [keep[i] for i in rng.permutation(len(keep))]
        arr = np.stack([people[k] for k in order]) if order else np.zeros((0, 25, 3))
        seq.frames.append(from_array(arr, fmt="body25", image_size=(IMG, IMG), min_joints=1))
        seq.truth_ids.append([ids[k] for k in order])
    return seq


def fitted_joints(model, fits, truth_ids, shape: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The fits' 14 COCO joints per true identity, ``{identity: (F, 14, 3)}`` (NaN where a person has
    no fit), to compare with :attr:`SyntheticSequence.joints`; ``truth_ids``: the sequence's."""
    out = {k: np.full(shape, np.nan) for k in {i for row in truth_ids for i in row}}
    dev, dt = model.device, model.dtype
    for t, (fit, ids) in enumerate(zip(fits, truth_ids, strict=True)):
        for p in fit.people:
            params = model.zero_params(1)
            params.update({k: torch.tensor([getattr(p, k)], device=dev, dtype=dt)
                           for k in ("global_orient", "body_pose", "shape", "transl")})
            with torch.no_grad():
                out[ids[p.keypoint_index]][t] = model(**params).coco18[0].double().cpu()[EVAL_COCO18].numpy()
    return out


def _root(j: np.ndarray) -> np.ndarray:
    return j - (j[..., 8:9, :] + j[..., 11:12, :]) / 2  # hip midpoint (RHip, LHip in EVAL_COCO18)


def accel_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean acceleration error in mm / frame^2 of ``(F, 14, 3)`` joint sequences (metres),
    hip-midpoint aligned, over the frames where both have the frame and its neighbours."""
    a_p = _root(pred)[2:] - 2 * _root(pred)[1:-1] + _root(pred)[:-2]
    a_g = _root(gt)[2:] - 2 * _root(gt)[1:-1] + _root(gt)[:-2]
    e = np.linalg.norm(a_p - a_g, axis=-1).mean(-1)
    e = e[np.isfinite(e)]
    return float(e.mean() * 1000) if len(e) else float("nan")


def sequence_pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean PA-MPJPE in mm over the frames where both are present."""
    vals = [pa_mpjpe(p, g) for p, g in zip(pred, gt, strict=True) if np.isfinite(p).all() and np.isfinite(g).all()]
    return float(np.mean(vals) * 1000) if vals else float("nan")

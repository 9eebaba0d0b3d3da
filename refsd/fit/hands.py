"""Fingers from hand keypoints: after the body fit, fit each detected hand's finger angles.

The body fit (:mod:`.fitter`) places the wrist and turns the hand (it sees the hand keypoints
through a relaxed-hand proxy). This step then fits, per hand with enough confident points
(DWPose / OpenPose give 21 per hand), the anatomical angles of :mod:`refsd.body.hands` --
three flexions per finger, one spread per finger -- and a small wrist correction, on the real
body model (autograd, L-BFGS), with:

* a robust (Geman-McClure) confidence-weighted reprojection term normalised by the hand's 2D
  size (``sigma`` of it, like the body term),
* a prior towards the relaxed hand (:func:`refsd.body.hands.relaxed_angles`; flexion std
  :data:`FLEX_STD_DEG`, spread std :data:`SPREAD_STD_DEG`) and soft anatomical limits
  (:data:`FLEX_LIMITS_DEG`),
* a prior on the wrist correction (std :data:`WRIST_STD_DEG`).

Hands without enough points keep the relaxed pose. Every hand is a separate problem, but all
people are solved in one batch (one model forward per step).
"""

from __future__ import annotations

import math

import torch

from ..body.base import POSE_JOINT_NAMES
from ..body.hands import hand_pose_from_angles, relaxed_angles
from .camera import Camera

__all__ = ["FLEX_LIMITS_DEG", "FLEX_STD_DEG", "SPREAD_STD_DEG", "WRIST_STD_DEG", "fit_hands"]

FLEX_STD_DEG = 30.0
SPREAD_STD_DEG = 10.0
WRIST_STD_DEG = 15.0
#: Flexion range per joint (degrees): slight hyperextension to a full fist.
FLEX_LIMITS_DEG = (-20.0, 100.0)
_WRISTS = (POSE_JOINT_NAMES.index("left_wrist"), POSE_JOINT_NAMES.index("right_wrist"))


def fit_hands(
    model,
    params: dict[str, torch.Tensor],
    obs: torch.Tensor,
    conf: torch.Tensor,
    camera: Camera,
    min_points: int = 6,
    sigma: float = 0.05,
    robust_c: float = 3.0,
    iterations: int = 40,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit finger angles (and a wrist correction) of every person's detected hands.

    Args:
        model: the body model (axis-angle hands, :meth:`~refsd.body.base.BodyModel.hand_axes`).
        params: the people's fitted parameters (``global_orient, body_pose, shape, transl`` of
            ``P`` people, any device/dtype).
        obs: ``(P, 2, 21, 2)`` pixel targets (left, right hand; OpenPose hand order).
        conf: ``(P, 2, 21)`` confidences (0 = missing).
        camera: the fit's camera.
        min_points: a hand is fitted when at least this many of its points are confident.

    Returns:
        ``hand_pose (P, 2, 15, 3)``, ``body_pose (P, 21, 3)`` (wrists corrected), and
        ``fitted (P, 2)`` bool (which hands were fitted; the others are relaxed).
    """
    axes = model.hand_axes()
    P = int(obs.shape[0])
    f64 = torch.float64
    body_pose = params["body_pose"].detach().to("cpu", f64).clone()
    fitted = (conf > 0).sum(-1) >= min_points  # (P, 2)
    if axes is None:  # no axis-angle hands (SMPL-X PCA / mean hands): the model's relaxed pose
        relaxed = model.relaxed_hand_pose(P)
        if relaxed is not None:
            relaxed = relaxed.detach().to("cpu", f64)
        return relaxed, body_pose, torch.zeros(P, 2, dtype=torch.bool)
    flex0, spread0 = relaxed_angles(axes)
    relaxed = hand_pose_from_angles(axes, flex0, spread0)
    if not bool(fitted.any()):
        return relaxed.expand(P, 2, 15, 3).clone(), body_pose, fitted

    dev, dt = model.device, model.dtype
    obs = obs.to(f64)
    w = conf.to(f64) * fitted[..., None].to(f64)
    pts = torch.where(w[..., None] > 0, obs, torch.nan)
    lo = torch.nan_to_num(pts, nan=math.inf).amin(2)
    hi = torch.nan_to_num(pts, nan=-math.inf).amax(2)
    size = (hi - lo).norm(dim=-1).nan_to_num(8.0).clamp_min(8.0)  # (P, 2)
    scale = w.sqrt() / (size[..., None] * sigma)

    flex = flex0.expand(P, 2, 5, 3).clone().requires_grad_(True)
    spread = spread0.expand(P, 2, 5).clone().requires_grad_(True)
    wrist = torch.zeros(P, 2, 3, dtype=f64, requires_grad=True)
    fixed = {k: params[k].detach().to(dev, dt) for k in ("global_orient", "shape", "transl")}
    f = torch.tensor([camera.fx, camera.fy], dtype=f64)
    c = torch.tensor([camera.cx, camera.cy], dtype=f64)
    lim_lo, lim_hi = (math.radians(x) for x in FLEX_LIMITS_DEG)
    k_flex, k_spread, k_wrist = (1 / math.radians(x) for x in (FLEX_STD_DEG, SPREAD_STD_DEG, WRIST_STD_DEG))
    mask = fitted.to(f64)

    def posed():
        import roma

        hp = hand_pose_from_angles(axes, flex, spread)
        hp = torch.where(fitted[..., None, None], hp, relaxed)
        bp = body_pose.clone()
        for s, j in enumerate(_WRISTS):
            r = roma.rotvec_to_rotmat(bp[:, j]) @ roma.rotvec_to_rotmat(wrist[:, s] * mask[:, s, None])
            bp = bp.index_copy(1, torch.tensor([j]), roma.rotmat_to_rotvec(r)[:, None])
        return hp, bp

    def closure():
        opt.zero_grad()
        hp, bp = posed()
        out = model(**fixed, body_pose=bp.to(dev, dt), hand_pose=hp.to(dev, dt))
        kp = out.hands.to("cpu", f64)  # (P, 2, 21, 3)
        z = kp[..., 2].clamp_min(1e-3)
        uv = kp[..., :2] / z[..., None] * f + c
        e2 = (((uv - obs.nan_to_num(0.0)) * scale[..., None]) ** 2).sum(-1)
        data = (robust_c**2 * e2 / (robust_c**2 + e2)).sum()
        prior = (((flex - flex0) * k_flex) ** 2 * mask[..., None, None]).sum()
        prior = prior + (((spread - spread0) * k_spread) ** 2 * mask[..., None]).sum()
        prior = prior + ((wrist * k_wrist) ** 2).sum()
        limits = ((torch.relu(flex - lim_hi) + torch.relu(lim_lo - flex)) * 100.0) ** 2
        loss = data + prior + limits.sum()
        loss.backward()
        return loss

    opt = torch.optim.LBFGS([flex, spread, wrist], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")
    opt.step(closure)
    with torch.no_grad():
        hp, bp = posed()
    return hp.detach(), bp.detach(), fitted

"""Rotations and forward kinematics of the 22-joint fitting skeleton.

The skeleton is SMPL's body tree: joint 0 is the root (pelvis, rotated by
``global_orient``), joints 1..21 are :data:`refsd.body.base.POSE_JOINT_NAMES` (rotated by
``body_pose``). Local rotations are expressed in the world-aligned axes of the rest pose,
as in SMPL: ``R_world[j] = R_world[parent[j]] @ R_local[j]``.
"""

from __future__ import annotations

import torch

__all__ = ["PARENTS", "axis_angle_to_matrix", "matrix_to_axis_angle", "rot_x", "rot_y", "forward_kinematics"]

#: parent of each of the 22 joints (root first), SMPL order.
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues: ``(..., 3)`` axis-angle -> ``(..., 3, 3)``; smooth (and exact) at zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)  # (...,1,1)
    small = theta2 < 1e-8
    theta2s = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2s.sqrt()
    # sin(t)/t and (1-cos(t))/t^2 with Taylor fall-backs
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2s)
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a * K + b * (K @ K)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation -> ``(..., 3)`` axis-angle (angle in [0, pi])."""
    R = R.to(torch.float64) if R.dtype != torch.float64 else R
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    cos = ((tr - 1) / 2).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    v = torch.stack((R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]), -1)
    sin = torch.sin(angle)
    out = v / (2 * sin.clamp_min(1e-12)).unsqueeze(-1) * angle.unsqueeze(-1)
    # near pi: axis from the diagonal
    near_pi = angle > 3.1
    if bool(near_pi.any()):
        diag = torch.stack((R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]), -1)
        axis = ((diag + 1) / 2).clamp_min(0).sqrt()
        # fix signs using off-diagonals relative to the largest component
        sx = torch.where(R[..., 0, 1] + R[..., 1, 0] >= 0, 1.0, -1.0).to(R.dtype)
        sz = torch.where(R[..., 0, 2] + R[..., 2, 0] >= 0, 1.0, -1.0).to(R.dtype)
        axis = torch.stack((axis[..., 0], axis[..., 1] * sx, axis[..., 2] * sz), -1)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = torch.where(near_pi.unsqueeze(-1), axis * angle.unsqueeze(-1), out)
    small = angle < 1e-6
    out = torch.where(small.unsqueeze(-1), v / 2, out)
    return out


def rot_x(angle: torch.Tensor | float, **kw) -> torch.Tensor:
    a = torch.as_tensor(angle, **kw)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack((o, z, z, z, c, -s, z, s, c), -1).reshape(*a.shape, 3, 3)


def rot_y(angle: torch.Tensor | float, **kw) -> torch.Tensor:
    a = torch.as_tensor(angle, **kw)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack((c, z, s, z, o, z, -s, z, c), -1).reshape(*a.shape, 3, 3)


def forward_kinematics(
    rest_joints: torch.Tensor, R_local: torch.Tensor, transl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World rotations and positions of the 22 joints.

    Args:
        rest_joints: ``(..., 22, 3)`` joint centres in the rest pose (root at any place).
        R_local: ``(..., 22, 3, 3)``; ``R_local[..., 0]`` is the global orientation.
        transl: ``(..., 3)``: where the root ends up.
    Returns:
        ``(R_world (...,22,3,3), p_world (...,22,3), offsets (...,22,3))`` where the LBS
        transform of joint j maps a rest point x to ``R_world[j] @ x + offsets[j]``.
    """
    Rw = [R_local[..., 0, :, :]]
    pw = [transl]
    for j in range(1, len(PARENTS)):
        p = PARENTS[j]
        Rw.append(Rw[p] @ R_local[..., j, :, :])
        bone = (rest_joints[..., j, :] - rest_joints[..., p, :]).unsqueeze(-1)
        pw.append(pw[p] + (Rw[p] @ bone).squeeze(-1))
    R_world = torch.stack(Rw, -3)
    p_world = torch.stack(pw, -2)
    offsets = p_world - (R_world @ rest_joints.unsqueeze(-1)).squeeze(-1)
    return R_world, p_world, offsets

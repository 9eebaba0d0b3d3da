"""A fast, exact-for-LBS keypoint model distilled from any :class:`~refsd.body.base.BodyModel`.

Fitting only needs the keypoints (BODY_25, hands, face), not the ~10-20k mesh vertices.
Under linear blend skinning every keypoint that is a linear function of the vertices (joint
regressors, vertex picks) is itself a blend of the 22 skeleton transforms::

    kp_k(pose) = sum_j  R_j(pose) @ q_kj[:3] + q_kj[3] * o_j(pose)

with ``(R_j, o_j)`` the LBS transform of joint ``j`` (:func:`forward_kinematics`) and fixed
4-vectors ``q_kj``. We recover ``q`` by least squares from a few dozen random poses of the
real model, so the proxy works for every backend without touching its internals. Shape is
handled by linearising ``q`` and the rest joints in the shape vector around a centre shape.
The fit residual of the distillation is kept (``rms_mm``) so a backend whose keypoints are
not LBS-linear is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kinematics import axis_angle_to_matrix, forward_kinematics

__all__ = ["KeypointProxy", "build_proxy"]


def _keypoint_stack(out, model) -> tuple[torch.Tensor, torch.Tensor, dict[str, slice]]:
    """Concatenate body25 (+ hands, face) points of a BodyOutput; return points, valid, slices."""
    parts = [("body25", out.body25, out.kp_valid["body25"])]
    if out.hands is not None:
        parts.append(("hand_left", out.hands[:, 0], out.kp_valid["hands"][0]))
        parts.append(("hand_right", out.hands[:, 1], out.kp_valid["hands"][1]))
    if out.face is not None:
        parts.append(("face", out.face, out.kp_valid["face"]))
    slices, start = {}, 0
    for name, pts, _ in parts:
        slices[name] = slice(start, start + pts.shape[1])
        start += pts.shape[1]
    pts = torch.cat([p for _, p, _ in parts], 1)
    valid = torch.cat([v.reshape(-1) for _, _, v in parts], 0)
    return pts, valid, slices


@dataclass
class KeypointProxy:
    """Keypoints as a linear function of the skeleton transforms (and of the shape).

    ``rest_joints(shape)`` and ``q(shape)`` are affine in ``shape``:
    ``J = J0 + dJ @ (shape - shape0)``, ``q = q0 + dq @ (shape - shape0)``.
    """

    shape0: torch.Tensor  # (S,)
    J0: torch.Tensor  # (22, 3)
    dJ: torch.Tensor  # (S, 22, 3)
    q0: torch.Tensor  # (K, 22, 4)
    dq: torch.Tensor  # (S, K, 22, 4)
    valid: torch.Tensor  # (K,) bool
    slices: dict[str, slice]
    rms_mm: float

    @property
    def num_keypoints(self) -> int:
        return int(self.q0.shape[0])

    def subset(self, idx: torch.Tensor) -> KeypointProxy:
        """A proxy for the keypoints ``idx`` only (cheaper when e.g. no hands were detected)."""
        return KeypointProxy(
            self.shape0, self.J0, self.dJ, self.q0[idx], self.dq[:, idx], self.valid[idx], {}, self.rms_mm
        )

    def rest_joints(self, shape: torch.Tensor) -> torch.Tensor:
        ds = shape - self.shape0
        return self.J0 + torch.einsum("...s,sjc->...jc", ds, self.dJ)

    def weights(self, shape: torch.Tensor) -> torch.Tensor:
        ds = shape - self.shape0
        return self.q0 + torch.einsum("...s,skjc->...kjc", ds, self.dq)

    def keypoints(self, R_local: torch.Tensor, transl: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """``R_local (...,22,3,3)``, ``transl (...,3)``, ``shape (...,S)`` -> ``(..., K, 3)``."""
        return self.components(R_local, transl, shape)[0].sum(-2)

    def components(self, R_local: torch.Tensor, transl: torch.Tensor, shape: torch.Tensor):
        """Per-joint contributions to each keypoint, for analytic Jacobians.

        Returns ``c (...,K,22,3)`` (keypoint k = sum over joints of c), ``w (...,K,22)`` (the
        translation weights q[..., 3]), ``p_world (...,22,3)`` and ``R_world (...,22,3,3)``.
        """
        J = self.rest_joints(shape)
        Rw, pw, off = forward_kinematics(J, R_local, transl)
        q = self.weights(shape)
        if q.dim() == 3:
            q = q.expand(*Rw.shape[:-3], *q.shape)
        c = torch.einsum("...jab,...kjb->...kja", Rw, q[..., :3]) + q[..., 3:4] * off.unsqueeze(-3)
        return c, q[..., 3], pw, Rw


def _solve_q(model, shape: torch.Tensor, n_poses: int, generator: torch.Generator, sampler=None):
    """Distil q and rest joints for one shape. Returns (J (22,3), q (K,22,4), valid, slices, rms)."""
    dev, dt = model.device, model.dtype
    B = n_poses
    params = model.zero_params(B)
    params["shape"] = shape.to(dev, dt).expand(B, -1).clone()
    # random poses that excite every joint's transform over its range; the first one is the rest pose
    if sampler is not None:
        body_pose = sampler(B, generator).to(dev, dt)
    else:
        body_pose = torch.randn(B, model.num_pose_joints, 3, generator=generator) * 0.45
    body_pose[0] = 0.0
    body_pose = body_pose.to(dev, dt)
    glob = (torch.randn(B, 3, generator=generator) * 0.6).to(dev, dt)
    glob[0] = 0
    params["body_pose"], params["global_orient"] = body_pose, glob
    relaxed = model.relaxed_hand_pose(B)  # the hands the fit renders when no finger is fitted
    if relaxed is not None:
        params["hand_pose"] = relaxed
    with torch.no_grad():
        out = model(**params)
    pts, valid, slices = _keypoint_stack(out, model)
    J = out.pose_joints[0].to(torch.float64)  # rest pose, transl 0
    R_local = axis_angle_to_matrix(torch.cat([glob[:, None], body_pose], 1).to(torch.float64))
    Rw, _pw, off = forward_kinematics(J.expand(B, -1, -1), R_local, torch.zeros(B, 3, dtype=torch.float64, device=dev))
    # design matrix: for each pose n and coordinate a, columns (j, b) with b in xyz1
    A = torch.cat([Rw, off.unsqueeze(-1)], -1)  # (B, 22, 3, 4): kp_a = sum_j sum_b A[n,j,a,b] q[j,b]
    A = A.permute(0, 2, 1, 3).reshape(B * 3, 22 * 4)
    Y = pts.to(torch.float64).permute(0, 2, 1).reshape(B * 3, -1)  # (B*3, K)
    # ridge towards zero weights, plus partition of unity of the translation weights (sum_j q_j3 = 1)
    lam = 1e-6
    AtA = A.T @ A + lam * torch.eye(88, dtype=torch.float64, device=dev)
    ones = torch.zeros(88, dtype=torch.float64, device=dev)
    ones[3::4] = 1.0
    w_pou = 10.0
    AtA = AtA + w_pou * torch.outer(ones, ones)
    AtY = A.T @ Y + w_pou * ones[:, None]
    q = torch.linalg.solve(AtA, AtY)  # (88, K)
    pred = A @ q
    rms = float(((pred - Y) ** 2).mean().sqrt()) * 1000.0
    return J, q.T.reshape(-1, 22, 4), valid.cpu(), slices, rms


def build_proxy(
    model,
    shape0: torch.Tensor | None = None,
    n_poses: int = 96,
    shape_step: float = 0.1,
    seed: int = 0,
    sampler=None,
) -> KeypointProxy:
    """Distil a :class:`KeypointProxy` from ``model`` around ``shape0`` (default: its default shape).

    ``sampler(n, generator) -> (n, 21, 3)`` draws the body poses used for the distillation;
    they should cover the poses the fitter will visit (e.g. uniform within joint limits).
    """
    g = torch.Generator().manual_seed(seed)
    s0 = (model.default_shape(1)[0] if shape0 is None else shape0).to(torch.float64).cpu()
    J0, q0, valid, slices, rms = _solve_q(model, s0, n_poses, g, sampler)
    S = s0.shape[0]
    dJ = torch.zeros(S, *J0.shape, dtype=torch.float64, device=J0.device)
    dq = torch.zeros(S, *q0.shape, dtype=torch.float64, device=q0.device)
    try:
        lo, hi = model.shape_bounds()
        lo, hi = lo.to(torch.float64).cpu(), hi.to(torch.float64).cpu()
    except NotImplementedError:
        lo = hi = None
    for s in range(S):
        step = shape_step
        if lo is not None:
            step = float(shape_step * (hi[s] - lo[s])) or shape_step
        sp, sm = s0.clone(), s0.clone()
        sp[s] += step
        sm[s] -= step
        g2 = torch.Generator().manual_seed(seed)
        Jp, qp, *_ = _solve_q(model, sp, n_poses, g2, sampler)
        g2 = torch.Generator().manual_seed(seed)
        Jm, qm, *_ = _solve_q(model, sm, n_poses, g2, sampler)
        dJ[s] = (Jp - Jm) / (2 * step)
        dq[s] = (qp - qm) / (2 * step)
    return KeypointProxy(s0.to(J0.device), J0, dJ, q0, dq, valid, slices, rms)

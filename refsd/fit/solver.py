"""The residuals, analytic Jacobian and batched Levenberg-Marquardt of :class:`~refsd.fit.fitter.BodyFitter`.

Levenberg-Marquardt on (root rotation, 21 anatomical joint angles, translation, shape) for
all hypotheses of all people at once, on the distilled keypoint proxy (:mod:`.proxy`): a
robust (Geman-McClure, IRLS) confidence-weighted reprojection term normalised by the
person's 2D size, the anatomical pose prior and soft joint limits of :mod:`.prior`, a shape
prior inside the model's shape bounds, and a positive-depth barrier. The Jacobian is
analytic (SO(3) right Jacobians through the kinematic tree) except for shape (central
differences). :class:`LMSolver` is a mixin: it reads the fitter's ``options``, ``prior``,
``proxy``, ``shape_lo`` / ``shape_hi``, and ``_active`` (the proxy restricted to the keypoints
someone has) and ``_mu`` (each hypothesis's pose-family mean) set for a fit, and ``_wprior``
(None: ``options.w_prior`` for every hypothesis; a (B,) tensor: each hypothesis's own weight, e.g.
a video frame pulled towards the previous frame's pose, :mod:`.video`).
"""

from __future__ import annotations

import math

import torch

from .camera import Camera
from .kinematics import PARENTS, axis_angle_to_matrix

__all__ = ["LMSolver"]

D5 = math.radians(5.0)


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), -1).reshape(*v.shape, 3)


def _right_jacobian(v: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian: exp(v + dv) ~= exp(v) exp(J_r(v) dv)."""
    th2 = (v * v).sum(-1)[..., None, None]
    small = th2 < 1e-8
    th2s = torch.where(small, torch.ones_like(th2), th2)
    th = th2s.sqrt()
    a = torch.where(small, 0.5 - th2 / 24.0, (1 - torch.cos(th)) / th2s)
    b = torch.where(small, 1.0 / 6.0 - th2 / 120.0, (th - torch.sin(th)) / (th2s * th))
    K = _skew(v)
    eye = torch.eye(3, dtype=v.dtype).expand(K.shape)
    return eye - a * K + b * (K @ K)


class LMSolver:
    """Residuals, Jacobian and the Levenberg-Marquardt loop, mixed into :class:`~refsd.fit.fitter.BodyFitter`."""

    def _setup_eval(self, cam: Camera):
        """Precompute what :meth:`_eval` needs for one camera."""
        proxy = self.proxy
        D = torch.zeros(22, 22, dtype=torch.float64)  # D[j, k] = 1 if joint k is in the subtree of j
        for k in range(22):
            j = k
            while j >= 0:
                D[j, k] = 1.0
                j = PARENTS[j]
        self._D = D
        self._f = torch.tensor([cam.fx, cam.fy], dtype=torch.float64)
        self._c = torch.tensor([cam.cx, cam.cy], dtype=torch.float64)
        self._half = (self.shape_hi - self.shape_lo).clamp_min(1e-6) / 2
        del proxy

    def _kp(self, R_root, alpha, t, beta):
        v = self.prior.to_rotvec(alpha)
        R_loc = torch.cat([R_root[:, None], axis_angle_to_matrix(v)], 1)
        return self._active.components(R_loc, t, beta), v

    def _eval(self, R_root, alpha, t, beta, obs, sw, need_jac: bool, fit_shape: bool = True):
        """Residuals (B, R) and, if asked, the Jacobian (B, R, n) w.r.t. (root delta, alpha, t, beta).

        ``sw`` (B, K) scales each keypoint's reprojection residual (confidence, robust weight,
        1 / (size * sigma)).
        """
        opt, prior, proxy = self.options, self.prior, self.proxy
        B, K = obs.shape[:2]
        S = beta.shape[1] if fit_shape else 0
        (c, wq, pw, Rw), v = self._kp(R_root, alpha, t, beta)
        kp = c.sum(-2)  # (B,K,3)
        z = kp[..., 2].clamp_min(1e-3)
        xy = kp[..., :2] / z[..., None]
        uv = xy * self._f + self._c
        r_proj = ((uv - obs) * sw[..., None]).reshape(B, -1)
        over_hi, over_lo = alpha - prior.hi, prior.lo - alpha
        wp = getattr(self, "_wprior", None)
        wp = torch.full((B,), float(opt.w_prior), dtype=torch.float64) if wp is None else wp
        r_prior = torch.cat(
            [((alpha - self._mu) / prior.std * wp[:, None, None]).reshape(B, -1),
             ((torch.relu(over_hi) + torch.relu(over_lo)) * (10.0 / D5)).reshape(B, -1)], 1
        )
        half = self._half
        b_hi, b_lo = beta - self.shape_hi, self.shape_lo - beta
        r_depth = torch.relu(0.5 - kp[..., 2]) * 100.0
        if fit_shape:
            r_shape = (beta - proxy.shape0) / half * opt.w_shape
            r_bound = (torch.relu(b_hi) + torch.relu(b_lo)) / half * 30.0
            r = torch.cat([r_proj, r_prior, r_shape, r_bound, r_depth], 1)
        else:
            r = torch.cat([r_proj, r_prior, r_depth], 1)
        if not need_jac:
            return r, None
        n = 3 + 63 + 3 + S
        # d kp / d theta  (B, K, 3, n)
        Csub = torch.einsum("jk,bnkc->bnjc", self._D, c)
        Wsub = torch.einsum("jk,bnk->bnj", self._D, wq)
        vv = Csub - Wsub[..., None] * pw[:, None]  # (B,K,22,3)
        M = -_skew(vv) @ Rw[:, None]  # (B,K,22,3,3): d kp / d (local right perturbation of joint j)
        G = _right_jacobian(v) @ prior.frames  # (B,21,3,3)
        dk = torch.empty(B, K, 3, n, dtype=torch.float64)
        dk[..., 0:3] = M[:, :, 0]
        dk[..., 3:66] = (M[:, :, 1:] @ G[:, None]).permute(0, 1, 3, 2, 4).reshape(B, K, 3, 63)
        dk[..., 66:69] = wq.sum(-1)[..., None, None] * torch.eye(3, dtype=torch.float64)
        if S:
            h = 1e-4
            eye = torch.eye(S, dtype=torch.float64) * h
            bp = (beta[:, None] + eye).reshape(B * S, S)
            bm = (beta[:, None] - eye).reshape(B * S, S)
            rep = lambda x: x.repeat_interleave(S, 0)  # noqa: E731
            kpp = self._kp(rep(R_root), rep(alpha), rep(t), bp)[0][0].sum(-2)
            kpm = self._kp(rep(R_root), rep(alpha), rep(t), bm)[0][0].sum(-2)
            dk[..., 69:] = ((kpp - kpm) / (2 * h)).reshape(B, S, K, 3).permute(0, 2, 3, 1)
        # projection
        fz = self._f / z[..., None]  # (B,K,2)
        P = torch.zeros(B, K, 2, 3, dtype=torch.float64)
        P[..., 0, 0] = fz[..., 0]
        P[..., 1, 1] = fz[..., 1]
        P[..., :, 2] = -fz * xy
        Jp = (P @ dk) * sw[..., None, None]  # (B,K,2,n)
        Jprior = torch.zeros(B, 126, n, dtype=torch.float64)
        idx = torch.arange(63)
        Jprior[:, idx, 3 + idx] = wp[:, None] / prior.std.reshape(1, -1)
        lim = ((over_hi > 0).double() - (over_lo > 0).double()).reshape(B, 63) * (10.0 / D5)
        Jprior[:, 63 + idx, 3 + idx] = lim
        Jdepth = -100.0 * (kp[..., 2] < 0.5).double()[..., None] * dk[..., 2, :]
        if fit_shape:
            Jshape = torch.zeros(B, 2 * S, n, dtype=torch.float64)
            sidx = torch.arange(S)
            Jshape[:, sidx, 69 + sidx] = opt.w_shape / half
            Jshape[:, S + sidx, 69 + sidx] = ((b_hi > 0).double() - (b_lo > 0).double()) / half * 30.0
            Jm = torch.cat([Jp.reshape(B, 2 * K, n), Jprior, Jshape, Jdepth], 1)
        else:
            Jm = torch.cat([Jp.reshape(B, 2 * K, n), Jprior, Jdepth], 1)
        return r, Jm

    def _lm(self, R, A, T, Bt, OBS, SW, iterations, fit_shape, progress, done=0, total=0):
        """Batched Levenberg-Marquardt with IRLS (Geman-McClure) reprojection weights."""
        opt = self.options
        B, K = OBS.shape[:2]
        c2 = opt.robust_c**2
        lam = torch.full((B,), 1e-3, dtype=torch.float64)

        def robust_scale(r):
            e2 = (r[:, : 2 * K].reshape(B, K, 2) ** 2).sum(-1)
            return c2 / (c2 + e2)  # sqrt of the IRLS weight c^4 / (c^2 + e^2)^2

        r, _ = self._eval(R, A, T, Bt, OBS, SW, False, fit_shape)
        for it in range(iterations):
            SWr = SW * robust_scale(r)
            r, Jm = self._eval(R, A, T, Bt, OBS, SWr, True, fit_shape)
            cost = (r**2).sum(1)
            JtJ = Jm.transpose(1, 2) @ Jm
            g = (Jm.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
            diag = torch.diagonal(JtJ, dim1=1, dim2=2).clamp_min(1e-9)
            for _ in range(3):
                step = -torch.linalg.solve(JtJ + torch.diag_embed(lam[:, None] * diag + 1e-9), g)
                Rn = R @ axis_angle_to_matrix(step[:, :3])
                An = A + step[:, 3:66].reshape(B, 21, 3)
                Tn = T + step[:, 66:69]
                Bn = Bt + step[:, 69:] if fit_shape else Bt
                rn, _ = self._eval(Rn, An, Tn, Bn, OBS, SWr, False, fit_shape)
                cn = (rn**2).sum(1)
                better = cn < cost
                bm = better[:, None]
                R = torch.where(better[:, None, None], Rn, R)
                A = torch.where(better[:, None, None], An, A)
                T = torch.where(bm, Tn, T)
                Bt = torch.where(bm, Bn, Bt)
                cost = torch.where(better, cn, cost)
                lam = torch.where(better, (lam / 5).clamp_min(1e-9), (lam * 8).clamp_max(1e9))
                if bool(better.all()):
                    break
            r, _ = self._eval(R, A, T, Bt, OBS, SW, False, fit_shape)
            if progress is not None:
                progress(done + it + 1, total)
        # final robust cost, comparable across hypotheses
        e2 = (r[:, : 2 * K].reshape(B, K, 2) ** 2).sum(-1)
        final = (c2 * e2 / (c2 + e2)).sum(1) + (r[:, 2 * K :] ** 2).sum(1)
        return R, A, T, Bt, final

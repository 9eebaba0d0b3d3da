"""Fit a body model to each person's 2D keypoints (all people of an image batched).

Method (batched Levenberg-Marquardt on a distilled keypoint proxy, see :mod:`.proxy`):

1. **Camera** from the image size: a centred pinhole with ``fov_deg`` (default
   :data:`DEFAULT_FOV_DEG` = 60 degrees across the larger image side), overridable.
2. **Start hypotheses** per person: 8 yaws (every 45 deg, so both the front and the back
   view are tried) x 4 pose families (mean standing pose, sitting, bending, arms raised).
   Depth is initialised from the ratio of 3D to 2D limb/torso lengths (the least
   foreshortened one), x/y by back-projecting the 2D hip/torso centre.
3. **Levenberg-Marquardt** on (root rotation, 21 anatomical joint angles, translation,
   shape) for all hypotheses of all people at once: a robust (Geman-McClure, IRLS)
   confidence-weighted reprojection term normalised by the person's 2D size, the anatomical
   pose prior and soft joint limits of :mod:`.prior`, a shape prior inside the model's
   shape bounds, and a positive-depth barrier. Missing or low-confidence keypoints carry
   zero weight; they are never treated as (0, 0).
4. The hypothesis with the lowest total cost wins; the result is re-evaluated with the
   real body model (not the proxy) for the reported reprojection error.

Hands and face keypoints are used when present (lower weights). The optional person mask
down-weights keypoints that fall outside it (likely detector mistakes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..keypoints import FrameKeypoints, PersonKeypoints
from ..render.camera import Camera
from .kinematics import PARENTS, axis_angle_to_matrix, matrix_to_axis_angle, rot_x, rot_y
from .prior import PosePrior, build_prior
from .proxy import KeypointProxy, build_proxy
from .result import BodyFit, FitError, PersonFit

__all__ = ["FitOptions", "BodyFitter", "DEFAULT_FOV_DEG"]

DEFAULT_FOV_DEG = 60.0


@dataclass
class FitOptions:
    fov_deg: float = DEFAULT_FOV_DEG
    yaws: int = 8
    families: tuple[str, ...] = ("mean", "sit", "crouch", "bend", "arms_up")
    iterations_search: int = 10  # LM iterations over all start hypotheses (pose only)
    survivors: int = 12  # hypotheses per person kept after the first half of the search
    keep_hypotheses: int = 3  # per person, refined further with shape
    iterations: int = 15
    min_confidence: float = 0.3
    min_joints: int = 4
    sigma: float = 0.02  # reprojection noise as a fraction of the person's 2D size
    robust_c: float = 5.0  # Geman-McClure scale (in sigmas)
    w_prior: float = 1.0
    w_shape: float = 3.0  # shape prior: std = (bound range / 2) / w_shape, keeps the proxy linearisation valid
    w_hands: float = 0.5
    w_face: float = 0.3
    fit_shape: bool = True
    fit_hands: bool = True  # fit finger angles to hand keypoints where a hand has >= min_hand_points
    min_hand_points: int = 6
    good_reproj_fraction: float = 0.06  # "good" if RMS reprojection <= this x person size


def _person_targets(p: PersonKeypoints, proxy: KeypointProxy, min_conf: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,2) pixel targets and (K,) confidences in the proxy's keypoint order (NaN -> 0 weight)."""
    K = proxy.num_keypoints
    obs = torch.zeros(K, 2, dtype=torch.float64)
    conf = torch.zeros(K, dtype=torch.float64)

    def put(name: str, pts):
        if pts is None or name not in proxy.slices:
            return
        sl = proxy.slices[name]
        n = sl.stop - sl.start
        a = torch.as_tensor(pts[:n], dtype=torch.float64)
        ok = torch.isfinite(a[:, 0]) & torch.isfinite(a[:, 1]) & (a[:, 2] >= min_conf)
        obs[sl][ok] = a[ok, :2]
        conf[sl][ok] = a[ok, 2].clamp(0, 1)

    put("body25", p.body25)
    put("hand_left", p.hand_left)
    put("hand_right", p.hand_right)
    put("face", p.face)
    conf = conf * proxy.valid.to(torch.float64)
    return obs, conf


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


def _mask_weights(obs: torch.Tensor, conf: torch.Tensor, mask) -> torch.Tensor:
    """Person-mask term: keypoints that fall outside the (union) person mask are most likely
    detector mistakes (background or another person); their weight is cut to 10%."""
    m = torch.as_tensor(mask, dtype=torch.float64).cpu()
    if m.dim() == 3:
        m = m[0]
    H, W = m.shape
    x = obs[:, 0].floor().long().clamp(0, W - 1)
    y = obs[:, 1].floor().long().clamp(0, H - 1)
    outside = (m[y, x] < 0.5) & (conf > 0)
    return torch.where(outside, conf * 0.1, conf)


# BODY_25 index pairs for the depth initialisation (torso, shoulders, hips, limbs)
_SCALE_PAIRS = ((1, 8), (2, 5), (9, 12), (2, 3), (5, 6), (3, 4), (6, 7), (9, 10), (12, 13), (10, 11), (13, 14))


class BodyFitter:
    """Fits one body model. Build once per model (distils the keypoint proxy, ~seconds)."""

    def __init__(self, model, options: FitOptions | None = None, shape0: torch.Tensor | None = None):
        """``shape0``: the shape the fit starts from and is regularised towards (default: the
        model's default shape; e.g. ``AnnyBody.shape_from(gender=1.0)`` for women)."""
        self.model = model
        self.options = options or FitOptions()
        with torch.no_grad():
            rest = model(**model.zero_params(1)).pose_joints[0]
        self.prior: PosePrior = build_prior(rest)
        s0 = None if shape0 is None else torch.as_tensor(shape0).reshape(-1)
        self.proxy: KeypointProxy = build_proxy(model, shape0=s0, sampler=self.prior.sample_rotvec)
        try:
            lo, hi = model.shape_bounds()
            self.shape_lo = lo.to(torch.float64).cpu()
            self.shape_hi = hi.to(torch.float64).cpu()
        except NotImplementedError:
            S = self.proxy.shape0.shape[0]
            self.shape_lo = torch.full((S,), -3.0, dtype=torch.float64)
            self.shape_hi = torch.full((S,), 3.0, dtype=torch.float64)
        # move proxy/prior tensors to cpu float64 (the LM runs there; it is tiny)
        for obj in (self.proxy, self.prior):
            for k, v in vars(obj).items():
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    setattr(obj, k, v.detach().to("cpu", torch.float64))

    # ------------------------------------------------------------------ camera
    def camera_for(self, width: int, height: int, camera: Camera | None = None) -> Camera:
        return camera if camera is not None else Camera.from_fov(width, height, self.options.fov_deg)

    # ------------------------------------------------------------------ residuals
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
        r_prior = torch.cat(
            [((alpha - self._mu) / prior.std * opt.w_prior).reshape(B, -1),
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
        Jprior[:, idx, 3 + idx] = (opt.w_prior / prior.std).reshape(-1)
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

    # ------------------------------------------------------------------ init
    def _init_translation(self, obs, conf, cam: Camera) -> torch.Tensor:
        """(3,) camera-space root position from limb-length ratios."""
        J25 = self._rest_body25()
        ratios = []
        for a, b in _SCALE_PAIRS:
            if conf[a] > 0 and conf[b] > 0:
                l2 = float((obs[a] - obs[b]).norm())
                l3 = float((J25[a] - J25[b]).norm())
                if l3 > 0.05 and l2 > 1.0:
                    ratios.append(l2 / l3)
        fpx = (cam.fx + cam.fy) / 2
        if ratios:
            ratios.sort()
            r = ratios[-2] if len(ratios) >= 4 else ratios[-1]  # robust max
            z = fpx / r
        else:
            ok = conf[:25] > 0
            pts = obs[:25][ok]
            extent = float((pts.max(0).values - pts.min(0).values).norm()) if len(pts) > 1 else 50.0
            z = fpx * 1.0 / max(extent, 1.0)
        z = float(min(max(z, 0.6), 200.0))
        # 2D centre: mid-hip, else mean of confident body points
        if conf[8] > 0:
            uv = obs[8]
        elif conf[9] > 0 and conf[12] > 0:
            uv = (obs[9] + obs[12]) / 2
        else:
            ok = conf[:25] > 0
            uv = obs[:25][ok].mean(0)
        x = (float(uv[0]) - cam.cx) / cam.fx * z
        y = (float(uv[1]) - cam.cy) / cam.fy * z
        return torch.tensor([x, y, z], dtype=torch.float64)

    def _rest_body25(self) -> torch.Tensor:
        if not hasattr(self, "_rest25"):
            R = torch.eye(3, dtype=torch.float64).expand(22, 3, 3)
            kp = self.proxy.keypoints(R, torch.zeros(3, dtype=torch.float64), self.proxy.shape0)
            self._rest25 = kp[self.proxy.slices["body25"]]
        return self._rest25

    # ------------------------------------------------------------------ main
    def fit_frame(
        self,
        frame: FrameKeypoints,
        camera: Camera | None = None,
        mask=None,
        progress: Callable[[int, int], None] | None = None,
    ) -> BodyFit:
        """Fit every person of one keypoint frame (already in the image's pixels)."""
        opt = self.options
        W, H = frame.image_size
        if W <= 0 or H <= 0:
            raise FitError(f"image size {frame.image_size} is invalid; pass the image's (width, height).")
        cam = self.camera_for(W, H, camera)
        fit = BodyFit(
            model_id=self.model.model_id,
            image_width=int(W),
            image_height=int(H),
            camera={"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy},
            skipped=[list(s) for s in frame.skipped],
            warnings=list(frame.warnings),
            shape_names=list(getattr(self.model, "shape_names", ())),
        )
        people = []
        for p in frame.people:
            obs, conf = _person_targets(p, self.proxy, opt.min_confidence)
            if mask is not None:
                conf = _mask_weights(obs, conf, mask)
            body_ok = int((conf[:25] > 0).sum())
            if body_ok < opt.min_joints:
                fit.skipped.append([p.index, f"only {body_ok} confident body keypoints (need {opt.min_joints})"])
                fit.warnings.append(
                    f"person {p.index} skipped: only {body_ok} confident body keypoints; at least {opt.min_joints} "
                    "are needed to fit a body"
                )
                continue
            people.append((p, obs, conf))
        if not people:
            return fit
        results = self._fit_people(people, cam, mask, progress)
        fit.people = results
        return fit

    def _fit_people(self, people, cam: Camera, mask, progress) -> list[PersonFit]:
        opt = self.options
        proxy, prior = self.proxy, self.prior
        self._setup_eval(cam)
        flip = rot_x(math.pi, dtype=torch.float64)
        R0s, A0s, T0s, OBS, SW, SIZE, owner = [], [], [], [], [], [], []
        for pi, (_p, obs, conf) in enumerate(people):
            t0 = self._init_translation(obs, conf, cam)
            body = conf[:25] > 0
            pts = obs[:25][body]
            size = float((pts.max(0).values - pts.min(0).values).norm()) if len(pts) > 1 else 50.0
            size = max(size, 8.0)
            w = conf.clone()
            if "hand_left" in proxy.slices:
                w[proxy.slices["hand_left"].start : proxy.slices["hand_right"].stop] *= opt.w_hands
            if "face" in proxy.slices:
                w[proxy.slices["face"]] *= opt.w_face
            sw = w.sqrt() / (size * opt.sigma)
            for family in opt.families:
                alpha0 = prior.init_alpha(1, family)[0]
                for yi in range(opt.yaws):
                    yaw = 2 * math.pi * yi / opt.yaws
                    R0s.append(flip @ rot_y(torch.tensor(yaw, dtype=torch.float64)))
                    A0s.append(alpha0)
                    T0s.append(t0)
                    OBS.append(obs)
                    SW.append(sw)
                    SIZE.append(size)
                    owner.append(pi)
        R, A, T = torch.stack(R0s), torch.stack(A0s), torch.stack(T0s)
        # mixture prior: each hypothesis is regularised towards its own pose family's mean
        self._mu = A.clone()
        OBS, SW = torch.stack(OBS), torch.stack(SW)
        # only keypoints someone actually has (e.g. drop the 42 hand points when no hands were detected)
        active = torch.nonzero(SW.sum(0) > 0).squeeze(1)
        self._active = proxy.subset(active)
        OBS, SW = OBS[:, active], SW[:, active]
        Bt = torch.zeros(len(owner), proxy.shape0.shape[0], dtype=torch.float64) + proxy.shape0
        owner_t = torch.tensor(owner)
        SIZE = torch.tensor(SIZE, dtype=torch.float64)
        total = opt.iterations_search + opt.iterations
        def best_per_person(cost, n):
            keep = []
            for pi in range(len(people)):
                idx = torch.nonzero(owner_t == pi).squeeze(1)
                keep.append(idx[torch.argsort(cost[idx])[:n]])
            return torch.cat(keep)

        # stage 1: every hypothesis, pose only; successive halving of the hypotheses
        done = 0
        for iters, n_keep in ((opt.iterations_search // 2, opt.survivors), (opt.iterations_search - opt.iterations_search // 2, opt.keep_hypotheses)):
            R, A, T, Bt, cost = self._lm(R, A, T, Bt, OBS, SW, iters, False, progress, done, total)
            done += iters
            keep = best_per_person(cost, n_keep)
            R, A, T, Bt, OBS, SW = R[keep], A[keep], T[keep], Bt[keep], OBS[keep], SW[keep]
            self._mu = self._mu[keep]
            owner_t, SIZE = owner_t[keep], SIZE[keep]
        # stage 2: the best few hypotheses per person, pose and shape
        R, A, T, Bt, cost = self._lm(
            R, A, T, Bt, OBS, SW, opt.iterations, opt.fit_shape, progress, opt.iterations_search, total
        )
        bests = []
        for pi in range(len(people)):
            idx = torch.nonzero(owner_t == pi).squeeze(1)
            bests.append(idx[torch.argmin(cost[idx])])
        best_t = torch.stack(bests)
        hand_pose, body_poses = self._fit_hands(people, R[best_t], prior.to_rotvec(A[best_t]), Bt[best_t], T[best_t], cam)
        out = []
        for pi, (p, obs, conf) in enumerate(people):
            best = bests[pi]
            glob = matrix_to_axis_angle(R[best])
            body_pose = body_poses[pi]
            shape, t = Bt[best], T[best]
            reproj = self._reproj_error(glob, body_pose, shape, t, obs, conf, cam)
            quality = "good" if reproj <= opt.good_reproj_fraction * float(SIZE[best]) else "poor"
            out.append(
                PersonFit(
                    global_orient=glob, body_pose=body_pose, shape=shape, transl=t, reproj_error_px=reproj,
                    quality=quality, keypoint_index=p.index, num_keypoints=int((conf > 0).sum()),
                    hand_pose=None if hand_pose is None else hand_pose[pi].tolist(),
                )
            )
        return out

    def _fit_hands(self, people, R, body_pose, shape, transl, cam: Camera):
        """Finger angles per person: fitted to the hand keypoints where there are enough
        (:func:`.hands.fit_hands`), the relaxed hand otherwise. Returns ``(hand_pose (P, 2, 15, 3)
        or None, body_pose (P, 21, 3))`` (the wrists are corrected where a hand was fitted)."""
        m, opt = self.model, self.options
        if m.hand_pose_shape is None:
            return None, body_pose
        P = len(people)
        obs = torch.zeros(P, 2, 21, 2, dtype=torch.float64)
        conf = torch.zeros(P, 2, 21, dtype=torch.float64)
        sl = self.proxy.slices
        if opt.fit_hands and "hand_left" in sl:
            for pi, (_p, o, c) in enumerate(people):
                for s, name in enumerate(("hand_left", "hand_right")):
                    obs[pi, s], conf[pi, s] = o[sl[name]], c[sl[name]]
        from .hands import fit_hands

        params = {"global_orient": matrix_to_axis_angle(R), "body_pose": body_pose, "shape": shape, "transl": transl}
        hand_pose, body_pose, _fitted = fit_hands(m, params, obs, conf, cam, min_points=opt.min_hand_points)
        return hand_pose, body_pose

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

    def _reproj_error(self, glob, body_pose, shape, t, obs, conf, cam: Camera) -> float:
        m = self.model
        with torch.no_grad():
            params = m.zero_params(1)
            params.update(
                global_orient=glob[None].to(m.device, m.dtype),
                body_pose=body_pose[None].to(m.device, m.dtype),
                shape=shape[None].to(m.device, m.dtype),
                transl=t[None].to(m.device, m.dtype),
            )
            out = m(**params)
        from .proxy import _keypoint_stack

        pts, _valid, _ = _keypoint_stack(out, m)
        pts = pts[0].to(torch.float64).cpu()
        uv = torch.stack([cam.fx * pts[:, 0] / pts[:, 2] + cam.cx, cam.fy * pts[:, 1] / pts[:, 2] + cam.cy], -1)
        ok = conf[:25] > 0  # report over body keypoints
        if not bool(ok.any()):
            return float("nan")
        d = (uv[:25][ok] - obs[:25][ok]).norm(dim=-1)
        return float((d**2).mean().sqrt())

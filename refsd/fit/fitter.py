"""Fit a body model to each person's 2D keypoints (all people of an image batched).

Method (batched Levenberg-Marquardt on a distilled keypoint proxy, see :mod:`.proxy`):

1. **Camera** from the image size: a centred pinhole with ``fov_deg`` (default
   :data:`DEFAULT_FOV_DEG` = 60 degrees across the larger image side), overridable.
2. **Start hypotheses** per person: 8 yaws (every 45 deg, so both the front and the back
   view are tried) x 4 pose families (mean standing pose, sitting, bending, arms raised).
   Depth is initialised from the ratio of 3D to 2D limb/torso lengths (the least
   foreshortened one), x/y by back-projecting the 2D hip/torso centre (:mod:`.start`).
3. **Levenberg-Marquardt** on (root rotation, 21 anatomical joint angles, translation,
   shape) for all hypotheses of all people at once: a robust (Geman-McClure, IRLS)
   confidence-weighted reprojection term normalised by the person's 2D size, the anatomical
   pose prior and soft joint limits of :mod:`.prior`, a shape prior inside the model's
   shape bounds, and a positive-depth barrier (:mod:`.solver`). Missing or low-confidence
   keypoints carry zero weight; they are never treated as (0, 0).
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

from ..keypoints import FrameKeypoints
from .camera import Camera
from .kinematics import matrix_to_axis_angle, rot_x, rot_y
from .prior import PosePrior, build_prior
from .proxy import KeypointProxy, build_proxy
from .result import BodyFit, FitError, PersonFit
from .solver import LMSolver
from .start import init_translation, mask_weights, person_targets

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


class BodyFitter(LMSolver):
    """Fits one body model. Build once per model (distils the keypoint proxy, ~seconds).

    The residuals, Jacobian and Levenberg-Marquardt loop (``_setup_eval``, ``_eval``, ``_lm``)
    come from :class:`~refsd.fit.solver.LMSolver`."""

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

    # ------------------------------------------------------------------ init
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
            obs, conf = person_targets(p, self.proxy, opt.min_confidence)
            if mask is not None:
                conf = mask_weights(obs, conf, mask)
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
            t0 = init_translation(obs, conf, cam, self._rest_body25())
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
        self._mu, self._wprior = A.clone(), None
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
                    quality=quality, keypoint_index=p.index, num_keypoints=int((conf > 0).sum()), track_id=p.track_id,
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

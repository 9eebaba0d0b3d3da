"""Fitting a video: temporally coherent bodies for tracked people (:func:`fit_video`).

Fitting every frame on its own (:meth:`BodyFitter.fit_frame`) searches 40 start hypotheses per
person each time, so a limb seen edge-on or a person seen from the front or the back can flip
between frames, and the small keypoint noise makes the body jitter. For people with a
``track_id`` (:mod:`refsd.keypoints.track`), :func:`fit_video` instead:

1. fits a person's first frame with the full search, and every later frame **warm-started**
   from the previous frame of the same track: one hypothesis, the previous pose as the start and
   as the pose prior's mean, ``temporal_weight`` times stiffer than the population prior (so a
   joint moves freely by a few degrees per frame but does not jump), shape kept;
2. gives each track **one shape** (the median over its frames);
3. **smooths** each track's parameters over time with a Gaussian of ``smooth_sigma`` frames
   (rotations as sign-aligned quaternions averaged and normalised -- a SLERP-consistent mean for
   nearby rotations; translations as vectors), the zero-lag filter an offline video allows.

People without a track id are fitted per frame, as in a still image. ``state`` carries the warm
start (each track's last fit and shape) from one chunk of a long video to the next; smoothing
acts within a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..keypoints import FrameKeypoints
from .camera import Camera
from .fitter import BodyFitter
from .kinematics import axis_angle_to_matrix, matrix_to_axis_angle
from .result import BodyFit, FitError, PersonFit
from .start import mask_weights, person_targets

__all__ = ["VideoFitOptions", "VideoFitState", "fit_video", "smooth_rotations"]


@dataclass
class VideoFitOptions:
    """``warm_start``: later frames start from the previous frame; ``temporal_weight``: stiffness of
    the pull towards the previous pose (x the population prior's); ``warm_iterations``: LM
    iterations of a warm frame; ``smooth_sigma``: Gaussian smoothing over time in frames (0: off);
    ``constant_shape``: one shape per track."""

    warm_start: bool = True
    temporal_weight: float = 4.0
    warm_iterations: int = 12
    smooth_sigma: float = 1.5
    constant_shape: bool = True

    def __post_init__(self) -> None:
        if self.temporal_weight <= 0 or self.warm_iterations < 1 or self.smooth_sigma < 0:
            raise FitError(f"temporal_weight must be > 0, warm_iterations >= 1 and smooth_sigma >= 0; got "
                           f"{self.temporal_weight}, {self.warm_iterations}, {self.smooth_sigma}")


@dataclass
class VideoFitState:
    """What a chunk hands to the next: each track's last fit and its shape (kept for the whole video)."""

    last: dict[int, PersonFit] = field(default_factory=dict)
    shapes: dict[int, list[float]] = field(default_factory=dict)


def _warm(fitter: BodyFitter, people, inits: list[PersonFit], cam: Camera, opt: VideoFitOptions) -> list[PersonFit]:
    """One LM run per person from its previous fit (single hypothesis, temporal pose prior, shape kept)."""
    fo, prior = fitter.options, fitter.prior
    fitter._setup_eval(cam)
    R = axis_angle_to_matrix(torch.tensor([p.global_orient for p in inits], dtype=torch.float64))
    A = prior.from_rotvec(torch.tensor([p.body_pose for p in inits], dtype=torch.float64))
    T = torch.tensor([p.transl for p in inits], dtype=torch.float64)
    Bt = torch.tensor([p.shape for p in inits], dtype=torch.float64)
    OBS, SW, sizes = [], [], []
    for _p, obs, conf in people:
        pts = obs[:25][conf[:25] > 0]
        size = max(float((pts.max(0).values - pts.min(0).values).norm()) if len(pts) > 1 else 50.0, 8.0)
        w = conf.clone()
        sl = fitter.proxy.slices
        if "hand_left" in sl:
            w[sl["hand_left"].start: sl["hand_right"].stop] *= fo.w_hands
        if "face" in sl:
            w[sl["face"]] *= fo.w_face
        OBS.append(obs)
        SW.append(w.sqrt() / (size * fo.sigma))
        sizes.append(size)
    OBS, SW = torch.stack(OBS), torch.stack(SW)
    active = torch.nonzero(SW.sum(0) > 0).squeeze(1)
    fitter._active = fitter.proxy.subset(active)
    fitter._mu = A.clone()
    fitter._wprior = torch.full((len(inits),), fo.w_prior * opt.temporal_weight, dtype=torch.float64)
    try:
        R, A, T, Bt, _ = fitter._lm(R, A, T, Bt, OBS[:, active], SW[:, active], opt.warm_iterations, False, None)
    finally:
        fitter._wprior = None
    hand_pose, body_poses = fitter._fit_hands(people, R, prior.to_rotvec(A), Bt, T, cam)
    out = []
    for i, (p, obs, conf) in enumerate(people):
        glob = matrix_to_axis_angle(R[i])
        reproj = fitter._reproj_error(glob, body_poses[i], Bt[i], T[i], obs, conf, cam)
        out.append(PersonFit(
            global_orient=glob, body_pose=body_poses[i], shape=Bt[i], transl=T[i], reproj_error_px=reproj,
            quality="good" if reproj <= fo.good_reproj_fraction * sizes[i] else "poor", keypoint_index=p.index,
            num_keypoints=int((conf > 0).sum()), hand_pose=None if hand_pose is None else hand_pose[i].tolist(),
            track_id=p.track_id))
    return out


def _quat(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z)."""
    m = torch.as_tensor(R, dtype=torch.float64)
    aa = matrix_to_axis_angle(m.reshape(-1, 3, 3))
    th = aa.norm(dim=-1, keepdim=True)
    axis = torch.where(th > 1e-12, aa / th.clamp_min(1e-12), torch.zeros_like(aa))
    q = torch.cat([torch.cos(th / 2), axis * torch.sin(th / 2)], -1)
    return q.reshape(*m.shape[:-2], 4).numpy()


def _gauss(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-normalised Gaussian weights over frame distance (edges renormalised)."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    w = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= np.ceil(3 * sigma))
    return w / w.sum(1, keepdims=True)


def smooth_rotations(axis_angles: np.ndarray, sigma: float) -> np.ndarray:
    """``(F, J, 3)`` axis-angle rotations over ``F`` frames smoothed in time: per joint, the
    quaternions are aligned to one hemisphere along the sequence, Gaussian-averaged and
    normalised (for rotations a few tens of degrees apart this is the SLERP-consistent mean)."""
    aa = np.asarray(axis_angles, dtype=np.float64)
    if sigma <= 0 or len(aa) < 2:
        return aa.copy()
    q = _quat(axis_angle_to_matrix(torch.as_tensor(aa.reshape(-1, 3))).numpy()).reshape(*aa.shape[:-1], 4)
    for t in range(1, len(q)):  # hemisphere continuity
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t][flip] *= -1
    qs = np.einsum("ts,sjc->tjc", _gauss(len(q), sigma), q)
    qs /= np.linalg.norm(qs, axis=-1, keepdims=True)
    w = np.clip(qs[..., :1], -1.0, 1.0)
    s = np.sqrt(np.clip(1 - w**2, 0, None))
    angle = 2 * np.arctan2(s, w)
    axis = np.where(s > 1e-12, qs[..., 1:] / np.maximum(s, 1e-12), 0.0)
    return axis * angle


def _smooth_tracks(fits: list[BodyFit], opt: VideoFitOptions, state: VideoFitState) -> None:
    tracks: dict[int, list[PersonFit]] = {}
    for f in fits:
        for p in f.people:
            if p.track_id is not None:
                tracks.setdefault(p.track_id, []).append(p)
    for tid, people in tracks.items():
        if opt.constant_shape:  # the median of the track's first chunk, then kept
            shape = state.shapes.setdefault(tid, np.median(np.array([p.shape for p in people], float), axis=0).tolist())
            for p in people:
                p.shape = list(shape)
        if opt.smooth_sigma > 0 and len(people) > 1:
            glob = smooth_rotations(np.array([[p.global_orient] for p in people], float), opt.smooth_sigma)
            body = smooth_rotations(np.array([p.body_pose for p in people], float), opt.smooth_sigma)
            transl = _gauss(len(people), opt.smooth_sigma) @ np.array([p.transl for p in people], float)
            for p, g, b, t in zip(people, glob, body, transl, strict=True):
                p.global_orient, p.body_pose, p.transl = g[0].tolist(), b.tolist(), t.tolist()


def fit_video(fitter: BodyFitter, frames: Sequence[FrameKeypoints], camera: Camera | None = None,
              options: VideoFitOptions | None = None, state: VideoFitState | None = None,
              progress: Callable[[int, int], None] | None = None, masks: Sequence | None = None) -> list[BodyFit]:
    """One :class:`BodyFit` per frame of a video (module docstring); tracked people (``track_id``)
    are fitted coherently over time. ``state`` (updated in place) continues an earlier chunk;
    ``masks``: an optional person mask per frame (one for all), as :meth:`BodyFitter.fit_frame`'s."""
    opt = options or VideoFitOptions()
    state = state if state is not None else VideoFitState()
    fits = []
    for i, frame in enumerate(frames):
        warm = [p for p in frame.people if opt.warm_start and p.track_id is not None and p.track_id in state.last]
        warm_ids = {id(p) for p in warm}
        cold = FrameKeypoints(people=[p for p in frame.people if id(p) not in warm_ids], canvas=frame.canvas,
                              image_size=frame.image_size, skipped=list(frame.skipped), warnings=list(frame.warnings))
        mask = None if masks is None else masks[min(i, len(masks) - 1)]
        fit = fitter.fit_frame(cold, camera=camera, mask=mask)
        if warm:
            W, H = frame.image_size
            cam = fitter.camera_for(W, H, camera)
            targets, inits = [], []
            for p in warm:
                obs, conf = person_targets(p, fitter.proxy, fitter.options.min_confidence)
                if mask is not None:
                    conf = mask_weights(obs, conf, mask)
                if int((conf[:25] > 0).sum()) < fitter.options.min_joints:  # too little to go on: as a still
                    fit.skipped.append([p.index, f"only {int((conf[:25] > 0).sum())} confident body keypoints"])
                    continue
                targets.append((p, obs, conf))
                inits.append(state.last[p.track_id])
            if targets:
                fit.people += _warm(fitter, targets, inits, cam, opt)
        fit.people.sort(key=lambda p: p.keypoint_index)
        for p in fit.people:
            if p.track_id is not None:
                state.last[p.track_id] = p
        fits.append(fit)
        if progress is not None:
            progress(i + 1, len(frames))
    _smooth_tracks(fits, opt, state)
    return fits

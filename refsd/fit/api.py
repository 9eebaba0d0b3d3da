"""Fit every image of a batch from ComfyUI-style inputs (POSE_KEYPOINT + image sizes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..keypoints import parse_pose_keypoint
from .camera import Camera
from .fitter import BodyFitter
from .result import BodyFit
from .video import VideoFitOptions, fit_video

__all__ = ["fit_pose_keypoint"]


def fit_pose_keypoint(
    fitter: BodyFitter,
    pose_keypoint,
    image_sizes: Sequence[tuple[int, int]],
    masks: Sequence | None = None,
    *,
    coords: str = "auto",
    hand_order: str = "left_first",
    min_confidence: float = 0.3,
    fov_deg: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    video: VideoFitOptions | None = None,
    video_state=None,
) -> list[BodyFit]:
    """One :class:`BodyFit` per image: image ``i`` uses keypoint frame ``i`` (a single frame is
    used for every image). People with fewer than ``fitter.options.min_joints`` confident body
    joints are skipped and listed in ``BodyFit.skipped`` / ``warnings``; the rest are fitted.

    ``progress(done, total)`` reports fitted people (the people of one image are fitted together,
    so it advances with their optimisation iterations).

    With ``video`` (:class:`~refsd.fit.video.VideoFitOptions`) and keypoints whose people carry a
    ``track_id`` (RefSD Track People), the batch is a video: tracked people are fitted coherently
    over the frames (:func:`~refsd.fit.video.fit_video`; progress then counts frames;
    ``video_state``, a :class:`~refsd.fit.video.VideoFitState`, continues an earlier chunk).
    """
    frames = parse_pose_keypoint(
        pose_keypoint,
        image_sizes=list(image_sizes),
        coords=coords,
        hand_order=hand_order,
        min_confidence=min_confidence,
        min_joints=fitter.options.min_joints,
    )
    if video is not None and any(p.track_id is not None for f in frames for p in f.people):
        sizes = {f.image_size for f in frames}
        if len(sizes) > 1:
            from .result import FitError

            raise FitError(f"the frames of a video must share one size; got {sorted(sizes)}")
        W, H = frames[0].image_size
        cam = Camera.from_fov(W, H, fov_deg) if fov_deg else None
        return fit_video(fitter, frames, camera=cam, options=video, state=video_state, progress=progress, masks=masks)
    total = sum(len(f.people) for f in frames)
    done = 0
    fits = []
    for i, frame in enumerate(frames):
        W, H = frame.image_size
        cam = Camera.from_fov(W, H, fov_deg) if fov_deg else None
        mask = masks[i] if masks is not None and len(masks) > i else (masks[0] if masks is not None else None)
        n = len(frame.people)

        def step(it: int, iters: int, done=done, n=n) -> None:
            if progress is not None:
                progress(done + n * it // max(iters, 1), total)  # people of this frame, by LM iteration

        fits.append(fitter.fit_frame(frame, camera=cam, mask=mask, progress=step))
        done += n
        if progress is not None:
            progress(done, total)
    return fits

"""Pseudonymizing a video with :class:`~refsd.pipeline.core.RefSDPipeline`, chunk by chunk.

:func:`pseudonymize_frames` takes one chunk of frames: the people of every frame (keypoints or
the detector), tracked across frames (:mod:`refsd.keypoints.track`), fitted coherently
(:func:`refsd.fit.fit_video`: warm start, one shape per track, smoothing), then each frame goes
through the image pipeline (render, removal, composite, refinement, privacy check) with one look
per track (attributes drawn from the video's seed and the track) and one diffusion seed per
track. :class:`VideoState` carries the tracks, the last fits and the shapes from one chunk to
the next (JSON-safe, so a killed run resumes at its last finished chunk); memory stays bounded
by the chunk. :func:`read_video` / :class:`VideoWriter` decode and encode with PyAV (the video
library ComfyUI itself requires).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .detection import find_people
from .io import PipelineError, load_image

__all__ = ["VIDEO_SUFFIXES", "VideoState", "pseudonymize_frames", "read_video", "video_info", "VideoWriter"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass
class VideoState:
    """What one chunk hands to the next: the tracker, the fits' warm start and shapes, frames done."""

    tracker: Any = None  # refsd.keypoints.track.PeopleTracker
    fit: Any = None  # refsd.fit.VideoFitState
    frames_done: int = 0
    tracks: dict[int, dict] = field(default_factory=dict)  # track id -> {"frames": n, "attributes": {...}}

    def __post_init__(self) -> None:
        from ..fit import VideoFitState
        from ..keypoints.track import PeopleTracker

        self.tracker = self.tracker or PeopleTracker()
        self.fit = self.fit or VideoFitState()

    def to_dict(self) -> dict:
        return {"tracker": self.tracker.state(), "frames_done": self.frames_done,
                "tracks": {str(k): v for k, v in self.tracks.items()},
                "last": {str(k): p.__dict__ for k, p in self.fit.last.items()},
                "shapes": {str(k): v for k, v in self.fit.shapes.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> VideoState:
        from ..fit import PersonFit, VideoFitState
        from ..keypoints.track import PeopleTracker

        try:
            fit = VideoFitState({int(k): PersonFit(**v) for k, v in d["last"].items()},
                                {int(k): list(v) for k, v in d["shapes"].items()})
            return cls(PeopleTracker.from_state(d["tracker"]), fit, int(d["frames_done"]),
                       {int(k): v for k, v in d["tracks"].items()})
        except (KeyError, TypeError, ValueError) as e:
            raise PipelineError(f"not a video state: {e}; delete it to start the video again") from e


def pseudonymize_frames(pipe, frames: Sequence[Any], seed: int, state: VideoState,
                        keypoints: Sequence[Any] | None = None, people: str = "auto") -> list:
    """One chunk of a video through ``pipe`` (module docstring): a list with one
    :class:`~refsd.pipeline.result.PipelineResult` (or the exception of a failed frame) per frame.
    ``keypoints``: one POSE_KEYPOINT frame (or None: detect) per frame; ``state`` is updated."""
    import time

    import torch

    from ..fit import VideoFitOptions
    from ..fit.api import fit_pose_keypoint
    from ..keypoints.track import track_pose_keypoint
    from .detection import FoundPeople

    imgs = [load_image(f) for f in frames]
    kps = list(keypoints) if keypoints is not None else [None] * len(imgs)
    if len(kps) != len(imgs):
        raise PipelineError(f"{len(imgs)} frames but {len(kps)} keypoint frames; give one per frame")
    sizes = {tuple(i.shape[:2]) for i in imgs}
    if len(sizes) > 1:
        raise PipelineError(f"the frames of a video must share one size; got {sorted(sizes)}")
    found = [find_people(pipe.detector_of, img, kp, people, pipe.detect_options) for img, kp in zip(imgs, kps, strict=True)]
    options = pipe.fit_options_for(found[0])
    tracked, _ids = track_pose_keypoint([f.pose_keypoint[0] for f in found], tracker=state.tracker,
                                        coords=options["coords"])
    H, W = imgs[0].shape[:2]
    t0 = time.perf_counter()
    fitter = pipe.body.fitter(pipe.device, torch.float32)
    fits = fit_pose_keypoint(fitter, tracked, [(W, H)] * len(imgs), video=VideoFitOptions(), video_state=state.fit,
                             **options)
    t_fit = (time.perf_counter() - t0) / len(imgs)
    prepared, results = [], [None] * len(imgs)
    for i, (img, f, fit, tk) in enumerate(zip(imgs, found, fits, tracked, strict=True)):
        f2 = FoundPeople([tk], f.source, f.segmentation, f.detections, f.seconds)
        try:
            prepared.append(pipe._build(i, img, f2, fit, seed, {"detect": f.seconds, "fit": t_fit}))
        except Exception as e:  # a frame that cannot be built: recorded by the caller
            results[i] = e
    results = pipe._refine_and_finish(prepared, results, True)
    for r in results:
        if isinstance(r, Exception):
            continue
        for p, a in zip(r.fit.people, r.people, strict=True):
            if p.track_id is not None:
                t = state.tracks.setdefault(p.track_id, {"frames": 0, "attributes": a.to_dict()})
                t["frames"] += 1
    state.frames_done += len(imgs)
    return results


def video_info(path: str | Path) -> dict:
    """``{"frames", "fps", "width", "height"}`` of a video file (frames as the container says; 0 if unknown)."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return {"frames": int(s.frames or 0), "fps": float(s.average_rate or s.guessed_rate or 25),
                    "width": int(s.codec_context.width), "height": int(s.codec_context.height)}
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise PipelineError(f"{Path(path).name}: not a readable video ({type(e).__name__}: {e})") from e


def read_video(path: str | Path, chunk: int, start: int = 0) -> Iterator[list[np.ndarray]]:
    """The frames of ``path`` from frame ``start`` as lists of up to ``chunk`` RGB uint8 arrays."""
    import av

    try:
        with av.open(str(path)) as c:
            buf: list[np.ndarray] = []
            for k, frame in enumerate(c.decode(video=0)):
                if k < start:
                    continue
                buf.append(frame.to_ndarray(format="rgb24"))
                if len(buf) == chunk:
                    yield buf
                    buf = []
            if buf:
                yield buf
    except av.error.FFmpegError as e:
        raise PipelineError(f"{Path(path).name}: the video cannot be decoded ({type(e).__name__}: {e})") from e


class VideoWriter:
    """H.264 MP4 at ``fps`` (yuv420p, odd sizes cropped by one pixel), frames appended as RGB uint8."""

    def __init__(self, path: str | Path, fps: float, crf: int = 18):
        import av

        self.path, self.fps, self.crf = Path(path), fps, crf
        self._c = av.open(str(self.path), "w", format="mp4")  # the path may end in .part
        self._s = None

    def write(self, frame: np.ndarray) -> None:
        import av

        if self._s is None:
            h, w = frame.shape[:2]
            self._s = self._c.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._s.width, self._s.height, self._s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            self._s.options = {"crf": str(self.crf)}
        f = np.ascontiguousarray(frame[: self._s.height, : self._s.width])
        for packet in self._s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            self._c.mux(packet)

    def close(self) -> None:
        if self._s is not None:
            for packet in self._s.encode():
                self._c.mux(packet)
        self._c.close()

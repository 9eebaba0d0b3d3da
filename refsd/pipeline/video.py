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
from types import SimpleNamespace
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
    background: Any = None  # refsd.composite.temporal.BackgroundMemory
    follow: list = field(default_factory=list)  # the last frame's detected people: {"align", "landmarks"}
    refined: dict = field(default_factory=dict)  # track id -> video_refine.RefinedCrop (its last refined crop)
    crops_refined: int = 0  # crops refined so far, and how many of them continued their track's last one
    crops_continued: int = 0

    def __post_init__(self) -> None:
        from ..composite.temporal import BackgroundMemory
        from ..fit import VideoFitState
        from ..keypoints.track import PeopleTracker

        self.tracker = self.tracker or PeopleTracker()
        self.fit = self.fit or VideoFitState()
        self.background = self.background or BackgroundMemory()

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the state as JSON at ``path`` (plus ``extra`` keys), the background memory beside it
        as ``<path>.<frames_done>.npz`` (plain arrays, no pickle); each file replaced atomically, the
        JSON last, so a kill leaves the previous consistent pair."""
        import json
        import os

        path = Path(path)
        data = {**(extra or {}), **self.to_dict(), "background": None}
        mem = self.background
        if mem.background is not None or self.refined:
            npz = path.with_name(f"{path.name}.{self.frames_done}.npz")
            tmp = npz.with_name(npz.name + ".part.npz")
            arrays = mem.arrays() if mem.background is not None else {}
            for tid, r in self.refined.items():
                arrays[f"refined_{tid}_crop"], arrays[f"refined_{tid}_alpha"] = r.crop.numpy(), r.alpha.numpy()
            np.savez(tmp, **arrays)
            os.replace(tmp, npz)
            data["background"] = npz.name
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(data))
        os.replace(part, path)
        for old in path.parent.glob(f"{path.name}.*.npz"):  # earlier chunks' memories
            if old.name != data["background"]:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path, device: Any = "cpu") -> tuple[VideoState, dict]:
        """The state :meth:`save` wrote (with its background memory on ``device``) and the whole JSON."""
        import json

        import torch

        from .video_refine import RefinedCrop


        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PipelineError(f"{path}: not a video state ({e}); delete it to start the video again") from e
        state = cls.from_dict(data)
        if data.get("background"):
            try:
                with np.load(path.with_name(data["background"]), allow_pickle=False) as z:
                    if "background" in z.files:
                        state.background.from_arrays(z, device)
                    state.refined = {int(k.split("_")[1]): RefinedCrop(torch.from_numpy(z[k]),
                                                                        torch.from_numpy(z[k[:-4] + "alpha"]))
                                     for k in z.files if k.startswith("refined_") and k.endswith("_crop")}
            except (OSError, KeyError, ValueError) as e:
                raise PipelineError(f"{path}: its background memory {data['background']} is missing or damaged "
                                    f"({e}); delete {path.name} to start the video again") from e
        return state, data

    def to_dict(self) -> dict:
        return {"tracker": self.tracker.state(), "frames_done": self.frames_done, "follow": self.follow,
                "crops_refined": self.crops_refined, "crops_continued": self.crops_continued,
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
                       {int(k): v for k, v in d["tracks"].items()},
                       follow=list(d.get("follow", [])), crops_refined=int(d.get("crops_refined", 0)),
                       crops_continued=int(d.get("crops_continued", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise PipelineError(f"not a video state: {e}; delete it to start the video again") from e


def pseudonymize_frames(pipe, frames: Sequence[Any], seed: int, state: VideoState,
                        keypoints: Sequence[Any] | None = None, people: str = "auto",
                        temporal_background: bool = True, refine_denoise: float | None = 0.35) -> list:
    """One chunk of a video through ``pipe`` (module docstring): a list with one
    :class:`~refsd.pipeline.result.PipelineResult` (or the exception of a failed frame) per frame.
    ``keypoints``: one POSE_KEYPOINT frame (or None: detect) per frame; ``state`` is updated.
    ``temporal_background``: fill each frame's removed region from what earlier frames saw
    (:class:`~refsd.composite.temporal.BackgroundMemory`, carried in ``state``); False fills
    every frame on its own. ``refine_denoise``: with a refiner, a tracked person's crop whose pose
    changed little starts from their last refined crop at this img2img strength
    (:mod:`refsd.pipeline.video_refine`); None refines every frame's crops alone (each track
    still keeps its seed)."""
    import time

    import torch

    from ..fit import VideoFitOptions
    from ..fit.api import fit_pose_keypoint
    from ..keypoints.track import record_sighting, track_pose_keypoint
    from .detection import FoundPeople

    imgs = [load_image(f) for f in frames]
    kps = list(keypoints) if keypoints is not None else [None] * len(imgs)
    if len(kps) != len(imgs):
        raise PipelineError(f"{len(imgs)} frames but {len(kps)} keypoint frames; give one per frame")
    sizes = {tuple(i.shape[:2]) for i in imgs}
    if len(sizes) > 1:
        raise PipelineError(f"the frames of a video must share one size; got {sorted(sizes)}")
    found = []
    for img, kp in zip(imgs, kps, strict=True):  # the detector follows each frame's people into the next
        follow = [SimpleNamespace(align=f["align"], landmarks=np.asarray(f["landmarks"]), weak=f.get("weak", 0))
                  for f in state.follow]
        found.append(find_people(pipe.detector_of, img, kp, people, pipe.detect_options, follow=follow))
        state.follow = [{"align": p.align, "landmarks": p.landmarks[:, :2].round(3).tolist(), "weak": p.weak}
                        for p in found[-1].people or [] if p.align is not None]
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
            prepared.append(pipe._build(i, img, f2, fit, seed, {"detect": f.seconds, "fit": t_fit},
                                        memory=state.background if temporal_background else None))
        except Exception as e:  # a frame that cannot be built: recorded by the caller
            results[i] = e
    if pipe.refiner is None or refine_denoise is None:
        results = pipe._refine_and_finish(prepared, results, True)
    else:  # frame after frame: each continues the last one's refined people
        from .video_refine import refine_frame

        for p in prepared:
            try:
                refined = None
                if p.boxes:
                    refined, notes, n = refine_frame(pipe, p, state.refined, refine_denoise)
                    p.notes += notes
                    state.crops_refined += len(p.boxes)
                    state.crops_continued += n
                results[p.index] = pipe._finish(p, refined)
            except Exception as e:  # recorded by the caller, as in the image path
                results[p.index] = e
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            continue
        for p, a in zip(r.fit.people, r.people, strict=True):
            if p.track_id is not None:
                record_sighting(state.tracks, p.track_id, state.frames_done + i, a.to_dict())
    state.frames_done += len(imgs)
    return results


def video_info(path: str | Path) -> dict:
    """``{"frames", "fps", "width", "height", "audio"}`` of a video file (frames as the container says, 0 if
    unknown; audio: the codec of its first audio stream, None without one)."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return {"frames": int(s.frames or 0), "fps": float(s.average_rate or s.guessed_rate or 25),
                    "width": int(s.codec_context.width), "height": int(s.codec_context.height),
                    "audio": c.streams.audio[0].codec_context.name if c.streams.audio else None}
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
    """H.264 MP4 at ``fps`` (yuv420p, odd sizes cropped by one pixel), frames appended as RGB uint8.
    ``audio``: a file whose first audio stream goes along (:class:`refsd.pipeline.audio.AudioCopy`,
    trimmed to the video; ``self.audio`` after the first frame: its ``status`` and ``notes``)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 18, audio: str | Path | None = None):
        import av

        self.path, self.fps, self.crf, self.frames = Path(path), fps, crf, 0
        self._c = av.open(str(self.path), "w", format="mp4")  # the path may end in .part
        self._s, self._audio_source, self.audio = None, audio, None

    def write(self, frame: np.ndarray) -> None:
        import av

        if self._s is None:
            h, w = frame.shape[:2]
            self._rate = Fraction(self.fps).limit_denominator(1001)
            self._s = self._c.add_stream("libx264", rate=self._rate)
            self._s.width, self._s.height, self._s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            self._s.options = {"crf": str(self.crf)}
            if self._audio_source is not None:  # its stream too before the first packet
                from .audio import AudioCopy

                self.audio = AudioCopy(self._audio_source, self._c)
        f = np.ascontiguousarray(frame[: self._s.height, : self._s.width])
        for packet in self._s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            self._c.mux(packet)
        self.frames += 1
        if self.audio is not None:  # interleaved: the audio up to this frame's end
            self.audio.mux(self.frames / self._rate)

    def close(self) -> None:
        if self._s is not None:
            for packet in self._s.encode():
                self._c.mux(packet)
        if self.audio is not None:
            self.audio.finish(self.frames / self._rate)
        self._c.close()

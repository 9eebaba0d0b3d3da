"""A video, frame by frame: :func:`evaluate_video` runs one :class:`~refsd.evaluate.image.Evaluator`
over every ``stride``-th frame pair of a source video and its pseudonymized output and returns a
:class:`VideoEvaluation`. The frames come decoded from the caller (this stage reads no video file;
``refsd eval`` decodes them with PyAV, :mod:`refsd.cli.evaluate_video`).

Each evaluated frame is measured exactly like a photo: identity (every face of the source frame
against the output frame) and pose kept (the people found on the output frame against the
frame's input keypoints -- one POSE_KEYPOINT frame per video frame -- or, without them, the people
detected on the source frame). The avatars' own pose is not measured: a video run saves no
per-frame body fit to re-render them from (:data:`AVATAR_POSE_NOTE`).

:meth:`VideoEvaluation.to_dict` is a record's ``video`` part (frames, stride, the frames that
leak, the mean OKS, and per frame: faces, leaks, max similarity, people, OKS, seconds);
:meth:`VideoEvaluation.evaluation` its ``evaluation`` part, shaped like a photo's
:meth:`~refsd.evaluate.image.ImageEvaluation.to_dict` -- every frame's faces and pose rows, each
with its ``frame`` index -- so that :func:`refsd.evaluate.summarize` counts each evaluated frame
like one image.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .image import EvaluationError, Evaluator, ImageEvaluation, as_frame

__all__ = ["AVATAR_POSE_NOTE", "VideoError", "VideoEvaluation", "evaluate_video", "paired_frames"]

AVATAR_POSE_NOTE = "not measured for videos: a video run saves no per-frame body fit to re-render the avatars from"
_END = object()


class VideoError(EvaluationError):
    """A source / output video pair that cannot be compared frame by frame (lengths or sizes differ, ...)."""


def paired_frames(source: Iterable[Any], output: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
    """The frames of two videos in step; raises :class:`VideoError` where one ends before the other."""
    src, out = iter(source), iter(output)
    n = 0
    while True:
        a, b = next(src, _END), next(out, _END)
        if a is _END and b is _END:
            return
        if a is _END or b is _END:
            short, long_ = ("source", "output") if a is _END else ("output", "source")
            raise VideoError(f"the {short} video ends after {n} frames but the {long_} has more: an output must have "
                             "the frames of the video it was made from (a run that stopped early?)")
        yield a, b
        n += 1


def _crop_to(o: np.ndarray, shape: tuple[int, ...], index: int) -> np.ndarray:
    """The source frame at the output's size: equal, or cropped to even sides as an H.264 (yuv420p)
    writer crops odd ones (RefSD's own, :class:`refsd.pipeline.video.VideoWriter`)."""
    h, w = int(o.shape[0]), int(o.shape[1])
    if tuple(o.shape[:2]) == tuple(shape[:2]):
        return o
    if tuple(shape[:2]) == (h - h % 2, w - w % 2):
        return o[: shape[0], : shape[1]]
    raise VideoError(f"frame {index}: the source is {w}x{h} but the output is {shape[1]}x{shape[0]}; "
                     "an output must be compared with the video it was made from")


@dataclass
class VideoEvaluation:
    """The measures of one video. ``frames``: frame pairs decoded (the video's length once it is
    complete); ``stride``: every ``stride``-th frame was evaluated, from frame 0; ``evaluated``:
    (frame index, :class:`ImageEvaluation`) per evaluated frame; ``identity`` / ``pose``: whether
    those measures ran."""

    frames: int = 0
    stride: int = 1
    evaluated: list[tuple[int, ImageEvaluation]] = field(default_factory=list)
    identity: bool = True
    pose: bool = True

    @property
    def leak_frames(self) -> list[int]:
        """The evaluated frames where a face is still recognisable."""
        return [i for i, ev in self.evaluated if ev.identity is not None and ev.identity.leaks]

    @property
    def leaks(self) -> int:
        return sum(ev.identity.leaks for _, ev in self.evaluated if ev.identity is not None)

    @property
    def passed(self) -> bool | None:
        return None if not self.identity else self.leaks == 0

    @property
    def mean_oks(self) -> float | None:
        """The mean over evaluated frames with input people of the frame's mean OKS."""
        per = [statistics.fmean(p.oks for p in ev.pose) for _, ev in self.evaluated if ev.pose]
        return statistics.fmean(per) if per else None

    def frame_rows(self) -> list[dict]:
        rows = []
        for i, ev in self.evaluated:
            ident = ev.identity
            sim = None if ident is None else ident.max_similarity
            rows.append({
                "frame": i,
                "faces": None if ident is None else len(ident.faces),
                "leaks": None if ident is None else ident.leaks,
                "max_similarity": None if sim is None else round(sim, 4),
                "people": None if ev.pose is None else len(ev.pose),
                "oks": round(statistics.fmean(p.oks for p in ev.pose), 4) if ev.pose else None,
                "seconds": round(sum(ev.seconds.values()), 4),
            })
        return rows

    def to_dict(self) -> dict:
        sims = [ev.identity.max_similarity for _, ev in self.evaluated
                if ev.identity is not None and ev.identity.max_similarity is not None]
        return {
            "frames": self.frames, "frames_evaluated": len(self.evaluated), "frame_stride": self.stride,
            "faces": sum(len(ev.identity.faces) for _, ev in self.evaluated if ev.identity is not None)
            if self.identity else None,
            "leaks": self.leaks if self.identity else None, "leak_frames": self.leak_frames,
            "max_similarity": max(sims, default=None), "mean_oks": self.mean_oks,
            "avatar_pose": AVATAR_POSE_NOTE, "per_frame": self.frame_rows(),
        }

    def evaluation(self) -> dict:
        """All evaluated frames as one photo-shaped evaluation (module docstring): faces, pose rows and
        the people without a face (``[frame, person]``) carry their frame."""
        identity = None
        if self.identity:
            faces = [f.to_dict() | {"frame": i} for i, ev in self.evaluated if ev.identity for f in ev.identity.faces]
            sims = [f["similarity"] for f in faces if f["similarity"] is not None]
            threshold = next((ev.identity.threshold for _, ev in self.evaluated if ev.identity), None)
            identity = {"faces": faces, "threshold": threshold, "leaks": self.leaks, "passed": self.leaks == 0,
                        "people_without_face": [[i, p] for i, ev in self.evaluated if ev.identity
                                                for p in ev.identity.people_without_face],
                        "max_similarity": max(sims, default=None)}
        pose = [p.to_dict() | {"frame": i} for i, ev in self.evaluated for p in (ev.pose or [])] if self.pose else None
        sources: dict[str, str] = {}
        for _, ev in self.evaluated:
            for k, v in ev.sources.items():
                sources[k] = v if sources.get(k, v) == v else "mixed"
        seconds: dict[str, float] = {}
        for _, ev in self.evaluated:
            for k, v in ev.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        return {"identity": identity, "pose": pose, "avatar_pose": None, "sources": sources,
                "seconds": {k: round(v, 4) for k, v in seconds.items()}}


def evaluate_video(evaluator: Evaluator, frames: Iterable[tuple[Any, Any]], keypoints: Sequence[Any] | None = None,
                   *, stride: int = 1, on_frame: Callable[[int], None] | None = None) -> VideoEvaluation:
    """Evaluate ``frames`` -- (source frame, output frame) pairs in order, e.g.
    :func:`paired_frames` of two decoders; RGB uint8 arrays or anything :class:`Evaluator` takes --
    every ``stride``-th from frame 0. ``keypoints``: one POSE_KEYPOINT frame per video frame (None:
    the people are detected on each source frame). ``on_frame(index)`` is called after every
    decoded frame (progress). Raises :class:`VideoError` for pairs of different sizes or too few
    keypoint frames."""
    if int(stride) < 1:
        raise VideoError(f"frame stride is {stride}; evaluate every frame with 1, every N-th with N")
    result = VideoEvaluation(stride=int(stride), identity=evaluator.identity, pose=evaluator.pose)
    for i, (o, p) in enumerate(frames):
        result.frames = i + 1
        if i % result.stride == 0:
            o, p = np.asarray(o), np.asarray(p)
            kp = None
            if keypoints is not None:
                if i >= len(keypoints):
                    raise VideoError(f"the keypoints have {len(keypoints)} frames but the video has more; "
                                     "give one keypoint frame per video frame")
                # parsed at the source's own size (the output may be that frame cropped to even sides)
                kp = as_frame(keypoints[i], (int(o.shape[1]), int(o.shape[0])), evaluator.min_confidence)
            result.evaluated.append((i, evaluator(_crop_to(o, p.shape, i), p, kp)))
        if on_frame is not None:
            on_frame(i)
    if result.frames == 0:
        raise VideoError("the video has no frames")
    return result

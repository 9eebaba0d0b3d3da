"""``refsd eval`` on a video record: the source video and the run's output video decoded in step
with PyAV (:func:`refsd.pipeline.video.read_video`) and measured frame by frame
(:func:`refsd.evaluate.video.evaluate_video`).

Checked before any frame is measured (an error record, not a crash): both files exist and are
readable videos, their sizes agree (the output may be the source cropped to even sides, as H.264
writers do), their frame counts agree where the containers state them, and a keypoint file has a
frame for every video frame. Lengths the containers do not state are checked while decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import RefSDError

__all__ = ["DECODE_CHUNK", "evaluate_video_files", "video_attributes"]

#: frames decoded at a time per video (memory: two chunks of frames)
DECODE_CHUNK = 8


def _frames(path: Path) -> Iterator[np.ndarray]:
    from ..pipeline.video import read_video

    for chunk in read_video(path, DECODE_CHUNK):
        yield from chunk


def _check_pair(src: Path, out: Path, kps: list | None) -> int:
    """The video's frame count as the containers state it (0: unknown); raises for what cannot match."""
    from ..evaluate.video import VideoError
    from ..pipeline.video import video_info

    a, b = video_info(src), video_info(out)
    w, h = a["width"], a["height"]
    if (b["width"], b["height"]) not in ((w, h), (w - w % 2, h - h % 2)):
        raise VideoError(f"the source video {src.name} is {w}x{h} but the output {out.name} is "
                         f"{b['width']}x{b['height']}: an output must be compared with the video it was made from")
    if a["frames"] and b["frames"] and a["frames"] != b["frames"]:
        raise VideoError(f"the source video {src.name} has {a['frames']} frames but the output {out.name} has "
                         f"{b['frames']}: an output must have the frames of the video it was made from "
                         "(a run that stopped early?)")
    if kps is not None and a["frames"] and len(kps) < a["frames"]:
        raise VideoError(f"the keypoint file has {len(kps)} frames but the video {a['frames']}; "
                         "give one keypoint frame per video frame")
    return a["frames"] or b["frames"]


def evaluate_video_files(evaluator, src: Path, out: Path, keypoints: Path | None, stride: int = 1,
                         on_frame: Callable[[int, int], None] | None = None):
    """:class:`refsd.evaluate.video.VideoEvaluation` of the output video ``out`` against the source
    ``src`` (module docstring); ``keypoints``: a POSE_KEYPOINT file with one frame per video frame
    (None: people detected on the source frames); ``on_frame(index, frames)`` after each decoded frame
    (frames: the stated count, 0 if unknown). Raises :class:`RefSDError` for anything that stops it."""
    from ..evaluate.video import evaluate_video, paired_frames
    from ..keypoints import load_pose_keypoint_file

    for p, what in ((src, "source video"), (out, "output video")):
        if not p.is_file():
            raise RefSDError(f"the {what} {p} does not exist")
    kps = load_pose_keypoint_file(keypoints) if keypoints is not None else None
    total = _check_pair(src, out, kps)
    step = None if on_frame is None else (lambda i: on_frame(i, total))
    return evaluate_video(evaluator, paired_frames(_frames(src), _frames(out)), kps, stride=stride, on_frame=step)


def video_attributes(rec: dict) -> list | None:
    """The people of a video run as sampled, one per track (both writers record each track's look under
    ``video.tracks``; a ``refsd run`` record's ``attributes`` repeat them on every frame)."""
    tracks = (rec.get("video") or {}).get("tracks")
    if isinstance(tracks, dict) and tracks:
        people = [t.get("attributes") for _, t in sorted(tracks.items(), key=lambda kv: (len(kv[0]), kv[0]))]
        return [[a for a in people if a]]
    return rec.get("attributes")

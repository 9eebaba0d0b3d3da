"""Where an image's people come from: its keypoint file, or the person detector.

``people`` (the pipeline call's, ``refsd pseudonymize --people``, ``refsd run --people``) is
one of :data:`PEOPLE_MODES`: ``"auto"`` (the keypoints when the image has them, else detect),
``"file"`` (keypoints only: an image without them is an error) and ``"detect"`` (always
detect, ignoring keypoints). :func:`people_source` turns the mode into what an image uses
(``"file"`` or ``"detect"``, the manifest's ``people_source``); :func:`find_people` runs it:
the keypoints as POSE_KEYPOINT, and with the detector (:class:`refsd.detect.PersonDetector`)
also its union person mask, which joins the person region as a segmentation
(:func:`refsd.composite.region_masks`), and the per-person scores the manifest records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from .io import PipelineError, _load_keypoints

__all__ = ["PEOPLE_MODES", "FoundPeople", "check_detect_options", "find_people", "people_source"]

PEOPLE_MODES = ("auto", "file", "detect")


def people_source(people: str, has_keypoints: bool) -> str:
    """``"file"`` or ``"detect"``: what an image with (or without) keypoints uses under ``people``."""
    if people not in PEOPLE_MODES:
        raise PipelineError(f"people={people!r}; use one of {', '.join(PEOPLE_MODES)}")
    return "detect" if people == "detect" or (people == "auto" and not has_keypoints) else "file"


def check_detect_options(variant: str, min_score: float, max_people: int, min_presence: float) -> None:
    """Raise :class:`PipelineError` for settings the detector would refuse on every image."""
    from ..detect import LANDMARK_VARIANTS

    if variant not in LANDMARK_VARIANTS:
        raise PipelineError(f"unknown detector model {variant!r}; use one of {', '.join(LANDMARK_VARIANTS)}")
    for name, v in (("min_score", min_score), ("min_presence", min_presence)):
        if not 0.0 <= float(v) <= 1.0:
            raise PipelineError(f"the detector's {name} is {v}; use a value in 0..1 (default 0.5)")
    if int(max_people) < 1:
        raise PipelineError(f"max_people is {max_people}; the detector needs to look for at least 1 person")


@dataclass
class FoundPeople:
    """The people of one image, ready for the fit."""

    pose_keypoint: Any  # POSE_KEYPOINT (validated list of frame dicts)
    source: str  # "file" | "detect"
    segmentation: torch.Tensor | None = None  # (H, W) detector union mask, CPU
    detections: list[dict] | None = None  # per person {"score", "presence", "box"}
    seconds: float = 0.0
    people: list | None = None  # the detector's DetectedPerson list (a video's next frame follows them)


def find_people(detector_of, image: torch.Tensor, keypoints: Any, people: str, options: dict,
                follow: list | None = None) -> FoundPeople:
    """The keypoints of one image (``(H, W, 3)``) under ``people``. ``detector_of()`` gives the
    detector (built on first use); ``options``: its call's ``min_score``, ``max_people``,
    ``min_presence``; ``follow``: the previous video frame's detected people (the detector's
    tracking mode, :class:`refsd.detect.PersonDetector`)."""
    source = people_source(people, keypoints is not None)
    if source == "file":
        if keypoints is None:
            raise PipelineError("no keypoints for this image (people='file'); pass a POSE_KEYPOINT file or data, "
                                "or people='auto' to detect the people")
        return FoundPeople(_load_keypoints(keypoints), "file")
    from ..keypoints import to_pose_keypoint

    t0 = time.perf_counter()
    dets = detector_of()(image, **options, **({"follow": follow} if follow else {}))
    frame = dets.frame()
    return FoundPeople(
        pose_keypoint=to_pose_keypoint([frame], coords="pixels", confidence="keep"),
        source="detect", segmentation=dets.union_mask().float().cpu(), detections=dets.scores(),
        seconds=time.perf_counter() - t0, people=dets.people,
    )

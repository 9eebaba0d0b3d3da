"""One image, all measures: :class:`Evaluator` (models loaded once) -> :class:`ImageEvaluation`.

* identity (:mod:`~refsd.evaluate.identity`): every face of the photo against the output;
* pose kept (:mod:`~refsd.evaluate.pose`): keypoints found on the output -- RefSD's own person
  detector, or any keypoints the caller gives (e.g. DWPose run on the output) -- against the
  input keypoints (the keypoint file, or the detector on the photo), and, when the avatars'
  own keypoints are given (RefSD Render Avatar's POSE_KEYPOINT, or re-rendered from a saved
  body fit), those against the input: the fit + render error alone, before any diffusion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..detect import SFACE_COSINE_THRESHOLD, FaceAnalyzer, PersonDetector, as_rgb_image
from ..errors import RefSDError
from ..keypoints import FrameKeypoints, load_pose_keypoint_file, parse_pose_keypoint
from .identity import IdentityResult, check_identity
from .pose import PersonPose, compare_frames

__all__ = ["Evaluator", "ImageEvaluation", "EvaluationError", "as_frame", "avatar_pose_keypoint"]


class EvaluationError(RefSDError):
    """Bad input to the evaluation (unreadable keypoints, images of different sizes, ...)."""


def as_frame(keypoints: Any, size: tuple[int, int], min_confidence: float = 0.3) -> FrameKeypoints:
    """Keypoints of one image as a :class:`FrameKeypoints` in pixels of an image of ``size`` (W, H):
    a FrameKeypoints, a POSE_KEYPOINT frame dict or one-frame list, or the path of a keypoint JSON."""
    if isinstance(keypoints, FrameKeypoints):
        return keypoints
    if isinstance(keypoints, (str, Path)):
        keypoints = load_pose_keypoint_file(keypoints)
    if isinstance(keypoints, Mapping):
        keypoints = [keypoints]
    if not isinstance(keypoints, list) or not keypoints:
        raise EvaluationError(f"keypoints must be a POSE_KEYPOINT frame, a keypoint JSON file or a FrameKeypoints; "
                              f"got {type(keypoints).__name__}")
    return parse_pose_keypoint(keypoints[:1], [size], min_confidence=min_confidence)[0]


def avatar_pose_keypoint(fit, attributes, device=None) -> list[dict]:
    """The avatars' own POSE_KEYPOINT, re-rendered from an Anny ``fit`` (a BodyFit) and the people's
    ``attributes`` (PersonAttributes or their dicts, one per fitted person), as RefSD Render Avatar
    drew them (keep_size, hands and face)."""
    from ..fit.handle import BodyModelSpec
    from ..people import PersonAttributes
    from ..render.avatar import AttributeSource, render_avatars

    people = [a if isinstance(a, PersonAttributes) else PersonAttributes.from_dict(a) for a in attributes]
    model = BodyModelSpec("anny").model(device or "cpu")
    passes, _ = render_avatars(model, [fit], AttributeSource(per_image=[people]))
    return passes[0].pose_keypoint


@dataclass
class ImageEvaluation:
    """The measures of one image. ``identity``: faces and whether they leak (None: not checked);
    ``pose``: per input person, the output's keypoints against the input's (None: not
    measured); ``avatar_pose``: the avatars' own keypoints against the input's (None: not given);
    ``sources``: where the keypoints came from; ``seconds``: time per measure."""

    identity: IdentityResult | None = None
    pose: list[PersonPose] | None = None
    avatar_pose: list[PersonPose] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """The identity verdict: True when no face leaks (None: identity not checked)."""
        return None if self.identity is None else self.identity.passed

    def to_dict(self) -> dict:
        return {
            "identity": None if self.identity is None else self.identity.to_dict(),
            "pose": None if self.pose is None else [p.to_dict() for p in self.pose],
            "avatar_pose": None if self.avatar_pose is None else [p.to_dict() for p in self.avatar_pose],
            "sources": dict(self.sources), "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }

    def summary(self) -> list[str]:
        """Short lines for a node's text display."""
        lines = []
        if self.identity is not None:
            lines.append(("PASS" if self.identity.passed else "FAIL") + f" identity: {self.identity.summary()}")
        for name, rows in (("pose kept", self.pose), ("avatar pose", self.avatar_pose)):
            if rows is not None:
                if rows:
                    oks = sum(r.oks for r in rows) / len(rows)
                    pck = sum(r.pck["0.1"] for r in rows) / len(rows)
                    lines.append(f"{name}: OKS {oks:.3f}, PCK@0.1 {pck:.3f} over {len(rows)} person(s)")
                else:
                    lines.append(f"{name}: no person in the input keypoints")
        return lines


class Evaluator:
    """Evaluates photo/output pairs; the face models and the person detector load once, on
    first use, on ``device`` (model files from ``model_dirs`` or the default folders,
    :func:`refsd.detect.default_detect_dirs`).

    ``identity`` / ``pose``: which measures run; ``threshold``: SFace cosine at which a face
    counts as the same person; ``detect_model``: the landmark model of the person detector that
    finds people on outputs (and on photos without keypoints); ``min_confidence``: keypoints
    below it count as absent.
    """

    def __init__(self, *, identity: bool = True, pose: bool = True, threshold: float = SFACE_COSINE_THRESHOLD,
                 detect_model: str = "full", model_dirs=None, device=None, min_confidence: float = 0.3,
                 min_score: float = 0.5, max_people: int = 8):
        if not 0.0 < float(threshold) <= 1.0:
            raise EvaluationError(f"threshold is {threshold}; use a cosine in (0, 1] (SFace's own: 0.363)")
        self.identity, self.pose = bool(identity), bool(pose)
        self.threshold, self.detect_model = float(threshold), str(detect_model)
        self.model_dirs, self.device = model_dirs, device
        self.min_confidence, self.min_score, self.max_people = float(min_confidence), float(min_score), int(max_people)
        self._faces: FaceAnalyzer | None = None
        self._detector: PersonDetector | None = None

    def faces(self) -> FaceAnalyzer:
        if self._faces is None:
            self._faces = FaceAnalyzer(model_dirs=self.model_dirs, device=self.device)
        return self._faces

    def detector(self) -> PersonDetector:
        if self._detector is None:
            self._detector = PersonDetector(self.detect_model, self.model_dirs, device=self.device)
        return self._detector

    def detect(self, image) -> FrameKeypoints:
        """The people RefSD's detector finds on ``image`` (a keypoint frame in its pixels)."""
        return self.detector()(image, min_score=self.min_score, max_people=self.max_people).frame()

    def __call__(self, original, output, keypoints: Any = None, *, output_keypoints: Any = None,
                 avatar_keypoints: Any = None) -> ImageEvaluation:
        """Evaluate one pair. ``keypoints``: the people of the photo (see :func:`as_frame`; None:
        detected on the photo); ``output_keypoints``: people found on the output by any means
        (None: RefSD's detector); ``avatar_keypoints``: the avatars' own keypoints (optional)."""
        o = as_rgb_image(original)
        p = as_rgb_image(output)
        if o.shape != p.shape:
            raise EvaluationError(f"the photo is {o.shape[1]}x{o.shape[0]} but the output is {p.shape[1]}x{p.shape[0]}; "
                                  "an output must be compared with the photo it was made from")
        size = (int(o.shape[1]), int(o.shape[0]))
        ev = ImageEvaluation()
        t = time.perf_counter()
        if keypoints is None:
            ref = self.detect(o) if (self.pose or self.identity) else None
            ev.sources["input"] = "detect"
        else:
            ref = as_frame(keypoints, size, self.min_confidence)
            ev.sources["input"] = "given"
        ev.seconds["input_keypoints"] = time.perf_counter() - t
        if self.identity:
            t = time.perf_counter()
            ev.identity = check_identity(o, p, ref.people if ref is not None else None, analyzer=self.faces(),
                                         threshold=self.threshold)
            ev.seconds["identity"] = time.perf_counter() - t
        if self.pose:
            t = time.perf_counter()
            if output_keypoints is None:
                found = self.detect(p)
                ev.sources["output"] = f"detect:{self.detect_model}"
            else:
                found = as_frame(output_keypoints, size, self.min_confidence)
                ev.sources["output"] = "given"
            ev.pose = compare_frames(ref, found, min_confidence=self.min_confidence)
            ev.seconds["pose"] = time.perf_counter() - t
        if avatar_keypoints is not None and ref is not None:
            ev.avatar_pose = compare_frames(ref, as_frame(avatar_keypoints, size, self.min_confidence),
                                            min_confidence=self.min_confidence)
            ev.sources["avatar"] = "given"
        return ev

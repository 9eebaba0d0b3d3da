"""Stage 7, evaluate: is the output private, faithful and useful? (HumanGenAI's automatic part)

Modules, in import order: :mod:`~refsd.evaluate.pose` (OKS / PCK of the output's keypoints
against the input's, per joint group), :mod:`~refsd.evaluate.attributes` (the sampled people
against the requested distribution: counts, chi-square; against a classifier's labels),
:mod:`~refsd.evaluate.identity` (every face of the photo against the output with RefSD's face
models, blur-aware: :func:`check_identity`), :mod:`~refsd.evaluate.image` (:class:`Evaluator`:
one photo/output pair, all measures), :mod:`~refsd.evaluate.video` (:func:`evaluate_video`: a
video's decoded frame pairs, every N-th frame, each like a photo), :mod:`~refsd.evaluate.report` /
:mod:`~refsd.evaluate.plots` (a dataset's ``eval.json``, ``report.md`` and plots). ``refsd eval``
(:mod:`refsd.cli.evaluate`) runs it over a run's manifest.

>>> from refsd.evaluate import Evaluator                              # doctest: +SKIP
>>> ev = Evaluator()(photo, output, keypoints="photo.json")
>>> ev.identity.passed, ev.pose[0].oks
"""

from __future__ import annotations

from .attributes import (
    AGE_BANDS,
    categories,
    chi_square,
    expected_marginals,
    observed_vs_sampled,
    sampled_vs_requested,
)
from .identity import BLUR_LEVELS, FaceMatch, IdentityError, IdentityResult, check_identity, gaussian_blur, head_boxes
from .image import EvaluationError, Evaluator, ImageEvaluation, as_frame, avatar_pose_keypoint
from .pose import JOINT_GROUPS, PCK_THRESHOLDS, SIGMAS, PersonPose, compare_frames, compare_people, oks_terms
from .report import summarize, write_report
from .video import AVATAR_POSE_NOTE, VideoError, VideoEvaluation, evaluate_video, paired_frames

__all__ = [
    "AGE_BANDS",
    "AVATAR_POSE_NOTE",
    "BLUR_LEVELS",
    "JOINT_GROUPS",
    "PCK_THRESHOLDS",
    "SIGMAS",
    "EvaluationError",
    "Evaluator",
    "FaceMatch",
    "IdentityError",
    "IdentityResult",
    "ImageEvaluation",
    "PersonPose",
    "VideoError",
    "VideoEvaluation",
    "as_frame",
    "avatar_pose_keypoint",
    "categories",
    "check_identity",
    "chi_square",
    "compare_frames",
    "compare_people",
    "evaluate_video",
    "expected_marginals",
    "gaussian_blur",
    "head_boxes",
    "observed_vs_sampled",
    "oks_terms",
    "paired_frames",
    "sampled_vs_requested",
    "summarize",
    "write_report",
]

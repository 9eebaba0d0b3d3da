"""Perception studies of a run's output: ``refsd study create | serve | report``.

Human raters judge the pseudonymized people on 1-5 agreement scales, as in the RefSD paper:
psi-A privacy (original vs replacement, both cut out on grey: the same person?), psi-B pose
(side by side), psi-C realism and satisfaction, and phi attribute fidelity (one statement per
requested attribute). Modules: :mod:`~refsd.study.definition` (study.json, per-rater order),
:mod:`~refsd.study.questions` (the statements), :mod:`~refsd.study.crops` (person masks and
pictures), :mod:`~refsd.study.create` (a study from a manifest), :mod:`~refsd.study.store`
(answers in SQLite), :mod:`~refsd.study.server` (the web app), :mod:`~refsd.study.stats`,
:mod:`~refsd.study.report` and :mod:`~refsd.study.plots` (the results).
"""

from __future__ import annotations

from .create import create_study, read_manifest, resolve_files
from .definition import DB_FILE, FAMILIES, FAMILY_ORDER, LIKERT_LABELS, STUDY_FILE, Study, StudyError, normalize_name
from .questions import PHI_ATTRIBUTES, phi_statements
from .stats import describe, ordinal_alpha, t_quantile
from .store import AnswerRefused, AnswerStore

__all__ = [
    "DB_FILE",
    "FAMILIES",
    "FAMILY_ORDER",
    "LIKERT_LABELS",
    "PHI_ATTRIBUTES",
    "STUDY_FILE",
    "AnswerRefused",
    "AnswerStore",
    "Study",
    "StudyError",
    "create_study",
    "describe",
    "normalize_name",
    "ordinal_alpha",
    "phi_statements",
    "read_manifest",
    "resolve_files",
    "t_quantile",
]

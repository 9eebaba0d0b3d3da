"""``BodyFit``: the typed, JSON-serialisable result of fitting bodies to one image.

Coordinates: every person's parameters put the body model directly into **OpenCV camera
space** (x right, y down, z forward, metres): ``model(global_orient, body_pose, shape,
transl, ...)`` returns camera-space vertices, and ``camera`` projects them onto the image
(``u = fx * x / z + cx``, pixel centres at ``j + 0.5``). JSON round trips are lossless:
floats are written with Python's shortest round-trip representation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RefSDError

__all__ = ["BodyFit", "PersonFit", "FitError", "FIT_FORMAT_VERSION"]

FIT_FORMAT_VERSION = 1
QUALITY = ("good", "poor")


class FitError(RefSDError):
    """Bad input to the fitter, or a BodyFit file that cannot be read."""


def _floats(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_floats(v) for v in x]
    if hasattr(x, "tolist"):
        return _floats(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    return float(x)


@dataclass
class PersonFit:
    """One fitted person (``keypoint_index``: their index in the keypoint frame's people)."""

    global_orient: list[float]  # (3,) axis-angle, camera frame
    body_pose: list[list[float]]  # (21, 3) axis-angle, SMPL local rotations
    shape: list[float]  # (S,) the body model's shape vector (Anny: named phenotypes)
    transl: list[float]  # (3,) pelvis position in camera space (m)
    reproj_error_px: float  # RMS over the confident keypoints that were fitted
    quality: str  # "good" or "poor"
    keypoint_index: int = 0
    num_keypoints: int = 0
    hand_pose: list | None = None
    expression: list[float] | None = None
    #: Uniform scale of the posed body about its pelvis (``transl``); 1 for fits. Avatars whose
    #: shape is shorter or taller than the fitted body use it to cover the same image area.
    scale: float = 1.0
    #: Who the person is across a video's frames (the keypoints' ``track_id``); None for a still image.
    #: Attributes and seeds then derive from the track, so the same person gets the same replacement.
    track_id: int | None = None

    def __post_init__(self) -> None:
        self.scale = float(self.scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise FitError(f"scale must be a positive number, got {self.scale}")
        self.global_orient = _floats(self.global_orient)
        self.body_pose = _floats(self.body_pose)
        self.shape = _floats(self.shape)
        self.transl = _floats(self.transl)
        self.reproj_error_px = float(self.reproj_error_px)
        if self.hand_pose is not None:
            self.hand_pose = _floats(self.hand_pose)
        if self.expression is not None:
            self.expression = _floats(self.expression)
        if self.quality not in QUALITY:
            raise FitError(f"quality {self.quality!r} is not one of {QUALITY}")
        if len(self.global_orient) != 3 or len(self.transl) != 3:
            raise FitError("global_orient and transl must have 3 numbers each")
        if any(len(r) != 3 for r in self.body_pose):
            raise FitError("body_pose must be a list of [x, y, z] axis-angle triples")


@dataclass
class BodyFit:
    """Fitted bodies of one image."""

    model_id: str
    image_width: int
    image_height: int
    camera: dict[str, float]  # fx, fy, cx, cy (pixels)
    people: list[PersonFit] = field(default_factory=list)
    skipped: list[list] = field(default_factory=list)  # [keypoint index, reason]
    warnings: list[str] = field(default_factory=list)
    shape_names: list[str] = field(default_factory=list)
    version: int = FIT_FORMAT_VERSION

    @property
    def num_people(self) -> int:
        return len(self.people)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        d = self.to_dict()
        for p in d["people"]:
            for k, v in p.items():
                if isinstance(v, float) and not math.isfinite(v):
                    p[k] = None
        return json.dumps(d, indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> BodyFit:
        if not isinstance(d, dict) or "model_id" not in d or "people" not in d:
            raise FitError(
                "not a RefSD body fit: expected a JSON object with 'model_id', 'people', 'camera' "
                "(written by RefSD Save Body Fit)."
            )
        if d.get("version", 1) > FIT_FORMAT_VERSION:
            raise FitError(
                f"body fit format version {d['version']} is newer than this RefSD ({FIT_FORMAT_VERSION}); update RefSD."
            )
        try:
            people = [PersonFit(**p) for p in d["people"]]
            kw = {k: v for k, v in d.items() if k != "people"}
            return cls(people=people, **kw)
        except TypeError as e:
            raise FitError(f"body fit JSON has unexpected or missing fields: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> BodyFit:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise FitError(f"body fit is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from e

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BodyFit:
        path = Path(path)
        if not path.is_file():
            raise FitError(f"body fit file not found: {path}")
        return cls.from_json(path.read_text(encoding="utf-8"))

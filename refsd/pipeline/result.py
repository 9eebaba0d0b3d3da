"""What a pipeline run produces: :class:`PipelineResult` (one image's output, masks, privacy
measure, timings and notes), the timed :data:`STAGES`, the per-person diffusion seed
:func:`person_seed`, and the per-image state between the stages before and after refinement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..people import PersonAttributes
from .io import to_uint8

__all__ = ["STAGES", "PipelineResult", "person_seed"]

#: The timed stages, in order (seconds in :attr:`PipelineResult.timings`).
STAGES = ("detect", "fit", "render", "remove", "refine", "composite", "identity")

def person_seed(seed: int, person_index: int, track_id: int | None = None) -> int:
    """The diffusion seed of one person's crop, from the image seed and the person's keypoint index,
    or, for a tracked person of a video (``track_id``), from the video's seed and the track: the same
    noise in every frame."""
    key = f"{int(seed)}:person:{int(person_index)}" if track_id is None else f"{int(seed)}:track:{int(track_id)}"
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


@dataclass
class PipelineResult:
    """What one image's run produced (tensors on the CPU).

    ``image`` is the output ``(H, W, 3)`` in 0..1, on uint8 levels (what :meth:`pil` saves);
    ``region`` the grown person mask (nothing outside it differs from the input);
    ``leak_ratio`` the privacy measure over ``region`` (0: no pixel of the original people
    survives); ``identity`` the faces of the photo compared with the output (a face recogniser
    still seeing a person fails ``privacy_passed`` too); ``timings`` seconds per stage (:data:`STAGES`); ``notes`` warnings
    (skipped people, out-of-memory retries). ``people_source`` says where the people came
    from ("file": the keypoints, "detect": the person detector, whose per-person
    ``{"score", "presence", "box"}`` are ``detections``; None for keypoints).
    """

    image: torch.Tensor
    seed: int
    people: list[PersonAttributes]
    fit: Any
    region: torch.Tensor
    person_masks: torch.Tensor
    background: torch.Tensor
    avatar: torch.Tensor
    avatar_mask: torch.Tensor
    leak_ratio: float
    privacy_passed: bool
    crop_boxes: list = field(default_factory=list)
    prompts: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    people_source: str = "file"
    detections: list[dict] | None = None
    #: faces of the photo vs the output (:class:`refsd.evaluate.IdentityResult`; None: not checked)
    identity: Any = None

    @property
    def num_people(self) -> int:
        return self.fit.num_people

    @property
    def unfitted(self) -> list:
        """``[keypoint index, reason]`` of people in the keypoints that could not be fitted (they
        were NOT replaced)."""
        return list(self.fit.skipped)

    def pil(self):
        from PIL import Image

        return Image.fromarray(to_uint8(self.image))

    def fit_summary(self) -> dict:
        return {"people": self.fit.num_people, "rms_px": [round(p.reproj_error_px, 2) for p in self.fit.people],
                "quality": [p.quality for p in self.fit.people], "skipped": [list(s) for s in self.fit.skipped]}

    def attributes_dicts(self) -> list[dict]:
        return [a.to_dict() for a in self.people]


@dataclass
class _Prepared:
    """Per-image state between the stages before and after refinement."""

    index: int
    seed: int
    image: torch.Tensor
    fit: Any
    people: list
    passes: Any
    region: torch.Tensor
    per: torch.Tensor
    background: torch.Tensor
    composite: torch.Tensor
    boxes: list = field(default_factory=list)
    crops: Any = None
    maps: dict = field(default_factory=dict)
    masks: Any = None
    prompts: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    people_source: str = "file"
    detections: list | None = None
    pose_keypoint: Any = None


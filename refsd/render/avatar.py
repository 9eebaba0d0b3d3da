"""Avatars: fitted poses + chosen or sampled attributes -> bodies, materials, render passes.

An :class:`AttributeSource` is what the attribute nodes produce: fixed attributes for every
person, explicit per-image lists, or a seeded :class:`~refsd.people.distribution.AttributeDistribution`
resolved per person (``seed``, image index, person index) so that a person's attributes do not
change when other people are added. The avatar keeps each fitted pose and position and takes
its body shape (gender, age, height, weight, muscle) from the attributes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..fit.result import BodyFit
from ..people import AttributeDistribution, AttributesError, PersonAttributes, anny_shape, smplx_shape

__all__ = ["AttributeSource", "avatar_fit", "avatar_vertex_colors", "render_avatars"]


@dataclass
class AttributeSource:
    """Where each person's attributes come from (exactly one of the three is set)."""

    fixed: PersonAttributes | None = None
    per_image: list[list[PersonAttributes]] | None = None
    distribution: AttributeDistribution | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.fixed, self.per_image, self.distribution)) != 1:
            raise AttributesError("an AttributeSource needs exactly one of fixed, per_image or distribution")

    def resolve(self, fits: list[BodyFit]) -> list[list[PersonAttributes]]:
        """The attributes of every person of every image (same shape as the fits' people)."""
        if self.fixed is not None:
            return [[self.fixed] * f.num_people for f in fits]
        if self.distribution is not None:  # a tracked person (video) is drawn from (seed, track): one look per track
            return [
                [self.distribution.sample_person(self.seed, *((0, p.track_id) if p.track_id is not None
                                                               else (i, p.keypoint_index))) for p in f.people]
                for i, f in enumerate(fits)
            ]
        per = self.per_image
        if len(per) != len(fits):
            raise AttributesError(
                f"attributes are given for {len(per)} image(s) but there are {len(fits)} body fit(s); give one list "
                "per image (or use RefSD Sample Attributes, which adapts to any number of people)."
            )
        for i, (attrs, fit) in enumerate(zip(per, fits, strict=True)):
            if len(attrs) != fit.num_people:
                raise AttributesError(
                    f"image {i}: attributes for {len(attrs)} people but {fit.num_people} people were fitted; "
                    "give one entry per fitted person."
                )
        return per

    def to_dict(self) -> dict:
        if self.fixed is not None:
            return {"fixed": self.fixed.to_dict()}
        if self.distribution is not None:
            return {"distribution": self.distribution.to_dict(), "seed": self.seed}
        return {"per_image": [[a.to_dict() for a in img] for img in self.per_image]}


def _shape_for(model, attrs: PersonAttributes) -> list[float]:
    from ..body.anny_rig import ANNY_SHAPE_NAMES

    names = tuple(getattr(model, "shape_names", ()))
    if names == ANNY_SHAPE_NAMES:
        return anny_shape(attrs, model).tolist()
    _file, betas = smplx_shape(attrs, num_betas=len(names), model=model)
    return betas.tolist()


def _statures(model, shapes: list[list[float]]) -> torch.Tensor:
    """Rest-pose height (top of the head to the soles) of each shape, in metres."""
    params = model.zero_params(len(shapes))
    params["shape"] = torch.tensor(shapes, device=model.device, dtype=model.dtype)
    with torch.no_grad():
        y = model(**params).vertices[..., 1]
    return (y.max(1).values - y.min(1).values).double().cpu()


def avatar_fit(model, fit: BodyFit, people: list[PersonAttributes], keep_size: bool = True) -> BodyFit:
    """``fit`` with each person's shape replaced by the shape of their attributes (pose kept).

    With ``keep_size`` each avatar is scaled about its pelvis so that it is as tall as the
    fitted body: it then covers about the same image area as the original person (hands and
    feet near where theirs were). Without it the avatar has its own height at the fitted
    pelvis position.
    """
    if len(people) != fit.num_people:
        raise AttributesError(f"{len(people)} attribute sets for {fit.num_people} fitted people")
    shapes = [_shape_for(model, a) for a in people]
    scales = [1.0] * len(shapes)
    if keep_size and shapes:
        h = _statures(model, [p.shape for p in fit.people] + shapes)
        n = len(shapes)
        scales = (h[:n] / h[n:]).tolist()
    new_people = [
        dataclasses.replace(p, shape=shape, scale=p.scale * s)
        for p, shape, s in zip(fit.people, shapes, scales, strict=True)
    ]
    return dataclasses.replace(fit, people=new_people)


def avatar_vertex_colors(model, people: list[PersonAttributes]) -> torch.Tensor:
    """``(P, V, 3)`` per-vertex sRGB colours painted through the body-part labels."""
    from ..people import vertex_colors

    if not people:
        return torch.zeros(0, model.num_vertices, 3, device=model.device)
    return torch.stack([vertex_colors(a, model) for a in people])


def render_avatars(
    model, fits: list[BodyFit], source: AttributeSource, progress=None, keep_size: bool = True, **render_kw
):
    """Render every image's avatars. Returns ``(passes per image, attributes per image)``."""
    from .passes import render_passes

    people = source.resolve(fits)
    out = []
    for i, (fit, attrs) in enumerate(zip(fits, people, strict=True)):
        afit = avatar_fit(model, fit, attrs, keep_size=keep_size)
        colors = avatar_vertex_colors(model, attrs)
        out.append(render_passes(model, afit, colors, **render_kw))
        if progress is not None:
            progress(i + 1, len(fits))
    return out, people

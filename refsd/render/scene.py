"""A :class:`~refsd.fit.BodyFit` as a scene: its camera and one body-model forward for all people."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from ..fit.camera import Camera, RenderError
from .fragments import Fragments
from .raster import rasterize

if TYPE_CHECKING:
    from ..body.base import BodyModel, BodyOutput
    from ..fit.result import BodyFit

__all__ = ["fit_camera", "fit_output", "person_masks_from", "fit_person_masks"]


def fit_camera(fit) -> Camera:
    """The fit's pinhole camera at the fit's image size."""
    c = fit.camera
    return Camera(fx=c["fx"], fy=c["fy"], cx=c["cx"], cy=c["cy"], width=fit.image_width, height=fit.image_height)


def _per_person(
    fit: BodyFit, name: str, shape: tuple[int, ...], P: int, kw: dict, default: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Stack an optional per-person parameter (``hand_pose``, ``expression``); ``default`` (or
    zeros) for people without it."""
    values = [getattr(p, name, None) for p in fit.people]
    if all(v is None for v in values):
        return default
    out = torch.zeros(P, *shape, **kw) if default is None else default.clone()
    for i, v in enumerate(values):
        if v is None:
            continue
        t = torch.as_tensor(v, **kw)
        if t.numel() != math.prod(shape):
            raise RenderError(
                f"fit person {i} has a {name} of {t.numel()} numbers but the body model expects shape {shape}; "
                "render with the body model the fit was made with."
            )
        out[i] = t.reshape(shape)
    return out


def fit_output(model: BodyModel, fit: BodyFit) -> BodyOutput:
    """One forward of ``model`` for every person of ``fit`` (camera-space ``BodyOutput``).

    Uses each person's ``hand_pose`` / ``expression`` when the fit has them (otherwise the model's
    relaxed hand, :meth:`~refsd.body.base.BodyModel.relaxed_hand_pose`, and zero expression) and
    applies ``PersonFit.scale`` (a uniform scale of the posed body about its pelvis, ``transl``:
    the pelvis stays where it is, the body grows or shrinks around it).
    """
    P = len(fit.people)
    kw = {"device": model.device, "dtype": model.dtype}
    params = model.zero_params(P)
    try:
        params["global_orient"] = torch.tensor([p.global_orient for p in fit.people], **kw).reshape(P, 3)
        params["body_pose"] = torch.tensor([p.body_pose for p in fit.people], **kw).reshape(P, -1, 3)
        params["shape"] = torch.tensor([p.shape for p in fit.people], **kw).reshape(P, -1)
        params["transl"] = torch.tensor([p.transl for p in fit.people], **kw).reshape(P, 3)
    except (ValueError, RuntimeError, TypeError) as e:
        raise RenderError(
            f"the fit's people have inconsistent parameter sizes ({e}); every person must come from the same "
            "body model -- refit or reload the body fit."
        ) from e
    if model.hand_pose_shape is not None:
        relaxed = model.relaxed_hand_pose(P)  # fits made without finger angles get relaxed hands
        hp = _per_person(fit, "hand_pose", tuple(model.hand_pose_shape), P, kw, default=relaxed)
        if hp is not None:
            params["hand_pose"] = hp
    if model.expression_dim:
        ex = _per_person(fit, "expression", (model.expression_dim,), P, kw)
        if ex is not None:
            params["expression"] = ex
    with torch.no_grad():
        out = model(**params)
    # PersonFit.scale: uniform scale of the posed body about its pelvis (transl).
    scale = [float(getattr(p, "scale", 1.0)) for p in fit.people]
    if any(x != 1.0 for x in scale):
        if not all(math.isfinite(x) and x > 0 for x in scale):
            raise RenderError(f"fit people have scales {scale}; each must be a positive number (1 for fits).")
        k = torch.tensor(scale, **kw)

        pelvis = params["transl"]

        def sc(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            view = (P, *([1] * (t.dim() - 2)), 3)
            return pelvis.view(view) + (t - pelvis.view(view)) * k.view(P, *([1] * (t.dim() - 1)))

        out = dataclasses.replace(
            out,
            vertices=sc(out.vertices),
            joints=sc(out.joints),
            pose_joints=sc(out.pose_joints),
            coco18=sc(out.coco18),
            body25=sc(out.body25),
            hands=sc(out.hands),
            face=sc(out.face),
        )
    return out


def person_masks_from(fragments: Fragments, num_people: int) -> torch.Tensor:
    """``(P, H, W)`` float silhouettes of each person's visible pixels."""
    ids = torch.arange(num_people, device=fragments.person_idx.device).view(num_people, 1, 1)
    return (fragments.person_idx.unsqueeze(0) == ids).to(torch.float32)


def fit_person_masks(model: BodyModel, fit: BodyFit) -> torch.Tensor:
    """Visible silhouette of every fitted person ``(P, H, W)`` (one forward, one rasterization)."""
    cam = fit_camera(fit)
    if not fit.people:
        return torch.zeros(0, cam.height, cam.width, device=model.device)
    verts = fit_output(model, fit).vertices.float()
    return person_masks_from(rasterize(verts, model.faces, cam), len(fit.people))

"""Body shape of a person: :class:`~refsd.people.spec.PersonAttributes` -> body-model shape.

:func:`anny_shape` gives the Anny phenotypes (gender, age, muscle, weight, height,
proportions), with the height phenotype solved so the rest-pose mesh is the person's
:attr:`~refsd.people.spec.PersonAttributes.stature_m` tall (on the model itself, or from
a table measured on anny 0.6.2). :func:`smplx_shape` gives the SMPL-X
gender file and (approximate) shape coefficients, :func:`smplx_gender` the SMPL-X gender.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch

from .spec import STATURE_CV, PersonAttributes, _as_attrs, _median_stature
from .vocabulary import AttributesError

__all__ = [
    "anny_shape",
    "smplx_shape",
    "smplx_gender",
]

#: Anny's rest-pose stature (metres) at height phenotype 0 and 1, by age in years, for
#: male (gender 0) and female (gender 1), at weight = muscle = proportions = 0.5. Measured
#: on anny 0.6.2; used by anny_shape only when no model is passed.
_ANNY_STATURE = (
    # years, male h=0, male h=1, female h=0, female h=1
    (1.0, 0.532, 1.049, 0.516, 1.032),
    (2.0, 0.620, 1.223, 0.584, 1.184),
    (3.0, 0.712, 1.398, 0.655, 1.338),
    (5.0, 0.854, 1.666, 0.767, 1.573),
    (8.0, 1.002, 1.943, 0.883, 1.816),
    (11.0, 1.095, 2.079, 0.968, 1.945),
    (14.0, 1.260, 2.310, 1.125, 2.169),
    (16.0, 1.367, 2.460, 1.231, 2.317),
    (18.0, 1.356, 2.450, 1.224, 2.309),
    (25.0, 1.355, 2.450, 1.223, 2.308),
    (40.0, 1.353, 2.448, 1.222, 2.307),
    (64.0, 1.350, 2.445, 1.220, 2.305),
    (80.0, 1.345, 2.440, 1.218, 2.301),
    (100.0, 1.338, 2.434, 1.217, 2.299),
)


def _table_stature(years: float, female: bool) -> tuple[float, float]:
    t = _ANNY_STATURE
    cols = (3, 4) if female else (1, 2)
    if years <= t[0][0]:
        return t[0][cols[0]], t[0][cols[1]]
    for a, b in zip(t, t[1:], strict=False):
        if years <= b[0]:
            w = (years - a[0]) / (b[0] - a[0])
            return tuple(a[c] + w * (b[c] - a[c]) for c in cols)  # type: ignore[return-value]
    return t[-1][cols[0]], t[-1][cols[1]]


def _statures(model: Any, shapes: torch.Tensor) -> torch.Tensor:
    """Rest-pose vertical extent (metres) of ``model`` for each row of ``shapes``."""
    params = model.zero_params(shapes.shape[0])
    params["shape"] = shapes.to(device=model.device, dtype=model.dtype)
    with torch.no_grad():
        v = model(**params).vertices[..., 1]
    return (v.amax(dim=1) - v.amin(dim=1)).to(torch.float64).cpu()


def anny_shape(attrs: PersonAttributes | Mapping[str, Any], model: Any = None) -> torch.Tensor:
    """Anny shape vector ``(6,)`` (phenotypes gender, age, muscle, weight, height, proportions).

    * ``gender``: female 1.0, male 0.0; ``age``: :func:`refsd.body.anny_rig.age_from_years`;
      ``muscle`` / ``weight``: the attributes as they are (same 0..1 scale, 0.5 = average);
      ``proportions``: the model's default (0.5).
    * ``height``: the phenotype that makes the rest-pose mesh :attr:`PersonAttributes.stature_m`
      tall (top of the head to the soles). With ``model`` (an Anny body model) it is solved
      on the model itself (one batched rest-pose evaluation at height 0, 0.5, 1 and
      piecewise-linear interpolation; within a few mm); without, from a table measured on
      anny 0.6.2 (within ~1 cm at average weight and muscle, a few cm at extremes). Clamped to Anny's 0..1, so very short/tall targets (e.g. for toddlers)
      are approached as closely as Anny allows.

    Returns a tensor on the model's device/dtype (CPU float32 without a model).
    """
    from ..body.anny_rig import ANNY_SHAPE_NAMES, age_from_years

    attrs = _as_attrs(attrs)
    female = attrs.gender == "female"
    if model is not None and tuple(getattr(model, "shape_names", ())) != ANNY_SHAPE_NAMES:
        raise AttributesError(
            f"anny_shape needs the Anny body model (shape {ANNY_SHAPE_NAMES}), got one with shape "
            f"{tuple(getattr(model, 'shape_names', ()))}. Use smplx_shape for SMPL-X, or pass model=None."
        )
    proportions = 0.5 if model is None else float(model.default_shape(1)[0, ANNY_SHAPE_NAMES.index("proportions")])
    base = torch.tensor(
        [1.0 if female else 0.0, float(age_from_years(attrs.age)), attrs.muscle, attrs.weight, 0.5, proportions],
        dtype=torch.float64,
    )
    hi_idx = ANNY_SHAPE_NAMES.index("height")
    target = attrs.stature_m
    if model is None:
        s0, s1 = _table_stature(attrs.age, female)
        h = (target - s0) / (s1 - s0)
    else:
        probe = base.repeat(3, 1)
        probe[:, hi_idx] = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        s0, sm, s1 = _statures(model, probe).tolist()
        # Piecewise-linear through (0, s0), (0.5, sm), (1, s1), extrapolated at the ends.
        h = 0.5 * (target - s0) / (sm - s0) if target < sm else 0.5 + 0.5 * (target - sm) / (s1 - sm)
    base[hi_idx] = min(1.0, max(0.0, h))
    if model is None:
        return base.to(torch.float32)
    return base.to(device=model.device, dtype=model.dtype)


def smplx_gender(attrs: PersonAttributes | Mapping[str, Any]) -> str:
    """The SMPL-X gender (``"female"`` / ``"male"``) for ``get_body_model("smplx", gender=...)``."""
    return _as_attrs(attrs).gender


def _girth(model: Any, shapes: torch.Tensor) -> torch.Tensor:
    """Mean horizontal distance of the torso vertices from their centroid, per shape row."""
    from ..body.base import PART_INDEX

    params = model.zero_params(shapes.shape[0])
    params["shape"] = shapes.to(device=model.device, dtype=model.dtype)
    with torch.no_grad():
        v = model(**params).vertices[:, model.part_labels == PART_INDEX["torso"]][..., [0, 2]].to(torch.float64)
    return (v - v.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=1).cpu()


def smplx_shape(
    attrs: PersonAttributes | Mapping[str, Any], num_betas: int = 10, model: Any = None
) -> tuple[str, torch.Tensor]:
    """SMPL-X gender file name and shape coefficients ``(num_betas,)`` for ``attrs``.

    Returns ``(file_name, betas)``, e.g. ``("SMPLX_FEMALE.npz", tensor([...]))``; build the
    model with ``get_body_model("smplx", gender=smplx_gender(attrs))``.

    The mapping is **approximate**: SMPL-X's betas are PCA coefficients with no guaranteed
    meaning or sign. Only two are set, the rest stay 0:

    * ``beta0`` ~ overall size / stature, ``beta1`` ~ weight (girth).
    * Without ``model``: a rough prior, ``beta0`` = the stature's z-score against the adult
      median of :data:`STATURE_TABLE` (assuming +beta0 = taller, ~1 SD per unit) and
      ``beta1 = 4 * (weight - 0.5)`` (assuming +beta1 = heavier).
    * With ``model`` (an SMPL-X body model, ideally of the returned gender): calibrated on
      it -- the sign of ``beta1`` is chosen so more weight means a wider torso, and
      ``beta0`` is solved so the rest-pose mesh is :attr:`PersonAttributes.stature_m` tall.
      ``num_betas`` is then the model's.

    ``muscle`` and the age's body proportions have no SMPL-X equivalent here (SMPL-X has no
    child shape space); every beta is clamped to [-3, 3].
    """
    from ..body.smplx_files import SMPLX_FILE_NAMES

    attrs = _as_attrs(attrs)
    file_name = SMPLX_FILE_NAMES[attrs.gender]
    if model is not None:
        names = tuple(getattr(model, "shape_names", ()))
        if not names or not all(n.startswith("beta") for n in names):
            raise AttributesError(
                f"smplx_shape needs an SMPL-X body model (shape beta0..), got one with shape {names}. "
                "Use anny_shape for Anny, or pass model=None."
            )
        num_betas = len(names)
    if isinstance(num_betas, bool) or not isinstance(num_betas, numbers.Integral) or not 2 <= int(num_betas) <= 300:
        raise AttributesError(f"num_betas={num_betas!r}: use an integer in [2, 300] (SMPL-X files have 10 or 300).")
    betas = torch.zeros(int(num_betas), dtype=torch.float64)
    target = attrs.stature_m
    w = 4.0 * (attrs.weight - 0.5)
    if model is None:
        adult = _median_stature(attrs.gender, 40.0)
        betas[0] = (target / adult - 1.0) / STATURE_CV
        betas[1] = w
        return file_name, betas.clamp(-3.0, 3.0).to(torch.float32)
    probe = torch.zeros(2, int(num_betas), dtype=torch.float64)
    probe[0, 1], probe[1, 1] = -1.0, 1.0
    g = _girth(model, probe)
    betas[1] = max(-3.0, min(3.0, w if float(g[1]) >= float(g[0]) else -w))
    ends = betas.repeat(2, 1)
    ends[0, 0], ends[1, 0] = -1.0, 1.0
    s_lo, s_hi = _statures(model, ends).tolist()
    if abs(s_hi - s_lo) > 1e-6:
        b0 = -1.0 + 2.0 * (target - s_lo) / (s_hi - s_lo)
        betas[0] = max(-3.0, min(3.0, b0))
    return file_name, betas.to(device=model.device, dtype=model.dtype)

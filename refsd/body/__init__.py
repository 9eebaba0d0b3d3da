"""Parametric human body models behind one interface (see :mod:`refsd.body.base`).

>>> from refsd.body import get_body_model
>>> model = get_body_model("anny", device="cuda", dtype=torch.float32)   # doctest: +SKIP
>>> out = model(**model.zero_params(batch_size=4))                        # doctest: +SKIP
>>> out.vertices.shape, out.coco18.shape, model.faces.shape               # doctest: +SKIP

Backends:

* ``"anny"`` (default): :class:`refsd.body.anny_backend.AnnyBody`. Needs nothing but the
  ``anny`` package; its first construction builds a cache (about 1-2 minutes, once; see
  :mod:`refsd.body.anny_cache`). Shape vector, bone maps and age helpers:
  :mod:`refsd.body.anny_rig`.
* ``"smplx"``: :class:`refsd.body.smplx_backend.SMPLXBody`, from user-supplied SMPL-X ``.npz``
  files (https://smpl-x.is.tue.mpg.de; found and loaded by :mod:`refsd.body.smplx_files`).

Importing this package is cheap: anny and smplx are imported, and models built, only when
:func:`get_body_model` (or a backend class) is called.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import (
    BODY25_NAMES,
    COCO18_NAMES,
    FACE68_SIZE,
    HAND21_NAMES,
    HAND_JOINT_NAMES,
    PART_INDEX,
    PART_NAMES,
    POSE_JOINT_NAMES,
    POSE_JOINT_PARENTS,
    BodyModel,
    BodyModelError,
    BodyOutput,
)

__all__ = [
    "BodyModel",
    "BodyModelError",
    "BodyOutput",
    "PART_NAMES",
    "PART_INDEX",
    "POSE_JOINT_NAMES",
    "POSE_JOINT_PARENTS",
    "HAND_JOINT_NAMES",
    "HAND21_NAMES",
    "COCO18_NAMES",
    "BODY25_NAMES",
    "FACE68_SIZE",
    "BODY_MODEL_NAMES",
    "DEFAULT_BODY_MODEL",
    "get_body_model",
]

#: Names accepted by :func:`get_body_model`.
BODY_MODEL_NAMES: tuple[str, ...] = ("anny", "smplx")
DEFAULT_BODY_MODEL = "anny"


def get_body_model(
    name: str = DEFAULT_BODY_MODEL,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **kw: Any,
) -> BodyModel:
    """Build a body model by name.

    Args:
        name: one of :data:`BODY_MODEL_NAMES` (case-insensitive).
        device, dtype: where the model lives (default CPU, float32).
        **kw: backend options --
            anny: ``cache_dir``, ``progress(fraction, message)``, ``skinning``;
            smplx: ``model_dir``, ``gender``, ``num_betas``, ``num_expression_coeffs``,
            ``num_pca_comps``, ``flat_hand_mean``, ``use_face_contour``.
    Raises:
        BodyModelError: unknown name or option, missing model files, ...
    """
    key = str(name).strip().lower()
    if key == "anny":
        from .anny_backend import AnnyBody

        cls: type[BodyModel] = AnnyBody
    elif key in ("smplx", "smpl-x"):
        from .smplx_backend import SMPLXBody

        cls = SMPLXBody
    else:
        raise BodyModelError(
            f"Unknown body model {name!r}. Use one of: {', '.join(BODY_MODEL_NAMES)} (default {DEFAULT_BODY_MODEL!r})."
        )
    try:
        return cls(device=device, dtype=dtype, **kw)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise BodyModelError(f"{key}: {e}. See get_body_model's docstring for the options of each model.") from e
        raise

"""Lazily built, cached body models and fitters (what the ComfyUI nodes pass around).

A :class:`BodyModelSpec` is small and hashable: building it (the Anny cache on first use,
the keypoint proxy of the fitter) happens on first use and is cached per process, so
re-running a graph does not rebuild anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..body.base import BodyModelError

__all__ = ["BodyModelSpec", "GENDERS"]

GENDERS = ("neutral", "female", "male")
_MODELS: dict = {}
_FITTERS: dict = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class BodyModelSpec:
    """Which body model to use.

    * ``name="anny"``: the default, CC0 model; ``gender`` sets the starting phenotype
      (neutral 0.5, female 1.0, male 0.0); ``cache_dir`` where its cache lives.
    * ``name="smplx"``: ``file`` is the path of an ``SMPLX_*.npz`` file; its gender comes from
      the file name.
    """

    name: str = "anny"
    gender: str = "neutral"
    file: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.gender not in GENDERS:
            raise BodyModelError(f"unknown gender {self.gender!r}; use one of {', '.join(GENDERS)}")
        if self.name == "smplx" and not self.file:
            raise BodyModelError("SMPL-X needs the path of an SMPLX_*.npz file (put it in ComfyUI/models/smplx/)")

    @property
    def label(self) -> str:
        return "anny" if self.name == "anny" else f"smplx:{Path(self.file).name}"

    def model(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, progress=None):
        from ..body import get_body_model

        key = (self, str(device), dtype)
        with _LOCK:
            if key not in _MODELS:
                if self.name == "anny":
                    m = get_body_model("anny", device=device, dtype=dtype, cache_dir=self.cache_dir, progress=progress)
                elif self.name == "smplx":
                    path = Path(self.file)
                    gender = path.stem.split("_")[-1].lower()
                    gender = gender if gender in GENDERS else "neutral"
                    m = get_body_model("smplx", device=device, dtype=dtype, model_dir=str(path.parent), gender=gender)
                else:
                    from ..body import BODY_MODEL_NAMES

                    raise BodyModelError(
                        f"unknown body model {self.name!r}; use one of {', '.join(BODY_MODEL_NAMES)}"
                    )
                _MODELS[key] = m
            return _MODELS[key]

    def start_shape(self, model) -> torch.Tensor | None:
        if self.name == "anny" and self.gender != "neutral":
            return model.shape_from(1, gender=1.0 if self.gender == "female" else 0.0)[0]
        return None

    def fitter(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, progress=None):
        from . import BodyFitter

        # On the CPU the keypoint proxy's least squares (and so every fit) depends in the last bits on
        # torch's thread count; one fitter per thread count keeps results reproducible in a process.
        threads = torch.get_num_threads() if torch.device(device).type == "cpu" else 0
        key = (self, str(device), dtype, threads)
        model = self.model(device, dtype, progress)
        with _LOCK:
            if key not in _FITTERS:
                _FITTERS[key] = BodyFitter(model, shape0=self.start_shape(model))
            return _FITTERS[key]

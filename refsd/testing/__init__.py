"""Test support: tiny random SD1.5-shaped models and a synthetic SMPL-X-format file."""

from __future__ import annotations

from .checkpoints import clip_to_ldm, controlnet_to_ldm, unet_to_ldm, vae_to_ldm, write_test_models
from .clip_tokenizer import write_clip_tokenizer
from .sd15 import FORMAT_VERSION, build_controlnet, build_sd15, sd15_configs
from .synthetic_smplx import SMPLX_PARENTS, write_synthetic_smplx

__all__ = [
    "FORMAT_VERSION",
    "sd15_configs",
    "write_clip_tokenizer",
    "build_sd15",
    "build_controlnet",
    "unet_to_ldm",
    "vae_to_ldm",
    "clip_to_ldm",
    "controlnet_to_ldm",
    "write_test_models",
    "SMPLX_PARENTS",
    "write_synthetic_smplx",
]

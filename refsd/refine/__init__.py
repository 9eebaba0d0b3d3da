"""Stage 5, refinement: per-crop prompts and the diffusers SD + ControlNet refiner."""

from __future__ import annotations

from .loading import (
    CONTROL_MAPS,
    DiffusionModelError,
    check_controlnet_path,
    check_model_path,
    load_controlnet,
    load_pipeline,
)
from .prompts import (
    crop_prompts,
    stack_cross_attention,
)
from .refiner import (
    BACKGROUND_NEGATIVE,
    BACKGROUND_PROMPT,
    DEFAULT_CONTROL_SCALES,
    SCHEDULERS,
    DiffusersRefiner,
    img2img_steps,
    run_in_batches,
)

__all__ = [
    "crop_prompts",
    "stack_cross_attention",
    "BACKGROUND_NEGATIVE",
    "BACKGROUND_PROMPT",
    "DiffusionModelError",
    "CONTROL_MAPS",
    "DEFAULT_CONTROL_SCALES",
    "SCHEDULERS",
    "check_model_path",
    "check_controlnet_path",
    "load_controlnet",
    "load_pipeline",
    "DiffusersRefiner",
    "run_in_batches",
    "img2img_steps",
]

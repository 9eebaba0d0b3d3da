"""Talking to ComfyUI over HTTP: server launcher, client, workflow formats, `refsd run`, the manifest."""

from __future__ import annotations

from .binding import (
    RunError,
    RunOptions,
    bind_prompt,
    load_workflow,
)
from .client import (
    ComfyClient,
    ComfyConnectionError,
    PromptRejected,
    PromptResult,
)
from .manifest import (
    IMAGE_SUFFIXES,
    Manifest,
    image_seed,
    keypoints_for,
    list_images,
    now_iso,
    output_stem,
    privacy_error,
)
from .run import (
    add_parser,
    main,
    run_folder,
)
from .server import (
    PACK_LINK_NAME,
    PACK_ROOT,
    ComfyServer,
    find_comfyui,
    free_port,
)
from .workflow import (
    WorkflowError,
    api_to_ui,
    is_api_format,
    is_ui_format,
    ui_to_api,
)

__all__ = [
    "ComfyServer",
    "find_comfyui",
    "free_port",
    "PACK_ROOT",
    "PACK_LINK_NAME",
    "ComfyClient",
    "PromptRejected",
    "PromptResult",
    "ComfyConnectionError",
    "is_api_format",
    "is_ui_format",
    "api_to_ui",
    "ui_to_api",
    "WorkflowError",
    "RunOptions",
    "RunError",
    "load_workflow",
    "bind_prompt",
    "run_folder",
    "add_parser",
    "main",
    "IMAGE_SUFFIXES",
    "Manifest",
    "image_seed",
    "list_images",
    "keypoints_for",
    "output_stem",
    "now_iso",
    "privacy_error",
]

"""Shared helpers for the node wrappers: custom types, model folders, input listings."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

POSE_KEYPOINT = io.Custom("POSE_KEYPOINT")
BODY_MODEL = io.Custom("REFSD_BODY_MODEL")
BODY_FIT = io.Custom("REFSD_BODY_FIT")
ATTRIBUTES = io.Custom("REFSD_ATTRIBUTES")
CROPS = io.Custom("REFSD_CROPS")

CATEGORY = "RefSD"


def register_model_folder(name: str, extensions: set[str]) -> None:
    """Register ``models/<name>`` with ComfyUI, keeping paths added by extra_model_paths.yaml."""
    default = os.path.join(folder_paths.models_dir, name)
    if name in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[name]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | set(extensions))
    else:
        folder_paths.folder_names_and_paths[name] = ([default], set(extensions))


def input_json_files() -> list[str]:
    """JSON files in ComfyUI's input folder (sub-folders included), as combo options."""
    root = folder_paths.get_input_directory()
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith(".json"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(out)

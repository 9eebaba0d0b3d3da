"""Shared helpers for the node wrappers: custom types, model folders, input listings."""

from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.latest import io

from ..refsd.errors import RefSDError

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


def resolve_input_file(file: str) -> str:
    """Path of ``file`` in ComfyUI's input folder; refuses names that lead outside it."""
    path = folder_paths.get_annotated_filepath(file)
    root = os.path.realpath(folder_paths.get_input_directory())
    if not os.path.realpath(path).startswith(root + os.sep):
        raise RefSDError(f"'{file}' is outside ComfyUI's input folder; put the file inside {root}.")
    return path


def missing_input_file(file: str, what: str) -> bool | str:
    """``validate_inputs`` answer for a file combo: True, or a message naming the missing file."""
    if not folder_paths.exists_annotated_filepath(file):
        return f"{what} '{file}' not found in ComfyUI's input folder."
    return True


def input_file_sha256(file: str) -> str:
    """``fingerprint_inputs`` for a file combo: re-run the node when the file's content changes."""
    with open(resolve_input_file(file), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def input_json_files() -> list[str]:
    """JSON files in ComfyUI's input folder (sub-folders included), as combo options."""
    root = folder_paths.get_input_directory()
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith(".json"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(out)

"""``refsd run``'s options, and one workflow bound to one image.

:func:`load_workflow` reads a UI- or API-format workflow as an API-format prompt,
:func:`apply_overrides` applies ``--set NODE.INPUT=VALUE``, and :func:`bind_prompt` fills in
one image: its uploaded name in the ``LoadImage`` nodes, its keypoint JSON in the
``RefSDLoadPoseKeypoints`` nodes, and the image's own seed in every seed input
(:func:`refsd.comfyapi.manifest.image_seed`: the same image always gets the same seed,
whatever the order or the server). Uploads get a name unique per image.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import ComfyClient
from .workflow import WorkflowError, is_api_format, is_ui_format, ui_to_api

__all__ = ["RunOptions", "RunError", "load_workflow", "apply_overrides", "bind_prompt"]

IMAGE_LOADERS = ("LoadImage",)
KEYPOINT_LOADERS = ("RefSDLoadPoseKeypoints",)
SEED_INPUTS = ("seed", "noise_seed")


class RunError(RuntimeError):
    """The run cannot start (bad workflow, no server, output folder in use)."""


@dataclass
class RunOptions:
    workflow: Path
    input_dir: Path
    output_dir: Path
    servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8188"])
    keypoint_dir: Path | None = None
    seed: int = 0
    retries: int = 2
    timeout: float = 1800.0
    overrides: list[str] = field(default_factory=list)
    keep_failed: bool = False
    allow_unfitted: bool = False
    progress: bool = True
    server_wait: float = 30.0


# -- the graph --------------------------------------------------------------------------------
def load_workflow(path: Path, client: ComfyClient) -> dict:
    """An API-format prompt from a UI- or API-format workflow file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunError(f"workflow file {path} does not exist") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"workflow file {path} is not JSON ({e}); pass a workflow saved by ComfyUI") from e
    if is_ui_format(data):
        try:
            return ui_to_api(data, client.object_info())
        except WorkflowError as e:
            raise RunError(f"{path}: {e}") from e
    if is_api_format(data):
        return {k: v for k, v in data.items() if not str(k).startswith("_")}
    raise RunError(
        f"{path} is neither a UI-format workflow ('nodes' and 'links') nor an API-format prompt "
        "({id: {class_type, inputs}}); save it from ComfyUI with Save or Export (API)"
    )


def _parse_override(text: str) -> tuple[str, str, Any]:
    key, sep, value = text.partition("=")
    node, dot, name = key.partition(".")
    if not sep or not dot or not node or not name:
        raise RunError(f"--set {text!r}: expected NODE_ID.INPUT=VALUE, e.g. --set 20.steps=30")
    try:
        val = json.loads(value)
    except json.JSONDecodeError:
        val = value  # a plain string
    return node, name, val


def apply_overrides(prompt: dict, overrides: list[str]) -> dict:
    prompt = copy.deepcopy(prompt)
    for text in overrides:
        node, name, val = _parse_override(text)
        if node not in prompt:
            raise RunError(f"--set {text!r}: the workflow has no node {node} (nodes: {', '.join(sorted(prompt))})")
        prompt[node].setdefault("inputs", {})[name] = val
    return prompt


def _nodes_of(prompt: dict, types: tuple[str, ...]) -> list[str]:
    return sorted((k for k, v in prompt.items() if v.get("class_type") in types), key=_node_key)


def _node_key(k: str) -> tuple:
    return (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))


def bind_prompt(prompt: dict, image_name: str, keypoint_name: str | None, seed: int) -> dict:
    """The workflow with this image, its keypoints and its seed filled in."""
    p = copy.deepcopy(prompt)
    for nid in _nodes_of(p, IMAGE_LOADERS):
        p[nid]["inputs"]["image"] = image_name
    if keypoint_name is not None:
        for nid in _nodes_of(p, KEYPOINT_LOADERS):
            p[nid]["inputs"]["file"] = keypoint_name
    for node in p.values():
        for name in SEED_INPUTS:
            if name in node.get("inputs", {}) and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = int(seed)
    return p


def _upload_name(key: str, path: Path) -> str:
    """Unique per image: two images called photo.png in different folders never collide."""
    digest = hashlib.blake2b(key.encode(), digest_size=5).hexdigest()
    return f"refsd_run_{digest}_{path.name}"

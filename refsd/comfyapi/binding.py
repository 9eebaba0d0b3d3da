"""``refsd run``'s options, and one workflow bound to one image.

:func:`load_workflow` reads a UI- or API-format workflow as an API-format prompt,
:func:`apply_overrides` applies ``--set NODE.INPUT=VALUE``, and :func:`bind_prompt` fills in
one image: its uploaded name in the ``LoadImage`` nodes, its keypoint JSON in the
``RefSDLoadPoseKeypoints`` nodes, and the image's own seed in every seed input
(:func:`refsd.comfyapi.manifest.image_seed`: the same image always gets the same seed,
whatever the order or the server). Uploads get a name unique per image.

People without a keypoint file (``--people auto|detect``, :func:`people_source_for`):
:func:`use_detector` replaces each ``RefSDLoadPoseKeypoints`` node by a ``RefSDDetectPeople``
node fed by the graph's ``LoadImage`` (same id, same output slot 0 = POSE_KEYPOINT, so the
links stay) and wires its union person mask (slot 1) into every ``RefSDPersonMask`` whose
``mask`` input is unconnected; :func:`detections_of` reads the detector's per-person scores
from the prompt's history outputs.
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

__all__ = ["RunOptions", "RunError", "load_workflow", "apply_overrides", "bind_prompt", "use_detector",
           "detections_of", "people_source_for"]

IMAGE_LOADERS = ("LoadImage",)
VIDEO_LOADERS = ("LoadVideo",)  # ComfyUI's own (input "file"): a graph with one runs over the folder's videos
KEYPOINT_LOADERS = ("RefSDLoadPoseKeypoints",)
DETECTOR = "RefSDDetectPeople"
PERSON_MASK = "RefSDPersonMask"
DETECT_MASK_SLOT = 1  # RefSDDetectPeople: POSE_KEYPOINT, mask (union), person_masks, preview
SEED_INPUTS = ("seed", "noise_seed")
PEOPLE_MODES = ("auto", "file", "detect")


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
    people: str = "auto"  # auto | file | detect (see people_source_for)
    detect_model: str = "full"
    min_score: float = 0.5
    max_people: int = 8
    min_presence: float = 0.5
    tile_scale: float = 0.5

    def detect_inputs(self) -> dict:
        """The inputs of the ``RefSDDetectPeople`` node put in place of a keypoint loader."""
        return {"model": self.detect_model, "min_score": float(self.min_score), "max_people": int(self.max_people),
                "min_presence": float(self.min_presence), "tile_scale": float(self.tile_scale)}


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


def people_source_for(prompt: dict, people: str, has_keypoints: bool) -> str | None:
    """Where one image's people come from in this graph: ``"file"`` (its keypoint JSON goes into
    the keypoint loaders), ``"detect"`` (the loaders become detectors, or the graph detects
    itself) or None (the graph takes people from neither, e.g. a DWPose node)."""
    if people not in PEOPLE_MODES:
        raise RunError(f"--people {people!r}: use one of {', '.join(PEOPLE_MODES)}")
    if _nodes_of(prompt, KEYPOINT_LOADERS):
        if people == "detect" or (people == "auto" and not has_keypoints):
            return "detect"
        return "file"
    return "detect" if _nodes_of(prompt, (DETECTOR,)) else None


def _links_to(prompt: dict, nid: str) -> list[str]:
    """The nodes with an input linked to node ``nid``."""
    return sorted((k for k, v in prompt.items()
                   if any(isinstance(x, list) and len(x) == 2 and str(x[0]) == nid for x in v.get("inputs", {}).values())),
                  key=_node_key)


def use_detector(prompt: dict, inputs: dict) -> dict:
    """The prompt with every ``RefSDLoadPoseKeypoints`` node replaced by a ``RefSDDetectPeople``
    node (``inputs``: model, min_score, ...) on the photo the keypoints' consumer takes (its
    ``image`` input; else the first ``LoadImage``), and the detector's union mask in each
    ``RefSDPersonMask`` whose ``mask`` input is unconnected (the detector that feeds its fit,
    else the first)."""
    p = copy.deepcopy(prompt)
    loaders = _nodes_of(p, KEYPOINT_LOADERS)
    if not loaders:
        return p
    images = _nodes_of(p, IMAGE_LOADERS)
    for nid in loaders:
        source = next((p[c]["inputs"]["image"] for c in _links_to(p, nid)
                       if isinstance(p[c].get("inputs", {}).get("image"), list)), None)
        if source is None:
            if not images:
                raise RunError(f"node {nid} (RefSDLoadPoseKeypoints) cannot become a person detector: the workflow "
                               "has no LoadImage node to feed it")
            source = [images[0], 0]
        title = "RefSD Detect People (refsd run: no keypoint file)"
        p[nid] = {"class_type": DETECTOR, "inputs": {"image": list(source), **inputs}, "_meta": {"title": title}}
    for mid in _nodes_of(p, (PERSON_MASK,)):
        ins = p[mid].setdefault("inputs", {})
        if isinstance(ins.get("mask"), list):
            continue  # a segmentation is connected already
        det = loaders[0]
        fit = ins.get("body_fit")
        if isinstance(fit, list) and str(fit[0]) in p:
            kp = p[str(fit[0])].get("inputs", {}).get("pose_keypoint")
            if isinstance(kp, list) and str(kp[0]) in loaders:
                det = str(kp[0])
        ins["mask"] = [det, DETECT_MASK_SLOT]
    return p


def detections_of(outputs: dict, prompt: dict) -> list | None:
    """The first ``RefSDDetectPeople`` node's per-image lists of ``{score, presence, box}`` from
    the prompt's history outputs (its ui ``refsd_detections``, or a JSON ``text`` entry), or None."""
    for nid in _nodes_of(prompt, (DETECTOR,)):
        ui = outputs.get(nid) or {}
        found = ui.get("refsd_detections")
        if found is None:
            for t in ui.get("text") or []:
                try:
                    data = json.loads(t) if isinstance(t, str) else t
                except json.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    data = data.get("refsd_detections", data.get("detections"))
                if isinstance(data, list):
                    found = data
                    break
        if isinstance(found, list):
            if found and all(isinstance(x, dict) for x in found):
                found = [found]  # one image's people, not nested per image
            return found
    return None


def detect_error_hint(error: dict) -> str:
    """A prefix for a node error that says the server lacks RefSD's model files ('' otherwise): the
    face models of the identity check, or the person detector's."""
    text = f"{error.get('exception_type', '')} {error.get('exception_message', '')}"
    if not ("DetectModelsMissing" in text or "DetectModelCorrupt" in text or "refsd models fetch" in text):
        return ""
    if "face model" in text:
        return ("the ComfyUI server lacks the face models of the identity check (fetch them there into "
                f"ComfyUI/models/refsd_detect with `refsd models fetch`, or turn the check off: --set "
                f"{error.get('node_id', 'NODE')}.identity=false): ")
    return ("the ComfyUI server lacks the person detector's model files (fetch them there into "
            "ComfyUI/models/refsd_detect, or use --people file with keypoint JSONs): ")


def bind_prompt(prompt: dict, image_name: str, keypoint_name: str | None, seed: int,
                detect: dict | None = None) -> dict:
    """The workflow with this image (or video: ``LoadVideo``), its keypoints and its seed filled in. With ``detect``
    (the detector's inputs, :meth:`RunOptions.detect_inputs`) the keypoint loaders become person
    detectors (:func:`use_detector`) and ``keypoint_name`` is not used."""
    p = use_detector(prompt, detect) if detect is not None else copy.deepcopy(prompt)
    for nid in _nodes_of(p, IMAGE_LOADERS):
        p[nid]["inputs"]["image"] = image_name
    for nid in _nodes_of(p, VIDEO_LOADERS):
        p[nid]["inputs"]["file"] = image_name
    if keypoint_name is not None and detect is None:
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

"""Detector node: Detect People (photo -> POSE_KEYPOINT + person masks, MediaPipe BlazePose run by
``refsd.detect`` in torch, offline, on ComfyUI's device)."""

from __future__ import annotations

from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from ..refsd.detect import COMFYUI_MODELS_SUBDIR, LANDMARK_VARIANTS, DetectError, PersonDetector, default_detect_dirs
from ..refsd.keypoints import BODY_COLORS, draw_pose, to_pose_keypoint
from ._common import CATEGORY, POSE_KEYPOINT, register_model_folder

register_model_folder(COMFYUI_MODELS_SUBDIR, {".tflite", ".onnx"})

#: joints below this confidence are not drawn on the preview (RefSD Fit Body's default min_confidence)
PREVIEW_MIN_CONFIDENCE = 0.3
#: opacity of a person's tint on the preview where their mask is 1
PREVIEW_TINT = 0.45
#: one tint per person, cycling (OpenPose joint colours, far apart on the wheel)
PREVIEW_COLORS = torch.tensor(BODY_COLORS[[0, 12, 6, 15, 3, 9]].astype(np.float32) / 255.0)


def detect_model_dirs() -> list[Path]:
    """Where the .tflite files are looked for: ComfyUI's models/refsd_detect (and extra_model_paths.yaml
    entries for it), then refsd's own defaults ($REFSD_DETECT_DIR, $REFSD_CACHE_DIR/detect, ~/.cache/refsd/detect)."""
    dirs = [Path(p) for p in folder_paths.get_folder_paths(COMFYUI_MODELS_SUBDIR)] + default_detect_dirs()
    return list(dict.fromkeys(dirs))


def face_analyzer():
    """RefSD's face models (YuNet + SFace, for the identity checks) on ComfyUI's device, files from
    :func:`detect_model_dirs` (a missing file raises an error naming the folders and the fetch command)."""
    from ..refsd.detect import FaceAnalyzer

    return FaceAnalyzer(model_dirs=detect_model_dirs(), device=comfy.model_management.get_torch_device())


def _preview(image: torch.Tensor, dets) -> torch.Tensor:
    """The photo (H, W, 3) with each person's mask tinted in their colour and the skeleton drawn over it."""
    out = image.clone()
    for k, mask in enumerate(dets.masks(image.device)):
        a = (PREVIEW_TINT * mask)[..., None]
        out = out * (1 - a) + a * PREVIEW_COLORS[k % len(PREVIEW_COLORS)].to(image.device)
    frame = dets.frame()
    people = [{"body": p.body} for p in frame.people]
    skeleton = torch.from_numpy(draw_pose(dets.width, dets.height, people, threshold=PREVIEW_MIN_CONFIDENCE))
    drawn = skeleton.any(-1, keepdim=True).to(image.device)
    return torch.where(drawn, skeleton.to(image.device).float() / 255.0, out)


class DetectPeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDDetectPeople",
            display_name="RefSD Detect People",
            category=f"{CATEGORY}/keypoints",
            description=(
                "Finds the people in each photo without a keypoint file: MediaPipe BlazePose (Apache-2.0) run offline "
                "in torch on ComfyUI's device. For every person it gives the OpenPose COCO-18 body keypoints (plus "
                "heels and big toes) in photo pixels with real confidences, and a soft person mask that includes "
                "coats and hair. Feed POSE_KEYPOINT to RefSD Fit Body and the mask to RefSD Person Mask's mask "
                "input. The model files live in models/refsd_detect/ (fetch them once with `refsd models fetch "
                "--dest <ComfyUI>/models/refsd_detect`); nothing is downloaded at run time. An image without people "
                "gives an empty people list and empty masks, not an error."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The photo(s); every image of the batch is searched on its own."),
                io.Combo.Input(
                    "model", options=list(LANDMARK_VARIANTS), default="full",
                    tooltip="BlazePose landmark model run on each person: lite (fastest), full (default), heavy "
                    "(most accurate, slowest). Each needs its pose_landmark_<model>.tflite in models/refsd_detect/.",
                ),
                io.Float.Input(
                    "min_score", default=0.5, min=0.0, max=1.0, step=0.01,
                    tooltip="Lowest detector score (0..1) of a person candidate. Lower it to find partly hidden "
                    "or small people, raise it against false detections.",
                ),
                io.Int.Input(
                    "max_people", default=8, min=1, max=64, step=1,
                    tooltip="At most this many people per image (those with the best detector score are kept).",
                ),
                io.Float.Input(
                    "min_presence", default=0.5, min=0.0, max=1.0, step=0.01,
                    tooltip="Lowest pose-presence score (0..1) of the landmark model on a candidate's crop: the "
                    "second check that the candidate is a person.",
                ),
                io.Float.Input(
                    "tile_scale", default=0.5, min=0.0, max=1.0, step=0.05,
                    tooltip="BlazePose's detector alone, on the whole photo, finds mainly the largest person. Besides "
                    "the whole photo, it also searches half-overlapping square tiles of this fraction of the photo's "
                    "short side: 0.5 finds people down to about 1/3 of the photo height; smaller values find smaller "
                    "people but take longer. 0: the whole photo only (fastest, one person in most photos).",
                ),
                io.Boolean.Input(
                    "video", default=False, optional=True,
                    tooltip="The batch is the frames of one video, in order: each frame's people are also looked for "
                    "where the previous frame had them (MediaPipe's tracking mode), so a person the detector misses "
                    "for a few frames is still found and replaced instead of showing through. Off: every image alone.",
                ),
            ],
            outputs=[
                POSE_KEYPOINT.Output(
                    display_name="POSE_KEYPOINT",
                    tooltip="One frame per image, OpenPose COCO-18 (+ foot_keypoints_2d) in pixels with the "
                    "detector's confidences; an image without people has an empty 'people' list.",
                ),
                io.Mask.Output(display_name="mask", tooltip="Union of each image's person masks [B,H,W], 0..1."),
                io.Mask.Output(
                    display_name="person_masks",
                    tooltip="One mask per person, every person of every image in order [N,H,W]. When the whole "
                    "batch holds no person: one all-zero mask per image instead (an empty batch breaks other nodes).",
                ),
                io.Image.Output(
                    display_name="preview",
                    tooltip="The photo with each person's mask tinted in its own colour and the skeleton drawn "
                    f"(joints with confidence above {PREVIEW_MIN_CONFIDENCE}).",
                ),
            ],
        )

    @classmethod
    def execute(cls, image, model, min_score, max_people, min_presence, tile_scale, video=False) -> io.NodeOutput:
        if image.ndim != 4 or image.shape[0] < 1:
            raise DetectError(f"RefSD Detect People needs an IMAGE batch [B,H,W,C]; got shape {tuple(image.shape)}")
        detector = PersonDetector(model, detect_model_dirs(), comfy.model_management.get_torch_device(),
                                  tile_scale=tile_scale)
        out_device = comfy.model_management.intermediate_device()
        B = image.shape[0]
        pbar = comfy.utils.ProgressBar(B)
        results, previews = [], []
        for i in range(B):
            comfy.model_management.throw_exception_if_processing_interrupted()
            follow = results[-1].people if video and results else None
            dets = detector(image[i], min_score=min_score, max_people=max_people, min_presence=min_presence,
                            follow=follow)
            results.append(dets)
            rgb = image[i, ..., :3] if image.shape[-1] >= 3 else image[i].expand(-1, -1, 3)
            previews.append(_preview(rgb.to(detector.device).float(), dets).to(out_device))
            pbar.update_absolute(i + 1, B)
        frames = to_pose_keypoint([d.frame() for d in results])
        unions = torch.stack([d.union_mask(out_device) for d in results])
        people = [d.masks(out_device) for d in results]
        person_masks = torch.cat(people) if sum(len(p) for p in people) else torch.zeros_like(unions)
        counts = [d.num_people for d in results]
        text = f"{B} image(s), people per image: {counts} (BlazePose {model}, tile_scale {tile_scale:g})"
        return io.NodeOutput(
            frames, unions, person_masks, torch.stack(previews).to(image.dtype),
            # per image: detector score, pose presence and box of each person (for `refsd run`'s manifest),
            # and the keypoints themselves, so API clients read them from /history
            ui={"text": [text], "refsd_detections": [d.scores() for d in results], "pose_keypoint": frames},
        )

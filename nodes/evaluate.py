"""Evaluation node: Evaluate (face identity, pose kept, the avatars' own pose error) on the graph."""

from __future__ import annotations

import json

import comfy.model_management
import comfy.utils
from comfy_api.latest import io

from ..refsd.composite import pick as _pick
from ..refsd.detect import LANDMARK_VARIANTS, SFACE_COSINE_THRESHOLD
from ..refsd.evaluate import Evaluator
from ._common import CATEGORY, POSE_KEYPOINT
from .detect import detect_model_dirs


def _frame(keypoints, i: int):
    """Image ``i``'s frame of a POSE_KEYPOINT batch (one frame broadcasts), or None."""
    if not keypoints:
        return None
    return keypoints[min(i, len(keypoints) - 1)]


class Evaluate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDEvaluate",
            display_name="RefSD Evaluate",
            category=f"{CATEGORY}/evaluate",
            description=(
                "Measures a pseudonymized image against its photo and shows the numbers on the node. Identity: every "
                "face of the photo is compared with the output at the same place by a face recogniser (YuNet + SFace, "
                "the photo also blurred at several strengths); a face at or above the threshold still shows the "
                "person (leak). Pose kept: keypoints found on the output (RefSD's person detector, or the keypoints "
                "you connect, e.g. DWPose run on the output) against the input keypoints, as OKS (COCO) and PCK@0.05/"
                "0.1 of the person's height, per joint group; with the avatars' keypoints connected (RefSD Render "
                "Avatar's POSE_KEYPOINT) also the fit + render error alone. `refsd eval` runs the same over a whole "
                "run and writes a report."
            ),
            is_output_node=True,
            inputs=[
                io.Image.Input("original", tooltip="The input photo(s)."),
                io.Image.Input("output", tooltip="The pseudonymized image(s), same size as the photos."),
                POSE_KEYPOINT.Input("keypoints", optional=True,
                                    tooltip="The photo's people (what the fit used). Not connected: RefSD's person "
                                    "detector finds them on the photo."),
                POSE_KEYPOINT.Input("output_keypoints", optional=True,
                                    tooltip="Optional: people found on the output by any pose node (e.g. DWPose). Not "
                                    "connected: RefSD's person detector."),
                POSE_KEYPOINT.Input("avatar_keypoints", optional=True,
                                    tooltip="Optional: RefSD Render Avatar's POSE_KEYPOINT, for the avatars' own pose "
                                    "error (fit + render, before any diffusion)."),
                io.Boolean.Input("identity", default=True, tooltip="Check face identity (privacy)."),
                io.Boolean.Input("pose", default=True, tooltip="Measure how well the pose is kept."),
                io.Float.Input("face_threshold", default=SFACE_COSINE_THRESHOLD, min=0.05, max=1.0, step=0.001,
                               tooltip="Face similarity (SFace cosine) from which a face counts as the same person "
                               "(0.363: SFace's own threshold). Lower is stricter."),
                io.Combo.Input("detect_model", options=list(LANDMARK_VARIANTS), default="full",
                               tooltip="Person detector landmark model for keypoints not connected (lite fastest, "
                               "heavy most accurate)."),
            ],
            outputs=[
                io.String.Output(display_name="report", tooltip="All numbers as JSON, one entry per image."),
                io.Boolean.Output(display_name="identity_passed",
                                  tooltip="True when no face of any photo is still recognisable (or identity is off)."),
                io.Float.Output(display_name="max_face_similarity",
                                tooltip="The highest face similarity over the batch (0 when no face of a photo is found in its output)."),
                io.Float.Output(display_name="mean_oks", tooltip="Mean OKS of the people over the batch (0 without)."),
            ],
        )

    @classmethod
    def execute(cls, original, output, identity, pose, face_threshold, detect_model, keypoints=None,
                output_keypoints=None, avatar_keypoints=None) -> io.NodeOutput:
        ev = Evaluator(identity=identity, pose=pose, threshold=face_threshold, detect_model=detect_model,
                       model_dirs=detect_model_dirs(), device=comfy.model_management.get_torch_device())
        B = original.shape[0]
        pbar = comfy.utils.ProgressBar(B)
        results = []
        for i in range(B):
            comfy.model_management.throw_exception_if_processing_interrupted()
            results.append(ev(original[i], _pick(output, i), _frame(keypoints, i),
                              output_keypoints=_frame(output_keypoints, i), avatar_keypoints=_frame(avatar_keypoints, i)))
            pbar.update_absolute(i + 1, B)
        dicts = [r.to_dict() for r in results]
        sims = [r.identity.max_similarity for r in results if r.identity is not None and r.identity.max_similarity is not None]
        oks = [p.oks for r in results for p in (r.pose or [])]
        text = [f"image {i}: " + "; ".join(r.summary() or ["nothing measured"]) for i, r in enumerate(results)]
        return io.NodeOutput(
            json.dumps(dicts), all(r.passed is not False for r in results), float(max(sims, default=0.0)),
            float(sum(oks) / len(oks)) if oks else 0.0,
            ui={"text": text, "refsd_eval": dicts},
        )

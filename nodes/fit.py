"""Fitting nodes: Fit Body, Save Body Fit, Load Body Fit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..refsd.fit import DEFAULT_FOV_DEG, BodyFit, FitError, VideoFitOptions
from ..refsd.fit.api import fit_pose_keypoint
from ..refsd.render.overlay import render_fit_overlay
from ._common import (
    BODY_FIT,
    BODY_MODEL,
    CATEGORY,
    POSE_KEYPOINT,
    input_file_sha256,
    input_json_files,
    missing_input_file,
    resolve_input_file,
)


class FitBody(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDFitBody",
            display_name="RefSD Fit Body",
            category=f"{CATEGORY}/body",
            description=(
                "Fits a 3D body (pose, shape, position) to every person's 2D keypoints, all people of an image "
                "together, frame by frame over the batch. Keypoint frame i goes with image i (one frame is used for "
                "every image). Missing or low-confidence keypoints are ignored; people with fewer than 4 confident "
                "body joints are skipped with a warning. Returns the fits and a preview of the fitted meshes drawn "
                "over the photo, to check the fit by eye. Video: when the keypoints come from RefSD Track People "
                "(a track_id per person), the batch is a video and each tracked person is fitted coherently over "
                "the frames: warm-started from their previous frame, one body shape per track, smoothed over time."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The photo(s) the keypoints were detected on."),
                POSE_KEYPOINT.Input("pose_keypoint", tooltip="Keypoints from DWPose/OpenPose/SDPose or a JSON file."),
                BODY_MODEL.Input("body_model", tooltip="From RefSD Load Body Model."),
                io.Float.Input(
                    "fov_deg", default=DEFAULT_FOV_DEG, min=10.0, max=120.0, step=0.5,
                    tooltip="Camera field of view across the larger image side, in degrees (60 suits most phone and "
                    "kit-lens photos). Only changes depth, not how well the body lines up with the photo.",
                ),
                io.Combo.Input(
                    "hand_order", options=["left_first", "right_first"], default="left_first",
                    tooltip="left_first: hand_left_keypoints_2d is the left hand (DWPose/OpenPose). right_first: for "
                    "ComfyUI's SDPose node, which packs the right hand first.",
                ),
                io.Combo.Input(
                    "coords", options=["auto", "pixels", "normalized"], default="auto",
                    tooltip="Keypoint coordinates: auto-detect, pixels of the canvas (DWPose), or 0..1 (OpenPose).",
                ),
                io.Float.Input(
                    "min_confidence", default=0.3, min=0.0, max=1.0, step=0.01,
                    tooltip="Keypoints below this confidence are treated as missing.",
                ),
                io.Mask.Input(
                    "mask", optional=True,
                    tooltip="Optional person mask; keypoints outside it count for little (likely detector mistakes).",
                ),
                io.Boolean.Input(
                    "temporal", default=True, optional=True,
                    tooltip="Video (keypoints from RefSD Track People): fit each tracked person coherently over the "
                    "frames (warm start, one shape per track, smoothing). Off: every frame on its own.",
                ),
                io.Float.Input(
                    "smooth_frames", default=1.5, min=0.0, max=10.0, step=0.1, optional=True,
                    tooltip="Video: how many frames the pose is smoothed over (Gaussian sigma); 0 keeps the warm-"
                    "started fits as they are.",
                ),
            ],
            outputs=[
                BODY_FIT.Output(display_name="BODY_FIT", tooltip="One fit per image (camera, per-person parameters)."),
                io.Image.Output(display_name="overlay", tooltip="The fitted meshes drawn over the photo."),
            ],
        )

    @classmethod
    def execute(
        cls, image, pose_keypoint, body_model, fov_deg, hand_order, coords, min_confidence, mask=None, temporal=True,
        smooth_frames=1.5,
    ) -> io.NodeOutput:
        device = comfy.model_management.get_torch_device()
        fitter = body_model.fitter(device, torch.float32)
        B, H, W = image.shape[0], image.shape[1], image.shape[2]
        pbar = comfy.utils.ProgressBar(1)

        def progress(done: int, total: int) -> None:
            pbar.update_absolute(done, max(total, 1))

        fits = fit_pose_keypoint(
            fitter, pose_keypoint, [(W, H)] * B, masks=mask, coords=coords, hand_order=hand_order,
            min_confidence=min_confidence, fov_deg=fov_deg, progress=progress,
            video=VideoFitOptions(smooth_sigma=smooth_frames) if temporal else None,
        )
        overlays = torch.stack([render_fit_overlay(image[i], fitter.model, fits[i]) for i in range(B)])
        text = [f"image {i}: {f.num_people} fitted, {len(f.skipped)} skipped" for i, f in enumerate(fits)]
        for f in fits:
            text.extend(f.warnings)
        quality = [
            {"people": f.num_people, "rms_px": [round(p.reproj_error_px, 2) for p in f.people],
             "quality": [p.quality for p in f.people], "skipped": f.skipped}
            for f in fits
        ]  # per image, for headless runs reading /history
        return io.NodeOutput(fits, overlays.to(image.dtype), ui={"text": text, "fit": quality})


class SaveBodyFit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDSaveBodyFit",
            display_name="RefSD Save Body Fit",
            category=f"{CATEGORY}/body",
            description=(
                "Writes the body fits as JSON into ComfyUI's output folder (one file per image) and returns the same "
                "JSON in the node's UI data, so API clients read it from /history. Load it again with RefSD Load "
                "Body Fit; the format is lossless."
            ),
            is_output_node=True,
            inputs=[
                BODY_FIT.Input("body_fit", tooltip="Fits from RefSD Fit Body."),
                io.String.Input(
                    "filename_prefix", default="refsd/body_fit",
                    tooltip="File name prefix inside the output folder; a counter is appended.",
                ),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, body_fit, filename_prefix: str) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        first = body_fit[0] if body_fit else None
        w, h = (first.image_width, first.image_height) if first else (0, 0)
        full, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir, w, h)
        files, data = [], []
        for i, fit in enumerate(body_fit):
            fname = f"{name}_{counter + i:05}_.json"
            fit.save(os.path.join(full, fname))
            files.append({"filename": fname, "subfolder": subfolder, "type": "output"})
            data.append(fit.to_dict())
        return io.NodeOutput(ui={"body_fits": data, "files": files})


class LoadBodyFit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDLoadBodyFit",
            display_name="RefSD Load Body Fit",
            category=f"{CATEGORY}/body",
            description=(
                "Reads body fits saved by RefSD Save Body Fit (a JSON file in ComfyUI's input folder), so a fit can "
                "be reused, edited or rendered again without re-fitting."
            ),
            inputs=[
                io.Combo.Input(
                    "file", options=input_json_files(),
                    tooltip="A body-fit JSON file in ComfyUI's input folder (copy it from the output folder).",
                ),
            ],
            outputs=[BODY_FIT.Output(display_name="BODY_FIT", tooltip="The fits, one per image.")],
        )

    @classmethod
    def validate_inputs(cls, file: str) -> bool | str:
        return missing_input_file(file, "Body fit file")

    @classmethod
    def fingerprint_inputs(cls, file: str) -> str:
        return input_file_sha256(file)

    @classmethod
    def execute(cls, file: str) -> io.NodeOutput:
        path = resolve_input_file(file)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise FitError(f"{file}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        items = data if isinstance(data, list) else [data]
        return io.NodeOutput([BodyFit.from_dict(d) for d in items])

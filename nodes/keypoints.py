"""Keypoint nodes: Load Pose Keypoints (POSE_KEYPOINT from a JSON file) and Draw Pose Keypoints
(POSE_KEYPOINT -> OpenPose skeleton IMAGE, ControlNet conventions)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..refsd.keypoints import count_people, draw_pose, load_pose_keypoint_file, parse_pose_keypoint
from ._common import (
    CATEGORY,
    POSE_KEYPOINT,
    input_file_sha256,
    input_json_files,
    missing_input_file,
    resolve_input_file,
)


class LoadPoseKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDLoadPoseKeypoints",
            display_name="RefSD Load Pose Keypoints",
            category=f"{CATEGORY}/keypoints",
            description=(
                "Reads a POSE_KEYPOINT JSON file from ComfyUI's input folder (the format DWPose/OpenPose nodes of "
                "comfyui_controlnet_aux and ComfyUI's SDPose node produce: a list of frames, each with 'people' and "
                "their flat 'pose_keypoints_2d' x,y,confidence arrays). The file is validated: bad JSON or a wrong "
                "structure stops the node with a message naming the frame, person and key at fault. Use it to feed "
                "hand-annotated or pre-computed keypoints into RefSD Fit Body, or into any node taking POSE_KEYPOINT."
            ),
            inputs=[
                io.Combo.Input(
                    "file",
                    options=input_json_files(),
                    tooltip="POSE_KEYPOINT JSON file in ComfyUI's input folder (sub-folders allowed). Upload one with "
                    "the API's /upload/image route or copy it into the input folder, then refresh.",
                ),
            ],
            outputs=[
                POSE_KEYPOINT.Output(
                    display_name="POSE_KEYPOINT",
                    tooltip="The keypoints, one dict per frame, as the file holds them (a single frame is wrapped in a list).",
                ),
            ],
        )

    @classmethod
    def validate_inputs(cls, file: str) -> bool | str:
        return missing_input_file(file, "Keypoint file")

    @classmethod
    def fingerprint_inputs(cls, file: str) -> str:
        return input_file_sha256(file)

    @classmethod
    def execute(cls, file: str) -> io.NodeOutput:
        frames = load_pose_keypoint_file(resolve_input_file(file))
        people = count_people(frames)
        text = f"{len(frames)} frame(s), people per frame: {people}"
        return io.NodeOutput(frames, ui={"text": [text]})


class DrawPoseKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDDrawPoseKeypoints",
            display_name="RefSD Draw Pose Keypoints",
            category=f"{CATEGORY}/keypoints",
            description=(
                "Draws POSE_KEYPOINT as the OpenPose skeleton image the SD1.5 OpenPose ControlNet was trained on: "
                "black background, COCO-18 limbs as ellipses of half-width 4 in 0.6x colour, joint dots of radius 4, "
                "optional rainbow hands with blue dots and white face dots. One image per keypoint frame, at the "
                "frame's canvas size unless width/height are set. Feed it to Apply ControlNet with an openpose model."
            ),
            inputs=[
                POSE_KEYPOINT.Input("pose_keypoint", tooltip="Keypoints to draw (one image per frame)."),
                io.Int.Input(
                    "width", default=0, min=0, max=16384, step=1,
                    tooltip="Output width in pixels; 0 uses each frame's canvas_width. Keypoints are rescaled.",
                ),
                io.Int.Input(
                    "height", default=0, min=0, max=16384, step=1,
                    tooltip="Output height in pixels; 0 uses each frame's canvas_height. Keypoints are rescaled.",
                ),
                io.Boolean.Input("draw_body", default=True, tooltip="Draw the COCO-18 body skeleton."),
                io.Boolean.Input("draw_hands", default=True, tooltip="Draw hand keypoints when present."),
                io.Boolean.Input("draw_face", default=True, tooltip="Draw face keypoints when present."),
            ],
            outputs=[io.Image.Output(display_name="IMAGE", tooltip="Skeleton images [B,H,W,3] in 0..1.")],
        )

    @classmethod
    def execute(cls, pose_keypoint, width, height, draw_body, draw_hands, draw_face) -> io.NodeOutput:
        frames = parse_pose_keypoint(pose_keypoint, min_joints=0)
        if width or height:
            sizes = [(width or f.canvas[0], height or f.canvas[1]) for f in frames]
            frames = parse_pose_keypoint(pose_keypoint, image_sizes=sizes, min_joints=0)
        images = []
        for fr in frames:
            people = [
                {"body": p.body, "hand_left": p.hand_left, "hand_right": p.hand_right, "face": p.face}
                for p in fr.people
            ]
            w, h = fr.image_size
            img = draw_pose(w, h, people, draw_body=draw_body, draw_hands=draw_hands, draw_face=draw_face)
            images.append(torch.from_numpy(img).float().div_(255.0))
        sizes = {tuple(i.shape) for i in images}
        if len(sizes) > 1:
            raise ValueError(
                f"keypoint frames have different canvas sizes {sorted(sizes)}; set width and height so all "
                "images in the batch share one size."
            )
        return io.NodeOutput(torch.stack(images, 0))

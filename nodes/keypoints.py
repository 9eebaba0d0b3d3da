"""Keypoint nodes: load POSE_KEYPOINT from a JSON file."""

from __future__ import annotations

from comfy_api.latest import io

from ..refsd.keypoints import count_people, load_pose_keypoint_file
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

"""Keypoint nodes: load POSE_KEYPOINT from a JSON file."""

from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.latest import io

from ..refsd.keypoints import KeypointError, count_people, load_pose_keypoint_file
from ._common import CATEGORY, POSE_KEYPOINT, input_json_files


def _resolve(file: str) -> str:
    path = folder_paths.get_annotated_filepath(file)
    root = os.path.realpath(folder_paths.get_input_directory())
    if not os.path.realpath(path).startswith(root + os.sep):
        raise KeypointError(f"'{file}' is outside ComfyUI's input folder; put keypoint files inside {root}.")
    return path


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
        if not folder_paths.exists_annotated_filepath(file):
            return f"Keypoint file '{file}' not found in ComfyUI's input folder."
        return True

    @classmethod
    def fingerprint_inputs(cls, file: str) -> str:
        with open(_resolve(file), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def execute(cls, file: str) -> io.NodeOutput:
        frames = load_pose_keypoint_file(_resolve(file))
        people = count_people(frames)
        text = f"{len(frames)} frame(s), people per frame: {people}"
        return io.NodeOutput(frames, ui={"text": [text]})

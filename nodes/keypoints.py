"""Keypoint nodes: Load Pose Keypoints (POSE_KEYPOINT from a JSON file), Draw Pose Keypoints
(POSE_KEYPOINT -> OpenPose skeleton IMAGE, ControlNet conventions) and Track People (a video's
POSE_KEYPOINT -> the same with a track id per person)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..refsd.keypoints import count_people, draw_pose, load_pose_keypoint_file, parse_pose_keypoint
from ..refsd.keypoints.track import TrackerOptions, track_pose_keypoint
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


class TrackPeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDTrackPeople",
            display_name="RefSD Track People",
            category=f"{CATEGORY}/keypoints",
            description=(
                "For video: follows each person from frame to frame and writes a track_id into every person of the "
                "POSE_KEYPOINT (one frame per video frame, in order, e.g. RefSD Detect People or DWPose on the "
                "frames of Load Video). People are matched to their predicted place (constant motion) by keypoint "
                "similarity (OKS, Hungarian assignment); someone not found for up to max_gap frames keeps their id "
                "when they come back; a new person gets a new id. RefSD Fit Body then fits each track coherently "
                "over time, and Sample Attributes / Render Avatar give each track one look for the whole clip."
            ),
            inputs=[
                POSE_KEYPOINT.Input("pose_keypoint", tooltip="The video's keypoints, one frame per video frame, in order."),
                io.Int.Input("max_gap", default=10, min=0, max=1000, step=1,
                             tooltip="Frames a person may be missing (occluded, not detected) and keep their id."),
                io.Float.Input("min_similarity", default=0.1, min=0.0, max=0.99, step=0.01,
                               tooltip="Lowest keypoint similarity (OKS, 0..1) between a person and a track's "
                               "predicted place for them to be the same person; raise it if people swap ids."),
            ],
            outputs=[
                POSE_KEYPOINT.Output(display_name="POSE_KEYPOINT",
                                     tooltip="The same keypoints with a track_id on each person (other nodes ignore it)."),
            ],
        )

    @classmethod
    def execute(cls, pose_keypoint, max_gap, min_similarity) -> io.NodeOutput:
        out, ids = track_pose_keypoint(pose_keypoint, TrackerOptions(min_similarity=min_similarity, max_gap=max_gap))
        tracks = sorted({i for row in ids for i in row if i is not None})
        seen = {t: sum(t in row for row in ids) for t in tracks}
        text = f"{len(out)} frame(s), {len(tracks)} track(s); frames per track: {seen}"
        return io.NodeOutput(out, ui={"text": [text], "track_ids": ids})

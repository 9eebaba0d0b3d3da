"""Pose drawing node: POSE_KEYPOINT -> OpenPose skeleton IMAGE (ControlNet conventions)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..refsd.keypoints import parse_pose_keypoint
from ..refsd.pose_draw import draw_pose
from ._common import CATEGORY, POSE_KEYPOINT


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

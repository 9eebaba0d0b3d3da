"""Render node: Render Avatar (every conditioning map of the avatars, pixel-aligned with the photo)."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from ..refsd.people import (
    AttributesError,
)
from ..refsd.render.avatar import render_avatars
from ._common import ATTRIBUTES, BODY_FIT, BODY_MODEL, CATEGORY, POSE_KEYPOINT


def _stack(maps: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([m.detach().float().cpu() for m in maps])


class RenderAvatar(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDRenderAvatar",
            display_name="RefSD Render Avatar",
            category=f"{CATEGORY}/avatar",
            description=(
                "Renders every fitted person as a synthetic human with the chosen attributes, pixel-aligned with the "
                "photo, and the ControlNet conditioning maps from the same rasterization: shaded avatar (over black) "
                "and its mask; depth (near bright, far dark, background black, normalised over the people, as the "
                "depth ControlNet expects); normals (normalbae convention); the OpenPose skeleton image with the "
                "matching POSE_KEYPOINT; a body-part segmentation; Canny-style edges of the avatar."
            ),
            inputs=[
                BODY_FIT.Input("body_fit", tooltip="From RefSD Fit Body or RefSD Load Body Fit."),
                BODY_MODEL.Input("body_model", tooltip="The body model the fit was made with."),
                ATTRIBUTES.Input("attributes", tooltip="From RefSD Attributes or RefSD Sample Attributes."),
                io.Boolean.Input("draw_hands", default=True, tooltip="Draw hands in the OpenPose image."),
                io.Boolean.Input("draw_face", default=True, tooltip="Draw face points in the OpenPose image."),
                io.Boolean.Input(
                    "keep_size", default=True,
                    tooltip="Scale each avatar to cover the same image area as the fitted person (hands and feet stay "
                    "where the original's were). Off: the avatar's own height from the attributes.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="avatar", tooltip="Shaded avatars over black [B,H,W,3]."),
                io.Mask.Output(display_name="mask", tooltip="Union silhouette of the avatars [B,H,W]."),
                io.Image.Output(display_name="depth", tooltip="Depth map for the depth ControlNet."),
                io.Image.Output(display_name="normal", tooltip="Normal map for the normal ControlNet."),
                io.Image.Output(display_name="pose", tooltip="OpenPose skeleton image."),
                POSE_KEYPOINT.Output(display_name="POSE_KEYPOINT", tooltip="The avatars' keypoints."),
                io.Image.Output(display_name="parts", tooltip="Body-part segmentation image."),
                io.Image.Output(display_name="edges", tooltip="Edges of the avatar for the Canny ControlNet."),
            ],
        )

    @classmethod
    def execute(cls, body_fit, body_model, attributes, draw_hands, draw_face, keep_size=True) -> io.NodeOutput:
        model = body_model.model(comfy.model_management.get_torch_device(), torch.float32)
        sizes = {(f.image_width, f.image_height) for f in body_fit}
        if len(sizes) > 1:
            raise AttributesError(
                f"the body fits are for images of different sizes {sorted(sizes)}; render them in separate batches."
            )
        pbar = comfy.utils.ProgressBar(len(body_fit))
        passes, people = render_avatars(
            model, body_fit, attributes, progress=lambda done, total: pbar.update_absolute(done, total),
            keep_size=keep_size, draw_hands=draw_hands, draw_face=draw_face,
        )
        kps = []
        for p in passes:
            kps.extend(p.pose_keypoint)
        return io.NodeOutput(
            _stack([p.rgb for p in passes]),
            _stack([p.alpha for p in passes]),
            _stack([p.depth for p in passes]),
            _stack([p.normal for p in passes]),
            _stack([p.pose for p in passes]),
            kps,
            _stack([p.parts for p in passes]),
            _stack([p.edges for p in passes]),
            # the attributes actually drawn, per image and person: headless runs read them from /history
            # and where they came from (the requested distribution, for `refsd eval`'s attribute test)
            ui={"attributes": [[a.to_dict() for a in ppl] for ppl in people], "attribute_source": [attributes.to_dict()]},
        )

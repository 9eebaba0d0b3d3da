"""Refinement stage: per-person text conditioning for the crop batch."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..refsd.people import AttributesError
from ..refsd.refine import crop_prompts, stack_cross_attention
from ._common import ATTRIBUTES, BODY_FIT, CATEGORY, CROPS


def _encode(clip, texts: list[str]) -> list:
    """ComfyUI conditioning with one embedding per text, batched in the texts' order."""
    cache: dict[str, tuple[torch.Tensor, dict]] = {}
    for t in texts:
        if t not in cache:
            cond, extra = clip.encode_from_tokens_scheduled(clip.tokenize(t))[0]
            cache[t] = (cond, extra)
    conds = [cache[t][0] for t in texts]
    extra = dict(cache[texts[0]][1])
    pooled = [cache[t][1].get("pooled_output") for t in texts]
    if all(p is not None for p in pooled):
        extra["pooled_output"] = torch.cat(pooled, 0)
    return [[stack_cross_attention(conds), extra]]


class PersonPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDPersonPrompts",
            display_name="RefSD Person Prompts",
            category=f"{CATEGORY}/refine",
            description=(
                "Encodes one prompt per person crop: each crop of RefSD Crop People is refined with its own person's "
                "attributes (\"a photo of a 34 year old woman, ... wearing a red t-shirt ...\") instead of one "
                "prompt listing everybody. Outputs positive and negative CONDITIONING batched like the crops; use "
                "them in place of CLIPTextEncode before the ControlNets and KSampler. The texts are shown on the node."
            ),
            is_output_node=True,
            inputs=[
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP (CheckpointLoaderSimple)."),
                ATTRIBUTES.Input("attributes", tooltip="The attributes the avatars were rendered with."),
                BODY_FIT.Input("body_fit", tooltip="The fits the crops were made from."),
                CROPS.Input("crop_boxes", tooltip="RefSD Crop People's CROPS output (one per person)."),
                io.String.Input("extra_positive", default="", multiline=True, tooltip="Text added to every positive prompt."),
                io.String.Input("extra_negative", default="", multiline=True, tooltip="Text added to every negative prompt."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="One embedding per crop, in crop order."),
                io.Conditioning.Output(display_name="negative", tooltip="One embedding per crop, in crop order."),
            ],
        )

    @classmethod
    def execute(cls, clip, attributes, body_fit, crop_boxes, extra_positive, extra_negative) -> io.NodeOutput:
        if clip is None:
            raise AttributesError("the clip input is empty: connect the CLIP output of your checkpoint loader.")
        if not crop_boxes:
            raise AttributesError("no crops: connect RefSD Crop People's CROPS output.")
        prompts = crop_prompts(attributes.resolve(body_fit), crop_boxes, extra_positive, extra_negative)
        positive = _encode(clip, [p for p, _ in prompts])
        negative = _encode(clip, [n for _, n in prompts])
        text = [f"crop {k} (image {b.image_index}, person {b.person_index}): {p} | negative: {n}"
                for k, (b, (p, n)) in enumerate(zip(crop_boxes, prompts, strict=True))]
        return io.NodeOutput(positive, negative, ui={"text": text})

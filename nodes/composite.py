"""Removal and compositing nodes: Person Mask, Remove People, Composite, Privacy Check."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from ..refsd.composite import (
    composite,
    crop_batch,
    crop_mask_batch,
    leak_ratio,
    paste_crops,
    people_crop_boxes,
    region_masks,
    remove_people,
)
from ..refsd.composite import pick as _pick
from ..refsd.composite.temporal import BackgroundMemory
from ..refsd.detect import SFACE_COSINE_THRESHOLD
from ._common import BODY_FIT, BODY_MODEL, CATEGORY, CROPS, POSE_KEYPOINT


class PersonMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDPersonMask",
            display_name="RefSD Person Mask",
            category=f"{CATEGORY}/composite",
            description=(
                "The region to replace in each image: the fitted bodies' silhouettes, each grown by a margin that "
                "scales with the person's size (hair, loose clothes, fitting error), united with an optional "
                "person mask from any segmentation node (recommended: a fitted body has no coat or long hair) and "
                "the avatars' own mask, so the new people always fit inside it. With the photo connected, each "
                "silhouette first extends over adjacent pixels of that person's colours (a coat, a dress, long hair "
                "the naked body model misses), up to `reach` of their height."
            ),
            inputs=[
                BODY_FIT.Input("body_fit", tooltip="From RefSD Fit Body."),
                BODY_MODEL.Input("body_model", tooltip="The body model the fit was made with."),
                io.Float.Input(
                    "margin", default=0.06, min=0.0, max=0.5, step=0.005,
                    tooltip="Growth of each person's mask as a fraction of their height on the image.",
                ),
                io.Mask.Input("mask", optional=True, tooltip="Optional person segmentation mask (any segmentation node)."),
                io.Mask.Input("avatar_mask", optional=True, tooltip="Optional: the mask output of RefSD Render Avatar."),
                io.Image.Input(
                    "image", optional=True,
                    tooltip="Optional: the photo. Extends each silhouette over adjacent pixels of the person's colours "
                    "(coats, dresses, hair) before the margin is added.",
                ),
                io.Float.Input(
                    "reach", default=0.25, min=0.0, max=1.0, step=0.01, optional=True,
                    tooltip="How far (fraction of the person's height) the silhouette may extend over person-coloured "
                    "pixels when the photo is connected; 0 turns it off.",
                ),
            ],
            outputs=[
                io.Mask.Output(display_name="mask", tooltip="The grown union mask per image [B,H,W]."),
                io.Mask.Output(display_name="person_masks", tooltip="One grown mask per fitted person, all images in order."),
            ],
        )

    @classmethod
    def execute(cls, body_fit, body_model, margin, mask=None, avatar_mask=None, image=None, reach=0.25) -> io.NodeOutput:
        model = body_model.model(comfy.model_management.get_torch_device(), torch.float32)
        unions, people = [], []
        pbar = comfy.utils.ProgressBar(len(body_fit))
        for i, fit in enumerate(body_fit):
            union, per = region_masks(model, fit, margin, (_pick(mask, i), _pick(avatar_mask, i)),
                                      image=_pick(image, i), reach=reach)
            unions.append(union)
            people.extend(per)
            pbar.update_absolute(i + 1, len(body_fit))
        H, W = unions[0].shape
        per_out = torch.stack(people) if people else torch.zeros(0, H, W)
        return io.NodeOutput(torch.stack(unions), per_out)


class RemovePeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDRemovePeople",
            display_name="RefSD Remove People",
            category=f"{CATEGORY}/composite",
            description=(
                "Fills the masked region from the surrounding background with a classical, model-free inpainting "
                "(exemplar-based: patches of the surroundings copied in, seams blended). Every filled pixel is computed from "
                "pixels outside the mask only, so nothing of the removed people survives; outside the mask the "
                "image is unchanged. For better texture use ComfyUI's own inpainting nodes with your checkpoint."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The photo(s)."),
                io.Mask.Input("mask", tooltip="Region to remove (RefSD Person Mask)."),
                io.Boolean.Input(
                    "video", default=False, optional=True,
                    tooltip="The batch is the frames of one video, in order: each frame's hole is filled with the "
                    "background earlier frames saw there (the camera's motion is estimated from the background), "
                    "so the fill stays put instead of flickering; only never-seen pixels get a new fill. A scene "
                    "cut starts afresh. Off: every image alone.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The photo with the people removed."),
                io.Mask.Output(
                    display_name="unseen",
                    tooltip="The part of the mask no earlier frame showed (with video on; else the whole mask): "
                    "where an SD inpainting should generate new background, so the rest stays put.",
                ),
            ],
        )

    @classmethod
    def execute(cls, image, mask, video=False) -> io.NodeOutput:
        out, unseen = [], []
        memory = BackgroundMemory() if video else None
        pbar = comfy.utils.ProgressBar(image.shape[0])
        for i in range(image.shape[0]):
            comfy.model_management.throw_exception_if_processing_interrupted()
            m = _pick(mask, i)
            if memory is None:
                filled, new = remove_people(image[i], m), m > 0.5
            else:
                filled, new, _info = memory.fill(image[i], m)
                memory.remember(image[i], m, filled)
            out.append(filled.to(image.dtype))
            unseen.append(new.float().to(image.device))
            pbar.update_absolute(i + 1, image.shape[0])
        return io.NodeOutput(torch.stack(out), torch.stack(unseen))


class Composite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDComposite",
            display_name="RefSD Composite",
            category=f"{CATEGORY}/composite",
            description=(
                "Puts the new people (the rendered avatars, or their diffusion-refined version) over the cleaned "
                "background through their mask, feathered inwards, with exposure and white balance moved towards "
                "the scene around them. Nothing outside the region (the grown person mask) changes."
            ),
            inputs=[
                io.Image.Input("background", tooltip="The photo with the people removed (RefSD Remove People)."),
                io.Image.Input("people", tooltip="The new people over black, at the photo's size."),
                io.Mask.Input("people_mask", tooltip="Silhouette of the new people (RefSD Render Avatar's mask)."),
                io.Mask.Input("region", tooltip="The grown person mask (RefSD Person Mask); nothing outside changes."),
                io.Float.Input("feather", default=1.5, min=0.0, max=20.0, step=0.1,
                               tooltip="Softness of the people's edges in pixels (inwards)."),
                io.Float.Input("match_color", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How far to move the people's colour balance and exposure towards the scene."),
                io.Image.Input(
                    "original", optional=True,
                    tooltip="Optional: the input photo. Region pixels that happen to equal it (a dark new coat over a "
                    "dark old one) are nudged to 3/255 from it, so no pixel of the original person survives (leak ratio 0).",
                ),
            ],
            outputs=[io.Image.Output(display_name="IMAGE", tooltip="The pseudonymized image(s).")],
        )

    @classmethod
    def execute(cls, background, people, people_mask, region, feather, match_color, original=None) -> io.NodeOutput:
        out = []
        for i in range(background.shape[0]):
            out.append(
                composite(background[i], _pick(people, i), _pick(people_mask, i), _pick(region, i), feather, match_color,
                          original=_pick(original, i))
                .to(background.dtype)
            )
        return io.NodeOutput(torch.stack(out))


class PrivacyCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDPrivacyCheck",
            display_name="RefSD Privacy Check",
            category=f"{CATEGORY}/composite",
            description=(
                "Measures what survives of the original people. Pixels: the leak ratio is the fraction of pixels inside "
                "the person mask where the output still equals the input (every channel within 2/255); with the cleaned "
                "background connected, pixels the background alone reproduces (plain sky in the safety margin) do not "
                "count. Identity (on by default): every face of the photo is compared with the output at the same "
                "place by a face recogniser (YuNet + SFace, offline, model files from `refsd models fetch` in "
                "models/refsd_detect), the photo also blurred at several strengths, since a blurred face is still the "
                "same person; an image where a face still matches fails. With the body fit connected, an image in "
                "which a person of the keypoints could not be fitted (and so was not replaced) fails too. Shown on "
                "the node and returned in the UI data (/history) with pass/fail."
            ),
            is_output_node=True,
            inputs=[
                io.Image.Input("original", tooltip="The input photo(s)."),
                io.Image.Input("output", tooltip="The pseudonymized image(s)."),
                io.Mask.Input("mask", tooltip="The person mask (RefSD Person Mask)."),
                io.Float.Input("max_leak", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Largest leak ratio that passes (0: no surviving pixel)."),
                io.Image.Input("background", optional=True,
                               tooltip="Optional: the cleaned background (RefSD Remove People)."),
                BODY_FIT.Input("body_fit", optional=True,
                               tooltip="Optional: the body fit. People it had to skip (too few keypoints) were not "
                               "replaced, so their image fails."),
                io.Boolean.Input("identity", default=True, optional=True,
                                 tooltip="Also check that no face of the photo is still recognisable in the output "
                                 "(face models from `refsd models fetch`). Off: faster, pixels only."),
                io.Float.Input("face_threshold", default=SFACE_COSINE_THRESHOLD, min=0.05, max=1.0, step=0.001,
                               optional=True,
                               tooltip="Face similarity (SFace cosine) from which a face counts as the same person; "
                               "0.363 is SFace's own same-identity threshold. Lower is stricter."),
                POSE_KEYPOINT.Input("keypoints", optional=True,
                                    tooltip="Optional: the photo's people (the keypoints the fit used). Their faces "
                                    "are also searched in their head regions, which finds small faces in big photos."),
            ],
            outputs=[
                io.Float.Output(display_name="leak_ratio", tooltip="The worst leak ratio over the batch."),
                io.Boolean.Output(display_name="passed",
                                  tooltip="True if every image's leak ratio <= max_leak, no face still matches (when "
                                  "identity is on) and nobody was left unfitted."),
            ],
        )

    @classmethod
    def execute(cls, original, output, mask, max_leak, background=None, body_fit=None, identity=True,
                face_threshold=SFACE_COSINE_THRESHOLD, keypoints=None) -> io.NodeOutput:
        B = original.shape[0]
        ratios = [leak_ratio(original[i], _pick(output, i), _pick(mask, i), background=_pick(background, i))
                  for i in range(B)]
        unfitted = [len(body_fit[min(i, len(body_fit) - 1)].skipped) if body_fit else 0 for i in range(B)]
        faces = identity_results(original, output, keypoints, face_threshold) if identity else [None] * B
        passed = [r <= max_leak and n == 0 and (f is None or f.passed)
                  for r, n, f in zip(ratios, unfitted, faces, strict=True)]
        text = [f"image {i}: leak ratio {r:.6f}" + (f", {n} unfitted person(s) not replaced" if n else "")
                + (f"; identity: {f.summary()}" if f is not None else "") + f" ({'pass' if ok else 'FAIL'})"
                for i, (r, n, f, ok) in enumerate(zip(ratios, unfitted, faces, passed, strict=True))]
        return io.NodeOutput(
            max(ratios), all(passed),
            ui={"text": text, "leak_ratio": ratios, "passed": passed,
                "identity": [f.to_dict() if f is not None else None for f in faces]},
        )


def identity_results(original, output, keypoints, threshold) -> list:
    """Per image of the batch, :func:`refsd.evaluate.check_identity` (faces of the photo vs the output)."""
    from ..refsd.evaluate import as_frame, check_identity
    from .detect import face_analyzer

    fa = face_analyzer()
    out = []
    pbar = comfy.utils.ProgressBar(original.shape[0])
    for i in range(original.shape[0]):
        comfy.model_management.throw_exception_if_processing_interrupted()
        people = None
        if keypoints:
            frame = keypoints[min(i, len(keypoints) - 1)]
            people = as_frame(frame, (original.shape[2], original.shape[1])).people
        out.append(check_identity(original[i], _pick(output, i), people, analyzer=fa, threshold=threshold))
        pbar.update_absolute(i + 1, original.shape[0])
    return out


class CropPeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDCropPeople",
            display_name="RefSD Crop People",
            category=f"{CATEGORY}/composite",
            description=(
                "Crops every person (with context) from the image and from each conditioning map to one size Stable "
                "Diffusion works well at (multiples of 64, e.g. 512 x 768), the box widened to that aspect ratio, so "
                "small people in large photos get full SD resolution. All people of all images form one batch for "
                "the sampler; RefSD Paste People puts the refined crops back at their exact place."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The image to refine (e.g. the avatars composited on the cleaned photo)."),
                BODY_FIT.Input("body_fit", tooltip="The fits (which image each person belongs to)."),
                io.Mask.Input("person_masks", tooltip="Per-person masks from RefSD Person Mask (person_masks output)."),
                io.Int.Input("width", default=512, min=64, max=2048, step=64, tooltip="Crop width (multiple of 64)."),
                io.Int.Input("height", default=768, min=64, max=2048, step=64, tooltip="Crop height (multiple of 64)."),
                io.Float.Input("context", default=0.15, min=0.0, max=2.0, step=0.01,
                               tooltip="Context around each person, as a fraction of their size."),
                io.Image.Input("depth", optional=True, tooltip="Depth map to crop the same way."),
                io.Image.Input("pose", optional=True, tooltip="OpenPose image to crop the same way."),
                io.Image.Input("edges", optional=True, tooltip="Edge image to crop the same way."),
                io.Mask.Input("mask", optional=True, tooltip="A mask to crop the same way (e.g. the avatar mask)."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="Crops of the image [N,h,w,3], one per person."),
                io.Image.Output(display_name="depth", tooltip="Crops of the depth map (black if not connected)."),
                io.Image.Output(display_name="pose", tooltip="Crops of the OpenPose image (black if not connected)."),
                io.Image.Output(display_name="edges", tooltip="Crops of the edge image (black if not connected)."),
                io.Mask.Output(display_name="mask", tooltip="Crops of the mask (empty if not connected)."),
                CROPS.Output(display_name="CROPS", tooltip="Where each crop came from, for RefSD Paste People."),
            ],
        )

    @classmethod
    def execute(cls, image, body_fit, person_masks, width, height, context, depth=None, pose=None, edges=None,
                mask=None) -> io.NodeOutput:
        boxes = people_crop_boxes([f.num_people for f in body_fit], person_masks, width, height, context)
        return io.NodeOutput(crop_batch(image, boxes, "border"), crop_batch(depth, boxes), crop_batch(pose, boxes),
                             crop_batch(edges, boxes), crop_mask_batch(mask, boxes), boxes)


class PastePeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RefSDPastePeople",
            display_name="RefSD Paste People",
            category=f"{CATEGORY}/composite",
            description=(
                "Puts refined person crops (from the sampler, after RefSD Crop People) back into the full images at "
                "their exact place, resampled to the original scale. The optional mask (e.g. the avatar mask) limits "
                "the paste to the people, so the cleaned background around them stays as it is."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The full images to paste into."),
                io.Image.Input("crops", tooltip="The refined crops, in RefSD Crop People's order."),
                CROPS.Input("crop_boxes", tooltip="RefSD Crop People's CROPS output."),
                io.Mask.Input("mask", optional=True, tooltip="Optional mask in the full images' pixels limiting the paste."),
                io.Image.Input(
                    "original", optional=True,
                    tooltip="Optional: the input photo. With a mask, pixels inside it that happen to equal the photo "
                    "are nudged to 3/255 from it, so no pixel of the original person survives.",
                ),
            ],
            outputs=[io.Image.Output(display_name="IMAGE", tooltip="The images with the crops pasted back.")],
        )

    @classmethod
    def execute(cls, image, crops, crop_boxes, mask=None, original=None) -> io.NodeOutput:
        return io.NodeOutput(paste_crops(image, crops, crop_boxes, mask, original))

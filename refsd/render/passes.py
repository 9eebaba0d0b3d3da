"""Render passes: every ControlNet conditioning image of the synthetic people from one rasterization.

:func:`render_passes` runs the body model once for all people of a :class:`~refsd.fit.BodyFit`,
rasterizes them once (:func:`~refsd.render.raster.rasterize`, people occlude each other) and
derives every map from those fragments (:class:`RenderPasses`). Each map follows the conventions
the SD1.5 ControlNet it feeds was trained on, as documented (with sources) in the project's
``CONTROLNET.md`` (the modules below give its section numbers). All float maps are float32 in
0..1, ``(H, W, C)`` (ComfyUI's ``IMAGE`` layout without the batch axis), on the device of the
body model's vertices.

The maps and their conventions, one module each: ``rgb``, ``depth``, ``normal`` and ``parts``
(with ``alpha``, ``person_masks`` and ``part_labels``) in :mod:`refsd.render.shading` (one
sweep over the covered pixels), ``pose`` and ``pose_keypoint`` in :mod:`refsd.render.pose`,
``edges`` in :mod:`refsd.render.edges`. This module holds :class:`RenderPasses`, the argument
checks and the orchestration (:func:`render_passes`, :func:`render_passes_from_output`).

Errors are :class:`~refsd.fit.camera.RenderError` naming the fix. Outputs are bit-identical
for the same inputs on CPU; on CUDA the vertex-normal sums use atomics (last-bit differences).
Memory: besides the output maps (about 100 bytes per pixel) and the rasterizer's fragments,
per-pixel work is done on the covered pixels only, in chunks of
:data:`~refsd.render.shading.PIXEL_CHUNK`, and the edge detector works on the people's bounding
box: a 4096 x 4096 image of 4 people takes about 2 GB on top of the body model, on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..body.base import PART_NAMES
from ..fit.camera import Camera, RenderError
from ..keypoints import FrameKeypoints, to_pose_keypoint
from .edges import CANNY_HIGH, CANNY_LOW, _bbox_canny, _check_thresholds, canny
from .pose import _pose_passes
from .raster import rasterize
from .scene import fit_camera, fit_output, person_masks_from
from .shading import _NORMAL_BACKGROUNDS, DEFAULT_LIGHTING, Lighting, _normal_bg, _shade, _vertex_colors

if TYPE_CHECKING:
    from ..body.base import BodyModel, BodyOutput
    from ..fit.result import BodyFit

# Re-exported: Lighting and DEFAULT_LIGHTING (the type and default of ``light``), canny and
# fit_output (bench/render.py reaches them, like fit_camera, _shade and _pose_passes, through here).
__all__ = [
    "RenderPasses",
    "render_passes",
    "render_passes_from_output",
    "Lighting",
    "DEFAULT_LIGHTING",
    "canny",
    "fit_output",
]


@dataclass
class RenderPasses:
    """All render passes of one image (``H x W``, ``P`` people); see the module docstring.

    Float maps are float32 in 0..1 on the vertices' device. ``depth`` and ``edges`` are
    single-channel maps expanded to 3 channels (views sharing memory: call ``.contiguous()``
    before writing into them in place).

    Attributes:
        rgb: ``(H, W, 3)`` shaded avatar over black.
        alpha: ``(H, W)`` union silhouette (1 where any person is visible).
        person_masks: ``(P, H, W)`` silhouette of each person's visible pixels.
        depth: ``(H, W, 3)`` ControlNet depth.
        normal: ``(H, W, 3)`` ControlNet normal (normalbae).
        pose: ``(H, W, 3)`` OpenPose skeleton image.
        pose_keypoint: ComfyUI ``POSE_KEYPOINT``: a list with one frame dict.
        parts: ``(H, W, 3)`` body-part segmentation colours.
        edges: ``(H, W, 3)`` Canny edges (0 or 1).
        part_labels: ``(H, W)`` int64 index into ``PART_NAMES``, -1 on background.
        person_idx: ``(H, W)`` int64 visible person, -1 on background.
        zbuf: ``(H, W)`` camera-space depth in metres, ``+inf`` on background.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    person_masks: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    pose: torch.Tensor
    pose_keypoint: list[dict]
    parts: torch.Tensor
    edges: torch.Tensor
    part_labels: torch.Tensor
    person_idx: torch.Tensor
    zbuf: torch.Tensor

    @property
    def height(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def width(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def num_people(self) -> int:
        return int(self.person_masks.shape[0])


def _check_size(camera: Camera, width: Any, height: Any) -> Camera:
    if width is None and height is None:
        return camera
    w = camera.width if width is None else width
    h = camera.height if height is None else height
    try:
        same = int(w) == camera.width and int(h) == camera.height and float(w) == int(w) and float(h) == int(h)
    except (TypeError, ValueError, OverflowError):
        same = False
    return camera if same else camera.resized(w, h)


def render_passes(
    model: BodyModel,
    fit: BodyFit,
    vertex_colors: torch.Tensor | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    draw_hands: bool = True,
    draw_face: bool = True,
    light: Lighting = DEFAULT_LIGHTING,
    depth_far: float = 0.2,
    normal_background: str = "flat",
    canny_low: float = CANNY_LOW,
    canny_high: float = CANNY_HIGH,
    backend: str = "torch",
) -> RenderPasses:
    """Render every pass of the fitted people of one image (one body-model forward, one rasterization).

    Args:
        model: the body model the fit was made with (:func:`refsd.body.get_body_model`).
        fit: a :class:`~refsd.fit.BodyFit` (camera + per-person parameters in OpenCV camera space).
        vertex_colors: sRGB colours in 0..1, ``(P, V, 3)`` one set per person in the fit's order,
            ``(V, 3)`` shared, a list of ``P`` ``(V, 3)`` tensors, or None
            (:data:`~refsd.render.shading.DEFAULT_VERTEX_COLOR`). uint8 colours are divided by 255;
            float colours are clamped to 0..1.
        width, height: output size; default the fit's image size. Otherwise the camera is
            rescaled exactly (:meth:`Camera.resized`; a different aspect ratio stretches).
        draw_hands, draw_face: include hands / face in ``pose`` and ``pose_keypoint``.
        light: :class:`~refsd.render.shading.Lighting` of ``rgb``.
        depth_far: depth value of the farthest visible person pixel (0 <= depth_far <= 1).
        normal_background: ``"flat"`` (0.5, 0.5, 1) or ``"black"``.
        canny_low, canny_high: Canny thresholds (ComfyUI ``Canny`` node units; defaults 0.4 / 0.8).
        backend: rasterizer backend (``"torch"``, ``"pytorch3d"`` or ``"auto"``).
    """
    if not all(hasattr(fit, a) for a in ("people", "camera", "image_width", "image_height")):
        raise RenderError(
            f"fit is {type(fit).__name__}; pass a refsd.fit.BodyFit (from RefSD Fit Body / Load Body Fit)."
        )
    for name in ("faces", "part_labels", "zero_params"):
        if not hasattr(model, name):
            raise RenderError(
                f"model is {type(model).__name__}; pass a refsd body model (refsd.body.get_body_model('anny'))."
            )
    try:
        camera = fit_camera(fit)
    except (KeyError, TypeError) as e:
        raise RenderError(
            f"fit.camera is {fit.camera!r}; it must hold fx, fy, cx, cy in pixels (a BodyFit from RefSD Fit Body)."
        ) from e
    camera = _check_size(camera, width, height)
    P = len(fit.people)
    V = model.num_vertices
    colors = _vertex_colors(vertex_colors, P, V, model.device)
    opts = {
        "draw_hands": draw_hands,
        "draw_face": draw_face,
        "light": light,
        "depth_far": depth_far,
        "normal_background": normal_background,
        "canny_low": canny_low,
        "canny_high": canny_high,
        "backend": backend,
    }
    if P == 0:
        _check_options(light, depth_far, normal_background, canny_low, canny_high)
        return _empty(camera, model.device, normal_background)
    out = fit_output(model, fit)
    return render_passes_from_output(out, model.faces, model.part_labels, camera, colors, **opts)


def _check_options(light: Any, depth_far: Any, normal_background: Any, low: Any, high: Any) -> None:
    if not isinstance(light, Lighting):
        raise RenderError(f"light is {type(light).__name__}; pass a refsd.render.passes.Lighting (or leave it out).")
    if isinstance(depth_far, bool) or not isinstance(depth_far, (int, float)) or not 0.0 <= depth_far <= 1.0:
        raise RenderError(f"depth_far is {depth_far!r}; it must be a number in 0..1 (default 0.2).")
    if normal_background not in _NORMAL_BACKGROUNDS:
        raise RenderError(f"normal_background is {normal_background!r}; use 'flat' (default) or 'black'.")
    _check_thresholds(low, high)


def _empty(camera: Camera, device: torch.device, normal_background: str) -> RenderPasses:
    H, W = camera.height, camera.width
    bg = torch.tensor(_normal_bg(normal_background), device=device)
    frame = to_pose_keypoint([FrameKeypoints(people=[], canvas=(W, H), image_size=(W, H))])
    return RenderPasses(
        rgb=torch.zeros(H, W, 3, device=device),
        alpha=torch.zeros(H, W, device=device),
        person_masks=torch.zeros(0, H, W, device=device),
        depth=torch.zeros(H, W, 1, device=device).expand(H, W, 3),
        normal=bg.expand(H, W, 3).contiguous(),
        pose=torch.zeros(H, W, 3, device=device),
        pose_keypoint=frame,
        parts=torch.zeros(H, W, 3, device=device),
        edges=torch.zeros(H, W, 1, device=device).expand(H, W, 3),
        part_labels=torch.full((H, W), -1, dtype=torch.int64, device=device),
        person_idx=torch.full((H, W), -1, dtype=torch.int64, device=device),
        zbuf=torch.full((H, W), float("inf"), device=device),
    )


# ---------------------------------------------------------------------------
# Passes from a body-model output
# ---------------------------------------------------------------------------
def render_passes_from_output(
    out: BodyOutput,
    faces: torch.Tensor,
    part_labels: torch.Tensor,
    camera: Camera,
    vertex_colors: torch.Tensor | None = None,
    *,
    draw_hands: bool = True,
    draw_face: bool = True,
    light: Lighting = DEFAULT_LIGHTING,
    depth_far: float = 0.2,
    normal_background: str = "flat",
    canny_low: float = CANNY_LOW,
    canny_high: float = CANNY_HIGH,
    backend: str = "torch",
) -> RenderPasses:
    """Every pass from camera-space meshes and keypoints (:func:`render_passes` without the model).

    ``out`` is a :class:`~refsd.body.base.BodyOutput` (or anything with ``vertices (P, V, 3)``,
    ``coco18 (P, 18, 3)``, optional ``hands (P, 2, 21, 3)``, ``face (P, 68, 3)`` and
    ``kp_valid``) in OpenCV camera space; ``faces (F, 3)`` and ``part_labels (V,)`` are shared by
    every person. Other arguments as in :func:`render_passes`.
    """
    _check_options(light, depth_far, normal_background, canny_low, canny_high)
    if not isinstance(camera, Camera):
        raise RenderError(f"camera is {type(camera).__name__}; pass a refsd.render.Camera.")
    verts = getattr(out, "vertices", None)
    if not isinstance(verts, torch.Tensor) or verts.dim() != 3 or verts.shape[-1] != 3:
        raise RenderError(
            "out.vertices must be a (P, V, 3) tensor of camera-space vertices; pass the BodyOutput of the body model."
        )
    device = verts.device
    P, V = int(verts.shape[0]), int(verts.shape[1])
    if not isinstance(part_labels, torch.Tensor) or part_labels.shape != (V,):
        shape = tuple(part_labels.shape) if isinstance(part_labels, torch.Tensor) else type(part_labels).__name__
        raise RenderError(f"part_labels is {shape}; pass the model's (V,) = ({V},) part_labels.")
    n_parts = len(PART_NAMES)
    if part_labels.is_floating_point() or (V and (int(part_labels.min()) < 0 or int(part_labels.max()) >= n_parts)):
        raise RenderError(
            f"part_labels must be integers in 0..{n_parts - 1} (indices into refsd.body.PART_NAMES); "
            "pass the body model's part_labels."
        )
    colors = _vertex_colors(vertex_colors, P, V, device)
    if P == 0:
        return _empty(camera, device, normal_background)

    with torch.no_grad():
        verts = verts.detach()
        fr = rasterize(verts, faces, camera, backend=backend)
        H, W = camera.height, camera.width
        win = fr.mask.reshape(-1).nonzero().squeeze(1)  # covered pixels, row-major
        shaded = _shade(fr, win, verts, colors, part_labels.to(device), camera, light, depth_far, normal_background)
        rgb = shaded["rgb"]
        alpha = fr.mask.to(torch.float32)
        person_masks = person_masks_from(fr, P)
        box = None
        if win.numel():
            cols = win.remainder(W)
            box = (int(win[0]) // W, int(win[-1]) // W + 1, int(cols.min()), int(cols.max()) + 1)
        edges = _bbox_canny(rgb, canny_low, canny_high, box)
        pose, pose_kp = _pose_passes(out, verts, fr, camera, draw_hands, draw_face)
    return RenderPasses(
        rgb=rgb,
        alpha=alpha,
        person_masks=person_masks,
        depth=shaded["depth"].unsqueeze(-1).expand(H, W, 3),
        normal=shaded["normal"],
        pose=pose.to(device),
        pose_keypoint=pose_kp,
        parts=shaded["parts"],
        edges=edges.unsqueeze(-1).expand(H, W, 3),
        part_labels=shaded["labels"],
        person_idx=fr.person_idx,
        zbuf=fr.zbuf.to(torch.float32),
    )

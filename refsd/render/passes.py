"""Render passes: every ControlNet conditioning image of the synthetic people from one rasterization.

:func:`render_passes` runs the body model once for all people of a :class:`~refsd.fit.BodyFit`,
rasterizes them once (:func:`~refsd.render.raster.rasterize`, people occlude each other) and
derives every map from those fragments (:class:`RenderPasses`). Each map follows the conventions
the SD1.5 ControlNet it feeds was trained on, as documented (with sources) in the project's
``CONTROLNET.md`` (section numbers below refer to it). All float maps are float32 in 0..1,
``(H, W, C)`` (ComfyUI's ``IMAGE`` layout without the batch axis), on the device of the body
model's vertices.

========== ======================================================================================
map        convention
========== ======================================================================================
``rgb``    shaded avatar over black: per-vertex sRGB colours (interpolated in sRGB), lit by a soft
           directional light from near the camera plus hemispheric ambient, no shadows
           (:class:`Lighting`), in linear light with sRGB approximated as a 2.2 power law:
           ``rgb = colour * irradiance ** (1 / 2.2)``. ``alpha`` is the union silhouette,
           ``person_masks`` one silhouette per person (what each person has visible).
``depth``  §2, grey (3 equal channels): an affine function of disparity ``1 / z`` (MiDaS / Depth
           Anything, the default depth preprocessors, output disparity) normalised per image over
           the visible people: the nearest visible pixel is exactly 1, the farthest visible pixel
           ``depth_far`` (default 0.2, so silhouettes stay apart from the background), background
           exactly 0 (black).
``normal`` §3 (``control_v11p_sd15_normalbae``): camera-space unit normals, ``RGB = (1 - n) / 2``
           with ``n`` in OpenCV camera axes (x right, y down, z forward), i.e.
           ``R = (1 - nx) / 2, G = (1 + ny) / 2, B = (1 + nz) / 2`` in OpenGL axes (y up, z toward
           the viewer): a surface facing the camera is (0.5, 0.5, 1) = (127, 127, 255) / 255 after
           ControlNet's uint8 truncation, one facing image-right has R = 0, one facing up G = 1.
           Background: ``normal_background="flat"`` (default) the same (0.5, 0.5, 1) -- a flat
           backdrop facing the camera, what BAE predicts for a wall behind a person -- or
           ``"black"``. Smooth (interpolated) vertex normals; back faces seen through holes are
           flipped to face the camera, and normals bent away from the camera at silhouettes are
           projected back onto the view plane (BAE never predicts an invisible surface).
``pose``   §1 (OpenPose / DWPose): the projected COCO-18 body (+ hands, + face when the model has
           face landmarks) drawn by :func:`refsd.pose_draw.draw_pose` (limbs as ellipses of
           half-width 4 in 0.6x colour, dots of radius 4, hands, white face dots) at the output
           resolution, people far to near. ``pose_keypoint`` is the same points as ComfyUI
           ``POSE_KEYPOINT`` (see "Keypoints" below).
``parts``  body-part segmentation: each pixel's part (the visible face's vertex with the largest
           barycentric weight, as :func:`~refsd.render.raster.interpolate_nearest`) coloured with
           :func:`refsd.materials.part_palette`; background black. ``part_labels`` holds the
           indices into :data:`refsd.body.base.PART_NAMES` (-1 background).
``edges``  §4 (``control_v11p_sd15_canny``): white edges on black, exactly 0 or 1, 3 equal
           channels: the Canny detector of ComfyUI's core ``Canny`` node
           (``kornia.filters.canny`` with its 0.4 / 0.8 defaults: BT.601 grey, 5x5 Gaussian
           sigma 1, unnormalised Sobel, non-maximum suppression, hysteresis) run on ``rgb``
           (the avatar over black). :func:`canny` reimplements kornia's algorithm (same rules,
           padding, rounding and tie breaks; bit-identical edges in the tests) on the people's
           bounding box only, with a connected-component hysteresis instead of kornia's
           one-pixel-per-round loop (kornia takes 0.15-0.7 s at 512 x 512 on CPU and over a
           minute at 4096 x 4096; this takes 3 ms and 0.5 s); kornia is not needed at run time.
========== ======================================================================================

Keypoints (``pose`` and ``pose_keypoint``)
------------------------------------------
Points are projected with the render camera; coordinates are this package's continuous pixel
coordinates (pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)``, :mod:`refsd.render.camera`), so
a dot is drawn on the pixel that contains the projected point, and the ``POSE_KEYPOINT`` values
are the same numbers (what :mod:`refsd.fit` reads back). A point is **dropped** (not drawn;
``0, 0, 0`` in ``POSE_KEYPOINT``), as OpenPose/DWPose would not detect it, when

* the body model does not define it (``kp_valid``),
* it projects outside the image or lies behind the camera,
* **another person** hides it: at its pixel another person's surface is visible and nearer to the
  camera than the point. Self-occlusion does not drop a point (joints lie inside the body, and
  the detectors infer self-occluded limbs, e.g. the far arm of a person seen from the side).
* the Neck is dropped unless both shoulders are kept (DWPose derives it from them).

Kept points have confidence 1. People with no kept point at all are left out of
``POSE_KEYPOINT`` (a detector would not find them); the others keep the fit's order. With
``draw_hands=False`` / ``draw_face=False`` the hands / face are neither drawn nor written.

Errors are :class:`~refsd.render.camera.RenderError` naming the fix. Outputs are bit-identical
for the same inputs on CPU; on CUDA the vertex-normal sums use atomics (last-bit differences).
Memory: besides the output maps (about 100 bytes per pixel) and the rasterizer's fragments,
per-pixel work is done on the covered pixels only, in chunks of :data:`PIXEL_CHUNK`, and the
edge detector works on the people's bounding box: a 4096 x 4096 image of 4 people takes about
2 GB on top of the body model, on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..body.base import PART_NAMES
from ..keypoints import FrameKeypoints, PersonKeypoints, face68_to_face70, to_pose_keypoint
from ..pose_draw import draw_pose
from .camera import Camera, RenderError
from .raster import Fragments, rasterize
from .scene import fit_camera, fit_output, person_masks_from

if TYPE_CHECKING:
    from ..body.base import BodyModel, BodyOutput
    from ..fit.result import BodyFit

__all__ = [
    "RenderPasses",
    "Lighting",
    "DEFAULT_LIGHTING",
    "DEFAULT_VERTEX_COLOR",
    "PIXEL_CHUNK",
    "render_passes",
    "render_passes_from_output",
    "fit_output",
    "canny",
    "encode_normals",
]

#: Colour (sRGB, 0..1) of every vertex when ``vertex_colors`` is None: a light clay grey.
DEFAULT_VERTEX_COLOR = (0.72, 0.72, 0.72)
#: Covered pixels shaded per chunk (bounds the per-pixel temporaries on huge images).
PIXEL_CHUNK = 1 << 19
#: Default Canny thresholds of ComfyUI's core ``Canny`` node (CONTROLNET.md §4).
CANNY_LOW, CANNY_HIGH = 0.4, 0.8
_CANNY_EPS = 1e-6  # kornia.filters.canny's eps inside the gradient magnitude's square root
_CANNY_MARGIN = 6  # black pixels kept around the people's box: the detector reads 5 px around a pixel
_NORMAL_BACKGROUNDS = ("flat", "black")


# ---------------------------------------------------------------------------
# Public types
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Lighting:
    """Soft lighting of the avatar (``rgb``).

    Irradiance ``E = ambient(n) + diffuse * max(0, n . l)`` with ``l`` the unit ``direction``
    (towards the light, OpenCV camera axes: x right, y down, z forward; the default is a light
    just above-left of the camera) and a hemispheric ambient
    ``ambient(n) = ground + (sky - ground) * (1 + n . up) / 2``, ``up = (0, -1, 0)`` (the image's
    up). No shadows. Applied in linear light with sRGB taken as a 2.2 power law, i.e.
    ``rgb = colour_srgb * E ** (1 / 2.2)``, clamped to 1. With the defaults a surface facing the
    camera gets E = 0.87 (0.94 of its colour), one facing the light E = 1, one facing straight
    down (the darkest) E = 0.2 (0.48 of its colour).
    """

    direction: tuple[float, float, float] = (-0.3, -0.5, -1.0)
    diffuse: float = 0.6
    sky: float = 0.5
    ground: float = 0.2

    def __post_init__(self) -> None:
        try:
            d = tuple(float(x) for x in self.direction)
        except (TypeError, ValueError) as e:
            raise RenderError(f"Lighting direction is {self.direction!r}; give three numbers (x, y, z).") from e
        if len(d) != 3 or not all(math.isfinite(x) for x in d) or math.hypot(*d) < 1e-9:
            raise RenderError(
                f"Lighting direction is {self.direction!r}; give three finite numbers, not all zero "
                "(towards the light in camera axes, e.g. (-0.3, -0.5, -1.0))."
            )
        object.__setattr__(self, "direction", d)
        for name in ("diffuse", "sky", "ground"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise RenderError(f"Lighting {name} is {v!r}; it must be a number >= 0 (e.g. 0.5).")
            object.__setattr__(self, name, float(v))

    def unit_direction(self) -> tuple[float, float, float]:
        n = math.hypot(*self.direction)
        return (self.direction[0] / n, self.direction[1] / n, self.direction[2] / n)


DEFAULT_LIGHTING = Lighting()


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


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def encode_normals(n: torch.Tensor) -> torch.Tensor:
    """Unit normals in OpenCV camera axes ``(..., 3)`` -> normalbae colours ``(1 - n) / 2`` (CONTROLNET.md §3)."""
    return (1.0 - n) * 0.5


def _part_palette(device: torch.device) -> torch.Tensor:
    """``(len(PART_NAMES) + 1, 3)`` float colours 0..1; the last row (index -1) is the black background."""
    from ..materials import part_palette

    return part_palette().to(device=device, dtype=torch.float32) / 255.0


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------
def _vertex_colors(vertex_colors: Any, P: int, V: int, device: torch.device) -> torch.Tensor:
    """Per-vertex sRGB colours as ``(P, V, 3)`` float32 in 0..1 on ``device``."""
    if vertex_colors is None:
        return torch.tensor(DEFAULT_VERTEX_COLOR, dtype=torch.float32, device=device).expand(P, V, 3)
    c = vertex_colors
    if isinstance(c, (list, tuple)):
        if len(c) != P:
            raise RenderError(
                f"vertex_colors has {len(c)} colour sets but the fit has {P} people; pass one (V, 3) colour "
                "set per fitted person, in the fit's order."
            )
        if P == 0:
            return torch.zeros(0, V, 3, device=device)
        if not all(isinstance(x, torch.Tensor) for x in c):
            raise RenderError("vertex_colors is a list with non-tensor entries; pass (V, 3) torch tensors.")
        shapes = {tuple(x.shape) for x in c}
        if len(shapes) != 1:
            raise RenderError(f"vertex_colors entries have different shapes {sorted(shapes)}; each must be (V, 3).")
        c = torch.stack([x.to(device) for x in c])
    if not isinstance(c, torch.Tensor):
        raise RenderError(
            f"vertex_colors is {type(c).__name__}; pass a tensor (P, V, 3) or (V, 3) of sRGB colours in 0..1 (or None)."
        )
    if c.dim() == 2:
        if c.shape != (V, 3):
            raise RenderError(
                f"vertex_colors has shape {tuple(c.shape)}; one colour set shared by all people must be (V, 3) = "
                f"({V}, 3), one row per mesh vertex."
            )
        c = c.unsqueeze(0).expand(P, V, 3)
    elif c.dim() == 3:
        if c.shape[0] != P:
            raise RenderError(
                f"vertex_colors has colours for {c.shape[0]} people but the fit has {P}; pass one colour set per "
                "fitted person (P, V, 3), in the fit's order, or one shared (V, 3) set."
            )
        if c.shape[1:] != (V, 3):
            raise RenderError(
                f"vertex_colors has shape {tuple(c.shape)}; expected (P, V, 3) = ({P}, {V}, 3), one row per mesh vertex."
            )
    else:
        raise RenderError(f"vertex_colors has shape {tuple(c.shape)}; expected (P, V, 3) or (V, 3).")
    if c.dtype == torch.bool or c.is_complex():
        raise RenderError(f"vertex_colors has dtype {c.dtype}; pass float colours in 0..1 (or uint8 0..255).")
    if not c.is_floating_point():
        c = c.to(torch.float32) / 255.0
    c = c.to(device=device, dtype=torch.float32)
    if c.numel() and not bool(torch.isfinite(c).all()):
        raise RenderError("vertex_colors contain NaN or infinite values; pass sRGB colours in 0..1.")
    return c.clamp(0.0, 1.0)


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
            ``(V, 3)`` shared, a list of ``P`` ``(V, 3)`` tensors, or None (:data:`DEFAULT_VERTEX_COLOR`).
            uint8 colours are divided by 255; float colours are clamped to 0..1.
        width, height: output size; default the fit's image size. Otherwise the camera is
            rescaled exactly (:meth:`Camera.resized`; a different aspect ratio stretches).
        draw_hands, draw_face: include hands / face in ``pose`` and ``pose_keypoint``.
        light: :class:`Lighting` of ``rgb``.
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


def _check_thresholds(low: Any, high: Any) -> None:
    for name, v in (("canny_low", low), ("canny_high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise RenderError(f"{name} is {v!r}; it must be a positive number (ComfyUI's Canny defaults: 0.4, 0.8).")
    if low > high:
        raise RenderError(f"canny_low ({low}) is above canny_high ({high}); swap them.")


def _normal_bg(normal_background: str) -> tuple[float, float, float]:
    return (0.5, 0.5, 1.0) if normal_background == "flat" else (0.0, 0.0, 0.0)


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


def _face_normals(verts: torch.Tensor, faces_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-weighted vertex normals ``(Nv, 3)`` (not normalised) and per-face back-facing flags.

    ``verts`` is packed ``(Nv, 3)``, ``faces_t`` ``(3, F)`` packed corner indices. A face is
    back-facing when its geometric normal ``(v1 - v0) x (v2 - v0)`` points away from the camera
    (``n . v0 > 0``; CCW-outward meshes).
    """
    p0, p1, p2 = (verts.index_select(0, faces_t[k]) for k in range(3))
    fn = torch.linalg.cross(p1 - p0, p2 - p0, dim=-1)
    back = (fn * p0).sum(-1) > 0
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn.index_add_(0, faces_t[k], fn)
    return vn, back


def _shade(
    fr: Fragments,
    win: torch.Tensor,
    verts: torch.Tensor,
    colors: torch.Tensor,
    part_labels: torch.Tensor,
    camera: Camera,
    light: Lighting,
    depth_far: float,
    normal_background: str,
) -> dict[str, torch.Tensor]:
    """rgb, normal, depth (1 channel), parts, labels; per covered pixel (flat indices ``win``), in chunks."""
    H, W = camera.height, camera.width
    dev = verts.device
    f32 = torch.float32
    P, V = int(verts.shape[0]), int(verts.shape[1])
    rgb = torch.zeros(H * W, 3, dtype=f32, device=dev)
    normal = torch.empty(H * W, 3, dtype=f32, device=dev)
    normal[:] = torch.tensor(_normal_bg(normal_background), dtype=f32, device=dev)
    parts = torch.zeros(H * W, 3, dtype=f32, device=dev)
    depth = torch.zeros(H * W, dtype=f32, device=dev)
    labels = torch.full((H * W,), -1, dtype=torch.int64, device=dev)
    result = {
        "rgb": rgb.view(H, W, 3),
        "normal": normal.view(H, W, 3),
        "parts": parts.view(H, W, 3),
        "depth": depth.view(H, W),
        "labels": labels.view(H, W),
    }
    if win.numel() == 0:
        return result

    vp = verts.reshape(P * V, 3).to(f32)
    vn, back = _face_normals(vp, fr.faces_t)
    # Channel-first per-vertex attributes (colour, normal): one gather per corner brings both.
    attrs = torch.cat([colors.reshape(P * V, 3), vn], dim=1).t().contiguous()  # (6, P * V)
    labels_packed = part_labels.to(torch.int64).repeat(P)
    palette = _part_palette(dev)
    flip = 1.0 - 2.0 * back.to(f32)  # -1 on back faces
    zflat = fr.zbuf.reshape(-1).to(f32)
    # Depth: affine in disparity over all visible people pixels.
    disp_all = zflat.index_select(0, win).reciprocal_()
    d_near, d_far = disp_all.max(), disp_all.min()
    span = float(d_near - d_far)
    scale = (1.0 - depth_far) / span if span > 0 else 0.0
    del disp_all

    lx, ly, lz = light.unit_direction()
    ambient_k = 0.5 * (light.sky - light.ground)
    ambient_0 = light.ground + ambient_k
    bary_flat = fr.bary.reshape(-1, 3)
    pid_flat = fr.person_idx.reshape(-1)
    fid_flat = fr.face_idx.reshape(-1)
    ft = fr.faces_t
    for s in range(0, win.numel(), PIXEL_CHUNK):
        w = win[s : s + PIXEL_CHUNK]
        gf = fr.face_offsets.index_select(0, pid_flat.index_select(0, w)).add_(fid_flat.index_select(0, w))
        v0, v1, v2 = (ft[k].index_select(0, gf) for k in range(3))
        b = bary_flat.index_select(0, w).to(f32).t()  # (3, n)
        b0, b1, b2 = b[0], b[1], b[2]
        acc = attrs.index_select(1, v0).mul_(b0)
        acc.addcmul_(attrs.index_select(1, v1), b1).addcmul_(attrs.index_select(1, v2), b2)
        albedo = acc[:3]
        nx, ny, nz = acc[3], acc[4], acc[5]

        # Unit view direction of each pixel centre (from the camera towards the surface).
        row = torch.div(w, W, rounding_mode="floor")
        vx = (w - row * W).to(f32).add_(0.5 - camera.cx).mul_(1.0 / camera.fx)
        vy = row.to(f32).add_(0.5 - camera.cy).mul_(1.0 / camera.fy)
        vz = (vx * vx).addcmul_(vy, vy).add_(1.0).rsqrt_()
        vx.mul_(vz)
        vy.mul_(vz)

        # Normals: flip back faces seen through holes (two-sided raster), normalise, and project
        # normals that point away from the camera (smooth normals at silhouettes) onto the view plane.
        k = (nx * nx).addcmul_(ny, ny).addcmul_(nz, nz).clamp_min_(1e-24).rsqrt_().mul_(flip.index_select(0, gf))
        nx.mul_(k)
        ny.mul_(k)
        nz.mul_(k)
        away = (nx * vx).addcmul_(ny, vy).addcmul_(nz, vz).clamp_min_(0.0)
        nx.sub_(away * vx)
        ny.sub_(away * vy)
        nz.sub_(away * vz)
        k = (nx * nx).addcmul_(ny, ny).addcmul_(nz, nz).clamp_min_(1e-24).rsqrt_()
        nx.mul_(k)
        ny.mul_(k)
        nz.mul_(k)
        n = acc[3:]
        normal.index_copy_(0, w, n.neg().add_(1.0).mul_(0.5).t())  # encode_normals, (1 - n) / 2

        # Soft lighting in linear light with a gamma-2.2 transfer: sRGB albedo * irradiance^(1/2.2).
        irr = (nx * lx).add_(ny, alpha=ly).add_(nz, alpha=lz).clamp_min_(0.0).mul_(light.diffuse)
        irr.sub_(ny, alpha=ambient_k).add_(ambient_0).pow_(1.0 / 2.2)
        rgb.index_copy_(0, w, albedo.mul_(irr).clamp_(0.0, 1.0).t())

        # Depth: nearest visible pixel exactly 1, farthest depth_far, affine in 1 / z.
        if span > 0:
            val = (d_near - zflat.index_select(0, w).reciprocal_()).mul_(-scale).add_(1.0)
            depth.index_copy_(0, w, val)
        else:
            depth.index_fill_(0, w, 1.0)

        # Parts: the corner with the largest barycentric weight (ties: lower corner), as interpolate_nearest.
        vnear = torch.where((b0 >= b1) & (b0 >= b2), v0, torch.where(b1 >= b2, v1, v2))
        lab = labels_packed.index_select(0, vnear)
        labels.index_copy_(0, w, lab)
        parts.index_copy_(0, w, palette.index_select(0, lab))
    return result


# ---------------------------------------------------------------------------
# Canny (kornia.filters.canny's algorithm, cropped, component hysteresis)
# ---------------------------------------------------------------------------
def _gaussian5(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """kornia's ``get_gaussian_kernel1d(5, 1.0)``, computed the same way (same rounding)."""
    x = torch.arange(5, dtype=dtype, device=device) - 2.0
    dist = x.pow(2.0)
    g = torch.exp(-dist / (2 * torch.ones((), dtype=dtype, device=device).pow(2.0)))
    return g / g.sum()


def _blur5(x: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """5-tap filter along ``dim`` (0 rows, 1 columns) of a 2-D tensor with reflect padding.

    Accumulates exactly as kornia's CPU ``gaussian_blur2d`` (one product, then ``addcmul_`` per tap).
    """
    n = x.shape[dim]
    pad = (2, 2, 0, 0) if dim == 1 else (0, 0, 2, 2)
    mode = "reflect" if n > 2 else "replicate"
    p = torch.nn.functional.pad(x[None, None], pad, mode=mode)[0, 0]
    out = p.narrow(dim, 0, n) * g[0]
    for k in range(1, 5):
        out.addcmul_(p.narrow(dim, k, n), g[k])
    return out


def _sobel_kernels(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(2, 1, 3, 3)`` unnormalised Sobel x, y kernels (kornia ``spatial_gradient(normalized=False)``)."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device)
    return torch.stack((k, k.t()))[:, None]


def _canny_crop(gray: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny edges (bool) of a 2-D grey image, kornia.filters.canny's rules.

    The dense part (blur, Sobel, magnitude) runs on the whole image; non-maximum suppression and
    hysteresis only on the pixels whose magnitude exceeds ``low`` (the only ones that can be edges).
    """
    h, w = gray.shape
    g = _gaussian5(gray.dtype, gray.device)
    blurred = _blur5(_blur5(gray, g, 1), g, 0)
    # Unnormalised Sobel with replicate padding (kornia.filters.spatial_gradient(normalized=False)).
    # Same padding and convolution call as kornia, so the gradients round the same way.
    p = torch.nn.functional.pad(blurred[None, None], (1, 1, 1, 1), mode="replicate")
    grad = torch.nn.functional.conv2d(p, _sobel_kernels(gray.dtype, gray.device))[0]
    gx, gy = grad[0], grad[1]
    del p, blurred
    floor = torch.sqrt(torch.tensor(_CANNY_EPS, dtype=gray.dtype, device=gray.device))
    w2 = w + 2
    mp = floor.expand(h + 2, w2).clone()  # magnitude, padded with that of a flat pixel (as kornia)
    mag = mp[1:-1, 1:-1]
    torch.sqrt(gx * gx + gy * gy + _CANNY_EPS, out=mag)
    out = torch.zeros(h * w, dtype=torch.bool, device=gray.device)
    cand = (mag > low).reshape(-1).nonzero().squeeze(1)  # nms > low needs magnitude > low (low > 0)
    if cand.numel() == 0:
        return out.view(h, w)
    # Gradient direction rounded to 45 degrees, folded to 4 classes: 0 horizontal, 1 diagonal
    # down-right, 2 vertical, 3 diagonal down-left. Neighbour offsets in the padded magnitude; the
    # comparison with the right (class 0) / lower (class 2) neighbour accepts a tie (kornia, cv2.Canny).
    ang = torch.atan2(gy.reshape(-1).index_select(0, cand), gx.reshape(-1).index_select(0, cand)).nan_to_num_()
    cls = (ang * (4 / math.pi)).round_().remainder_(4).long()
    offsets = torch.tensor([1, w2 + 1, w2, w2 - 1], device=gray.device)
    off = offsets.index_select(0, cls)
    row = torch.div(cand, w, rounding_mode="floor")
    pidx = cand + 2 * row + (w2 + 1)  # (row + 1) * (w + 2) + col + 1
    mf = mp.reshape(-1)
    mc = mf.index_select(0, pidx)
    a = mf.index_select(0, pidx + off)
    b = mf.index_select(0, pidx - off)
    tie = (cls & 1) == 0
    keep = ((mc > a) | (tie & (mc == a))) & (mc > b) & (mc > floor)
    cand, mc = cand[keep], mc[keep]
    return _hysteresis(cand, mc > high, out, w).view(h, w)


def _hysteresis(idx: torch.Tensor, strong: torch.Tensor, out: torch.Tensor, w: int) -> torch.Tensor:
    """Mark in ``out`` (flat bool) the candidates ``idx`` (sorted flat indices, row width ``w``)
    8-connected through candidates to a ``strong`` one.

    Same result as kornia's repeated rounds of "a weak pixel next to a strong one becomes
    strong", computed as connected components of the (few) candidate pixels by union-find
    (hook the larger root onto the smaller, then pointer jumping), which takes a handful of
    vectorised rounds instead of one round per pixel of the longest weak chain.
    """
    K = idx.numel()
    if K == 0:
        return out
    if bool(strong.all()):
        out[idx] = True
        return out
    r = torch.div(idx, w, rounding_mode="floor")
    c = idx - r * w
    src, dst = [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        q = idx + (dr * w + dc)
        ok = (c + dc >= 0) & (c + dc < w)
        pos = torch.searchsorted(idx, q).clamp_(max=K - 1)
        found = ok & (idx.index_select(0, pos) == q)
        src.append(found.nonzero().squeeze(1))
        dst.append(pos[found])
    s, d = torch.cat(src), torch.cat(dst)
    parent = torch.arange(K, device=idx.device)
    while s.numel():
        rs, rd = parent.index_select(0, s), parent.index_select(0, d)
        diff = rs != rd
        s, d, rs, rd = s[diff], d[diff], rs[diff], rd[diff]
        if s.numel() == 0:
            break
        parent.scatter_reduce_(0, torch.maximum(rs, rd), torch.minimum(rs, rd), reduce="amin")
        while True:  # pointer jumping until every entry points at its root
            jumped = parent.index_select(0, parent)
            if torch.equal(jumped, parent):
                break
            parent = jumped
    good = torch.zeros(K, dtype=torch.bool, device=idx.device)
    good[parent[strong]] = True
    out[idx[good.index_select(0, parent)]] = True
    return out


def _bbox_canny(image: torch.Tensor, low: float, high: float, box: tuple[int, int, int, int] | None) -> torch.Tensor:
    H, W = image.shape[:2]
    out = torch.zeros(H, W, dtype=torch.float32, device=image.device)
    if box is None:
        return out
    m = _CANNY_MARGIN
    r0, r1 = max(box[0] - m, 0), min(box[1] + m, H)
    c0, c1 = max(box[2] - m, 0), min(box[3] + m, W)
    crop = image[r0:r1, c0:c1].to(torch.float32)
    gray = crop[..., 0] * 0.299 + crop[..., 1] * 0.587 + crop[..., 2] * 0.114 if crop.dim() == 3 else crop
    out[r0:r1, c0:c1] = _canny_crop(gray, float(low), float(high)).to(torch.float32)
    return out


def canny(
    image: torch.Tensor,
    low_threshold: float = CANNY_LOW,
    high_threshold: float = CANNY_HIGH,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Canny edges ``(H, W)`` float 0/1 of an ``(H, W, 3)`` RGB (or ``(H, W)`` grey) image in 0..1.

    The algorithm and thresholds of ``kornia.filters.canny`` (ComfyUI's core ``Canny`` node,
    CONTROLNET.md §4): BT.601 grey, 5x5 Gaussian (sigma 1, reflect border), unnormalised Sobel
    (replicate border), gradient magnitude ``sqrt(gx^2 + gy^2 + 1e-6)``, non-maximum suppression
    along the gradient rounded to 45 degrees (ties kept towards right / down), strict thresholds,
    8-connected hysteresis. With ``mask`` (``(H, W)`` bool: where the image may be non-black) the
    work is limited to the mask's bounding box plus a black margin, which gives the same edges.
    """
    _check_thresholds(low_threshold, high_threshold)
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3) or (image.dim() == 3 and image.shape[-1] != 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise RenderError(f"canny expects an (H, W, 3) RGB or (H, W) grey tensor in 0..1, got {shape}.")
    H, W = image.shape[:2]
    if mask is None:
        box = (0, H, 0, W)
    else:
        if not isinstance(mask, torch.Tensor) or mask.shape != (H, W):
            raise RenderError(f"canny mask must be an (H, W) = ({H}, {W}) bool tensor.")
        rows = mask.any(dim=1).nonzero()
        cols = mask.any(dim=0).nonzero()
        box = None if rows.numel() == 0 else (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    return _bbox_canny(image, low_threshold, high_threshold, box)


# ---------------------------------------------------------------------------
# Keypoints: visibility, skeleton image, POSE_KEYPOINT
# ---------------------------------------------------------------------------
def _project_visible(
    pts: torch.Tensor, valid: torch.Tensor, fr: Fragments, camera: Camera, near: float = 1e-3
) -> np.ndarray:
    """``(P, K, 3)`` camera-space points -> ``(P, K, 3)`` float64 x, y, conf (NaN, NaN, 0 dropped).

    Dropped: ``valid`` False, behind the camera, outside the image, or hidden by another person
    (another person's surface is visible at the point's pixel and nearer than the point).
    """
    P, K = int(pts.shape[0]), int(pts.shape[1])
    p = pts.detach().to(torch.float64)
    z = p[..., 2]
    front = z > near
    zs = torch.where(front, z, torch.ones_like(z))
    u = p[..., 0] / zs * camera.fx + camera.cx
    v = p[..., 1] / zs * camera.fy + camera.cy
    ok = front & valid.to(p.device).bool().expand(P, K) & torch.isfinite(u) & torch.isfinite(v)
    ok &= (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    j = torch.where(ok, u, torch.zeros_like(u)).floor().long().clamp_(0, camera.width - 1)
    i = torch.where(ok, v, torch.zeros_like(v)).floor().long().clamp_(0, camera.height - 1)
    flat = (i * camera.width + j).reshape(-1).to(fr.person_idx.device)
    who = fr.person_idx.reshape(-1).index_select(0, flat).view(P, K).to(p.device)
    zb = fr.zbuf.reshape(-1).index_select(0, flat).view(P, K).to(p.device, torch.float64)
    me = torch.arange(P, device=p.device).view(P, 1)
    hidden = (who >= 0) & (who != me) & (zb < z)
    ok &= ~hidden
    out = torch.stack((u, v, torch.ones_like(u)), dim=-1)
    out[~ok] = torch.tensor([float("nan"), float("nan"), 0.0], dtype=torch.float64, device=p.device)
    return out.cpu().numpy()


def _valid(out: Any, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    kv = getattr(out, "kp_valid", None) or {}
    v = kv.get(key)
    if v is None:
        return torch.ones(shape, dtype=torch.bool)
    return torch.as_tensor(v).bool().cpu().reshape(shape)


def _pose_passes(
    out: Any, verts: torch.Tensor, fr: Fragments, camera: Camera, draw_hands: bool, draw_face: bool
) -> tuple[torch.Tensor, list[dict]]:
    P = int(verts.shape[0])
    H, W = camera.height, camera.width
    coco = getattr(out, "coco18", None)
    if not isinstance(coco, torch.Tensor) or coco.shape != (P, 18, 3):
        raise RenderError("out.coco18 must be a (P, 18, 3) tensor of camera-space COCO-18 points (a BodyOutput).")
    body = _project_visible(coco, _valid(out, "coco18", (18,)), fr, camera)
    # Neck only with both shoulders (DWPose derives it from them).
    no_neck = ~(body[:, 2, 2] > 0) | ~(body[:, 5, 2] > 0)
    body[no_neck, 1] = (np.nan, np.nan, 0.0)

    hands = None
    hv = getattr(out, "hands", None)
    if draw_hands and isinstance(hv, torch.Tensor) and hv.shape == (P, 2, 21, 3):
        hands = _project_visible(hv.reshape(P, 42, 3), _valid(out, "hands", (2, 21)).reshape(42), fr, camera)
        hands = hands.reshape(P, 2, 21, 3)
    face = None
    fv = getattr(out, "face", None)
    if draw_face and isinstance(fv, torch.Tensor) and fv.shape == (P, 68, 3):
        face = _project_visible(fv, _valid(out, "face", (68,)), fr, camera)

    people, drawn = [], []
    for p in range(P):
        parts = {
            "body": body[p],
            "hand_left": hands[p, 0] if hands is not None else None,
            "hand_right": hands[p, 1] if hands is not None else None,
            "face": face68_to_face70(face[p], body[p]) if face is not None else None,
        }
        if not any(a is not None and bool((a[:, 2] > 0).any()) for a in parts.values()):
            continue
        people.append(PersonKeypoints(index=p, **parts))
        drawn.append(p)
    # Draw far people first so the nearer skeletons end up on top.
    depth = verts[..., 2].mean(dim=1).tolist()
    order = sorted(range(len(drawn)), key=lambda k: (-depth[drawn[k]], drawn[k]))
    dicts = []
    for k in order:
        pk = people[k]
        dicts.append({"body": pk.body, "hand_left": pk.hand_left, "hand_right": pk.hand_right, "face": pk.face})
    canvas = draw_pose(W, H, dicts)
    pose = torch.from_numpy(canvas).to(torch.float32).div_(255.0)
    frame = FrameKeypoints(people=people, canvas=(W, H), image_size=(W, H))
    return pose, to_pose_keypoint([frame])

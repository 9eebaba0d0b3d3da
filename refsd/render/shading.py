"""Shading pass: ``rgb``, ``depth``, ``normal`` and ``parts`` of the render passes, in one sweep.

:func:`_shade` computes these four maps of :class:`~refsd.render.passes.RenderPasses` from the
rasterizer's fragments in one pass over the covered pixels (one gather of the per-vertex
colour and normal per corner), in chunks of :data:`PIXEL_CHUNK`. It also holds the inputs of
the shading: :class:`Lighting`, the per-vertex colours (:data:`DEFAULT_VERTEX_COLOR`, checked by
:func:`_vertex_colors`) and the normalbae colour encoding (:func:`encode_normals`). Conventions
(section numbers refer to ``CONTROLNET.md``):

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
``parts``  body-part segmentation: each pixel's part (the visible face's vertex with the largest
           barycentric weight, as :func:`~refsd.render.attributes.interpolate_nearest`) coloured with
           :func:`refsd.people.materials.part_palette`; background black. ``part_labels`` holds the
           indices into :data:`refsd.body.base.PART_NAMES` (-1 background).
========== ======================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..fit.camera import Camera, RenderError
from .fragments import Fragments

__all__ = [
    "Lighting",
    "DEFAULT_LIGHTING",
    "DEFAULT_VERTEX_COLOR",
    "PIXEL_CHUNK",
    "encode_normals",
]

#: Colour (sRGB, 0..1) of every vertex when ``vertex_colors`` is None: a light clay grey.
DEFAULT_VERTEX_COLOR = (0.72, 0.72, 0.72)
#: Covered pixels shaded per chunk (bounds the per-pixel temporaries on huge images).
PIXEL_CHUNK = 1 << 19
_NORMAL_BACKGROUNDS = ("flat", "black")


# ---------------------------------------------------------------------------
# Lighting
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


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def encode_normals(n: torch.Tensor) -> torch.Tensor:
    """Unit normals in OpenCV camera axes ``(..., 3)`` -> normalbae colours ``(1 - n) / 2`` (CONTROLNET.md §3)."""
    return (1.0 - n) * 0.5


def _part_palette(device: torch.device) -> torch.Tensor:
    """``(len(PART_NAMES) + 1, 3)`` float colours 0..1; the last row (index -1) is the black background."""
    from ..people import part_palette

    return part_palette().to(device=device, dtype=torch.float32) / 255.0


# ---------------------------------------------------------------------------
# Vertex colours (input checking)
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


# ---------------------------------------------------------------------------
# Per-pixel shading
# ---------------------------------------------------------------------------
def _normal_bg(normal_background: str) -> tuple[float, float, float]:
    return (0.5, 0.5, 1.0) if normal_background == "flat" else (0.0, 0.0, 0.0)


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

"""Preview of fitted bodies drawn over the photo (for checking a fit by eye)."""

from __future__ import annotations

import colorsys

import torch

from .attributes import interpolate, vertex_normals
from .raster import rasterize
from .scene import fit_camera, fit_output

__all__ = ["fit_vertices", "fit_camera", "render_fit_overlay", "person_colors"]


def person_colors(n: int) -> torch.Tensor:
    """``(n, 3)`` distinct saturated colours (golden-angle hues)."""
    return torch.tensor([colorsys.hsv_to_rgb((0.1 + i * 0.618034) % 1.0, 0.65, 1.0) for i in range(n)])


def fit_vertices(model, fit) -> torch.Tensor:
    """Camera-space vertices ``(P, V, 3)`` of every person in a :class:`~refsd.fit.BodyFit`."""
    if not fit.people:
        return torch.zeros(0, model.num_vertices, 3, device=model.device, dtype=model.dtype)
    return fit_output(model, fit).vertices


def render_fit_overlay(image: torch.Tensor, model, fit, opacity: float = 0.65) -> torch.Tensor:
    """Blend the fitted meshes (shaded, one colour per person) over ``image`` ``(H, W, 3)`` in 0..1."""
    cam = fit_camera(fit)
    H, W = image.shape[:2]
    if (H, W) != (cam.height, cam.width):
        cam = cam.resized(W, H)
    verts = fit_vertices(model, fit).float()
    out = image.detach().float().cpu().clone()
    if verts.shape[0] == 0:
        return out
    faces = model.faces
    frags = rasterize(verts, faces, cam)
    normals = vertex_normals(verts, faces)
    n = interpolate(frags, normals)  # (H, W, 3) camera-space normals
    view = torch.nn.functional.normalize(
        torch.cat([(cam.pixel_centers(device=n.device) - torch.tensor([cam.cx, cam.cy], device=n.device))
                   / torch.tensor([cam.fx, cam.fy], device=n.device), torch.ones(H, W, 1, device=n.device)], -1),
        dim=-1,
    )
    shade = (0.35 + 0.65 * (n * view).sum(-1).abs()).clamp(0, 1)
    cols = person_colors(verts.shape[0]).to(n.device)
    mask = frags.mask
    pid = frags.person_idx.clamp_min(0)
    color = cols[pid] * shade[..., None]
    a = (mask.float() * opacity)[..., None].cpu()
    return out * (1 - a) + color.cpu() * a

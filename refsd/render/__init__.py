"""Rendering of fitted body meshes, pixel-aligned with the photo (no OpenGL).

* :mod:`.camera`: :class:`Camera` (OpenCV pinhole intrinsics + output size) and the pixel convention.
* :mod:`.raster`: :func:`rasterize` (vectorized PyTorch triangle rasterizer, optional pytorch3d
  backend), :class:`Fragments`, :func:`interpolate`, :func:`interpolate_nearest`, :func:`vertex_normals`.
"""

from .camera import MAX_IMAGE_SIDE, Camera, RenderError
from .passes import Lighting, RenderPasses, render_passes, render_passes_from_output
from .raster import (
    DEFAULT_MAX_PAIRS,
    Fragments,
    interpolate,
    interpolate_nearest,
    pytorch3d_available,
    rasterize,
    vertex_normals,
)

__all__ = [
    "Camera",
    "RenderError",
    "MAX_IMAGE_SIDE",
    "DEFAULT_MAX_PAIRS",
    "Fragments",
    "rasterize",
    "interpolate",
    "interpolate_nearest",
    "vertex_normals",
    "pytorch3d_available",
    "RenderPasses",
    "Lighting",
    "render_passes",
    "render_passes_from_output",
]

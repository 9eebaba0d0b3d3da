"""Rendering of fitted body meshes, pixel-aligned with the photo (no OpenGL).

* :mod:`refsd.fit.camera`: :class:`Camera` (OpenCV pinhole intrinsics + output size) and the pixel convention.
* :mod:`.raster`: :func:`rasterize` (vectorized PyTorch triangle rasterizer, optional pytorch3d
  backend), built on :mod:`.fragments` (:class:`Fragments`, input packing) and :mod:`.raster_faces`
  (per-face setup, finalization); :mod:`.attributes`: :func:`interpolate`,
  :func:`interpolate_nearest`, :func:`vertex_normals`.
* :mod:`.passes`: :func:`render_passes` (:class:`RenderPasses`), from :mod:`.shading`
  (rgb, depth, normal, parts; :class:`Lighting`), :mod:`.pose` and :mod:`.edges`.
"""

from ..fit.camera import MAX_IMAGE_SIDE, Camera, RenderError
from .attributes import interpolate, interpolate_nearest, vertex_normals
from .fragments import Fragments
from .passes import RenderPasses, render_passes, render_passes_from_output
from .raster import DEFAULT_MAX_PAIRS, pytorch3d_available, rasterize
from .shading import Lighting

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

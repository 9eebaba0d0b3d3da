"""Pinhole camera in OpenCV conventions, pixel-aligned with the photo.

Conventions (used by the whole :mod:`refsd.render` package):

* **Camera coordinates** are OpenCV's: x right, y down, z forward (into the scene), in metres.
  A point is in front of the camera when ``z > 0``.
* **Pixel coordinates** are continuous ``(u, v)`` with ``u = fx * x / z + cx`` and
  ``v = fy * y / z + cy``. Pixel ``(row i, col j)`` covers ``u in [j, j + 1)``, ``v in [i, i + 1)``,
  so its centre is at ``(j + 0.5, i + 0.5)`` and the whole image spans ``[0, W] x [0, H]``.
  The principal point of a centred camera is therefore ``(W / 2, H / 2)``. Resizing an image by
  a factor ``s`` scales ``fx, fy, cx, cy`` by ``s`` exactly (:meth:`Camera.resized`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RefSDError

__all__ = ["Camera", "RenderError", "MAX_IMAGE_SIDE"]

# Largest image side the renderer accepts (memory for the output buffers grows with H * W).
MAX_IMAGE_SIDE = 16384


class RenderError(RefSDError):
    """Bad input to the renderer: camera, meshes, vertex attributes or options."""


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise RenderError(f"Camera {name} is {value!r}; it must be a number (pixels).")
    try:
        out = float(value)
    except (TypeError, ValueError) as e:
        raise RenderError(f"Camera {name} is {value!r}; it must be a number (pixels).") from e
    if not math.isfinite(out):
        raise RenderError(f"Camera {name} is {out}; it must be finite. Check the intrinsics you pass.")
    return out


def _as_size(name: str, value: Any) -> int:
    """A positive whole number of pixels (Python/numpy/torch integers, or floats like 512.0)."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        v = int(value)
        exact = float(value) == v
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact:
        raise RenderError(f"Camera {name} is {value!r}; it must be a whole number of pixels.")
    if not 1 <= v <= MAX_IMAGE_SIDE:
        raise RenderError(
            f"Camera {name} is {v} pixels; it must be between 1 and {MAX_IMAGE_SIDE}. "
            "Use the input image's size (downscale images larger than that first)."
        )
    return v


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics (pixels) plus the output image size.

    ``fx, fy`` are focal lengths in pixels (both > 0; equal for square pixels), ``cx, cy`` the
    principal point in the continuous pixel coordinates described in the module docstring,
    ``width, height`` the image size the renderer outputs (exactly the photo's size).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, _as_number(name, getattr(self, name)))
        for name in ("width", "height"):
            object.__setattr__(self, name, _as_size(name, getattr(self, name)))
        if not (self.fx > 0 and self.fy > 0):
            raise RenderError(
                f"Camera focal lengths fx={self.fx}, fy={self.fy} must be > 0 pixels. "
                "Use Camera.from_fov(width, height, fov_deg) if you only know the field of view."
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float, *, axis: str = "max") -> Camera:
        """Centred camera with square pixels and the field of view ``fov_deg`` (degrees).

        ``axis`` says which image side the field of view spans: ``"max"`` (default: the larger
        side, so portrait and landscape shots of the same lens get the same focal length),
        ``"min"``, ``"vertical"`` (height) or ``"horizontal"`` (width).
        ``f = side / 2 / tan(fov / 2)``, ``cx = width / 2``, ``cy = height / 2``.
        """
        w = _as_size("width", width)
        h = _as_size("height", height)
        fov = _as_number("fov_deg", fov_deg)
        if not 0.0 < fov < 180.0:
            raise RenderError(f"fov_deg is {fov}; it must be between 0 and 180 degrees (e.g. 50).")
        sides = {"max": max(w, h), "min": min(w, h), "vertical": h, "horizontal": w}
        if axis not in sides:
            raise RenderError(f"axis is {axis!r}; use one of {', '.join(repr(k) for k in sides)}.")
        f = sides[axis] / 2.0 / math.tan(math.radians(fov) / 2.0)
        return cls(fx=f, fy=f, cx=w / 2.0, cy=h / 2.0, width=w, height=h)

    @classmethod
    def from_matrix(cls, K: Any, width: int, height: int) -> Camera:
        """From a 3x3 intrinsics matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` (skew must be 0).

        The matrix must use this module's pixel convention (centre of pixel j at ``j + 0.5``).
        If yours puts pixel centres at integers (``cx = (W - 1) / 2`` for a centred camera),
        add 0.5 to ``cx`` and ``cy`` first.
        """
        k = torch.as_tensor(K, dtype=torch.float64).cpu()
        if k.shape != (3, 3):
            raise RenderError(f"intrinsics matrix has shape {tuple(k.shape)}; it must be 3x3.")
        if abs(float(k[0, 1])) > 1e-9 * max(1.0, abs(float(k[0, 0]))):
            raise RenderError("intrinsics matrix has a non-zero skew K[0, 1]; skewed pixels are not supported.")
        return cls(
            fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]), width=width, height=height
        )

    # ------------------------------------------------------------------ helpers
    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``, the shape of every per-pixel output."""
        return (self.height, self.width)

    def matrix(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The 3x3 intrinsics matrix ``K``."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=dtype, device=device
        )

    def resized(self, width: int, height: int) -> Camera:
        """The same camera for the image resampled to ``width x height`` (intrinsics scale exactly)."""
        w = _as_size("width", width)
        h = _as_size("height", height)
        sx, sy = w / self.width, h / self.height
        return Camera(fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=w, height=h)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Project camera-space points ``(..., 3)`` to pixel coordinates ``(..., 2)`` (u, v).

        No clipping: points with ``z <= 0`` give meaningless (possibly infinite) pixels; the
        rasterizer drops faces that reach behind its near plane by itself.
        """
        pts = torch.as_tensor(points)
        if pts.shape[-1:] != (3,):
            raise RenderError(f"points have shape {tuple(pts.shape)}; expected (..., 3) camera-space x, y, z.")
        if not pts.is_floating_point():
            pts = pts.to(torch.float32)
        x, y, z = pts.unbind(-1)
        return torch.stack((self.fx * x / z + self.cx, self.fy * y / z + self.cy), dim=-1)

    def unproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Camera-space points ``(..., 3)`` at pixel coordinates ``uv (..., 2)`` and depth ``z (...)``."""
        uv = torch.as_tensor(uv)
        if uv.shape[-1:] != (2,):
            raise RenderError(f"uv has shape {tuple(uv.shape)}; expected (..., 2) pixel coordinates.")
        z = torch.as_tensor(depth, dtype=uv.dtype if uv.is_floating_point() else torch.float32, device=uv.device)
        x = (uv[..., 0] - self.cx) / self.fx * z
        y = (uv[..., 1] - self.cy) / self.fy * z
        return torch.stack((x, y, z.expand_as(x)), dim=-1)

    def pixel_centers(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        """``(H, W, 2)`` tensor of pixel-centre coordinates ``(j + 0.5, i + 0.5)``."""
        v = torch.arange(self.height, device=device, dtype=dtype) + 0.5
        u = torch.arange(self.width, device=device, dtype=dtype) + 0.5
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        return torch.stack((uu, vv), dim=-1)

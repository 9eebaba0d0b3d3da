"""Rasterizer data: the per-pixel :class:`Fragments` result and the packing of the input meshes.

:class:`Fragments` is what :func:`refsd.render.raster.rasterize` returns (visible face, person,
perspective-correct barycentrics, depth, coverage per pixel). The packing half checks the
``verts`` / ``faces`` arguments (one ``(P, V, 3)`` tensor with shared faces, or per-person lists)
and concatenates all people into one mesh (:class:`_Packed`) with per-person vertex and face
offsets, so every later step is a flat gather over all faces of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..fit.camera import RenderError

__all__ = ["Fragments"]

# Pixels finalized (float64 recompute) / interpolated per chunk, to bound memory on huge images.
_PIXEL_CHUNK = 1 << 20


def _take(x: torch.Tensor, idx: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``x[idx]`` along ``dim`` (``index_select`` is much faster than advanced indexing on CPU)."""
    return x.index_select(dim, idx)


# ---------------------------------------------------------------------------
# Fragments
# ---------------------------------------------------------------------------
@dataclass
class Fragments:
    """Per-pixel rasterization result for one image of size ``(H, W)``.

    * ``face_idx (H, W) int64``: visible face, an index into that person's ``faces``
      (the shared ``faces`` tensor for shared topology); ``-1`` on background.
    * ``person_idx (H, W) int64``: which person (index into the ``verts`` batch / list); ``-1`` on background.
    * ``bary (H, W, 3)``: perspective-correct barycentric weights of the face's 3 vertices
      (non-negative, sum to 1); ``0`` on background.
    * ``zbuf (H, W)``: camera-space z (metres) of the visible surface at the pixel centre;
      ``+inf`` on background (so ``torch.minimum`` composites and ``zbuf < d`` tests work).
    * ``mask (H, W) bool``: pixel covered by any person.

    ``faces_t`` (``(3, F_total)``: all people's faces, transposed, as indices into the
    concatenation of all people's vertices; ``faces_packed`` is the ``(F_total, 3)`` view),
    ``face_offsets`` and ``vert_offsets`` (``P + 1`` cumulative counts) let
    :func:`~refsd.render.attributes.interpolate` map pixels back to vertices.
    """

    face_idx: torch.Tensor
    person_idx: torch.Tensor
    bary: torch.Tensor
    zbuf: torch.Tensor
    mask: torch.Tensor
    faces_t: torch.Tensor
    face_offsets: torch.Tensor
    vert_offsets: torch.Tensor

    @property
    def faces_packed(self) -> torch.Tensor:
        """``(F_total, 3)`` faces of all people, indexing the concatenated vertices."""
        return self.faces_t.t()

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def num_people(self) -> int:
        return int(self.vert_offsets.numel()) - 1

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def packed_face_idx(self) -> torch.Tensor:
        """``(H, W)`` index into ``faces_packed`` (``-1`` on background)."""
        out = torch.full_like(self.face_idx, -1)
        m = self.mask
        out[m] = self.face_offsets[self.person_idx[m]] + self.face_idx[m]
        return out


# ---------------------------------------------------------------------------
# Input packing
# ---------------------------------------------------------------------------
@dataclass
class _Packed:
    verts: torch.Tensor  # (Nv, 3) floating
    faces_t: torch.Tensor  # (3, Nf) int64, into verts (corner k of every face in row k)
    vert_offsets: torch.Tensor  # (P + 1,) int64
    face_offsets: torch.Tensor  # (P + 1,) int64


def _check_verts(v: Any, where: str) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise RenderError(f"{where} is {type(v).__name__}; pass a torch tensor of camera-space vertices (metres).")
    if not v.is_floating_point():
        raise RenderError(f"{where} has dtype {v.dtype}; vertices must be floating point (float32).")
    return v


def _check_faces(f: Any, where: str, num_verts: int, device: torch.device) -> torch.Tensor:
    if not isinstance(f, torch.Tensor):
        raise RenderError(f"{where} is {type(f).__name__}; pass a LongTensor (F, 3) of vertex indices.")
    if f.is_floating_point() or f.is_complex() or f.dtype == torch.bool:
        raise RenderError(f"{where} has dtype {f.dtype}; faces must be an integer tensor (F, 3) of vertex indices.")
    if f.dim() != 2 or f.shape[1] != 3:
        raise RenderError(f"{where} has shape {tuple(f.shape)}; faces must be (F, 3) triangles (triangulate quads).")
    f = f.to(device=device, dtype=torch.int64)
    if f.numel():
        lo, hi = int(f.min()), int(f.max())
        if lo < 0 or hi >= num_verts:
            raise RenderError(
                f"{where} references vertex {lo if lo < 0 else hi} but the mesh has {num_verts} vertices "
                f"(valid indices 0..{num_verts - 1}). Faces and vertices must come from the same body model."
            )
    return f


def _pack(verts: Any, faces: Any) -> _Packed:
    if isinstance(verts, torch.Tensor):
        v = _check_verts(verts, "verts")
        if v.dim() == 2:
            v = v.unsqueeze(0)
        if v.dim() != 3 or v.shape[-1] != 3:
            raise RenderError(
                f"verts has shape {tuple(verts.shape)}; expected (P, V, 3) camera-space vertices for P people "
                "(or a list of per-person (V_i, 3) tensors)."
            )
        if not isinstance(faces, torch.Tensor):
            raise RenderError(
                "verts is a (P, V, 3) tensor, so faces must be one (F, 3) LongTensor shared by all people; "
                "for per-person topologies pass lists for both verts and faces."
            )
        P, V, _ = v.shape
        f = _check_faces(faces, "faces", V, v.device)
        F = f.shape[0]
        dev = v.device
        offs = torch.arange(P, device=dev, dtype=torch.int64) * V
        faces_t = (f.t().contiguous().unsqueeze(1) + offs.view(1, P, 1)).reshape(3, P * F)
        ar = torch.arange(P + 1, device=dev, dtype=torch.int64)
        return _Packed(v.reshape(P * V, 3), faces_t, ar * V, ar * F)

    if not isinstance(verts, (list, tuple)):
        raise RenderError(
            f"verts is {type(verts).__name__}; pass a (P, V, 3) tensor or a list of per-person (V_i, 3) tensors."
        )
    vs = [_check_verts(x, f"verts[{i}]") for i, x in enumerate(verts)]
    for i, x in enumerate(vs):
        if x.dim() != 2 or x.shape[1] != 3:
            raise RenderError(f"verts[{i}] has shape {tuple(x.shape)}; each person's vertices must be (V_i, 3).")
    if isinstance(faces, torch.Tensor):
        fs_in: Sequence[Any] = [faces] * len(vs)
    elif isinstance(faces, (list, tuple)):
        fs_in = faces
        if len(fs_in) != len(vs):
            raise RenderError(
                f"got {len(vs)} vertex tensors but {len(fs_in)} face tensors; pass one faces tensor per person "
                "(or a single shared one)."
            )
    else:
        raise RenderError(f"faces is {type(faces).__name__}; pass a LongTensor (F, 3) or a list of them.")
    if not vs:
        dev = faces.device if isinstance(faces, torch.Tensor) else torch.device("cpu")
        dt = torch.float32
        z = torch.zeros(1, dtype=torch.int64, device=dev)
        return _Packed(torch.zeros(0, 3, dtype=dt, device=dev), torch.zeros(3, 0, dtype=torch.int64, device=dev), z, z)
    dev = vs[0].device
    dt = vs[0].dtype
    for i, x in enumerate(vs):
        if x.device != dev:
            raise RenderError(f"verts[{i}] is on {x.device} but verts[0] is on {dev}; put all people on one device.")
    fs = [_check_faces(f, f"faces[{i}]", vs[i].shape[0], dev) for i, f in enumerate(fs_in)]
    nv = [int(x.shape[0]) for x in vs]
    nf = [int(f.shape[0]) for f in fs]
    vo = [0]
    fo = [0]
    for a, b in zip(nv, nf, strict=True):
        vo.append(vo[-1] + a)
        fo.append(fo[-1] + b)
    faces_t = torch.cat([f.t() + vo[i] for i, f in enumerate(fs)], 1)
    verts_packed = torch.cat([x.to(dt) for x in vs], 0)
    as_t = lambda xs: torch.tensor(xs, dtype=torch.int64, device=dev)  # noqa: E731
    return _Packed(verts_packed, faces_t, as_t(vo), as_t(fo))


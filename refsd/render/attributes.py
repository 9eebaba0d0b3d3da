"""Per-vertex attributes to images through the rasterizer's :class:`~refsd.render.fragments.Fragments`.

:func:`interpolate` blends per-vertex attributes (colours, normals) with the perspective-correct
barycentrics, :func:`interpolate_nearest` takes the value of the visible face's vertex with the
largest weight (labels), and :func:`vertex_normals` computes area-weighted unit vertex normals
of the camera-space meshes.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..fit.camera import RenderError
from .fragments import _PIXEL_CHUNK, Fragments, _check_faces, _check_verts, _take

__all__ = ["interpolate", "interpolate_nearest", "vertex_normals"]


def _packed_attrs(fr: Fragments, attrs: Any, name: str) -> torch.Tensor:
    """Per-vertex attributes for all people as one ``(Nv, ...)`` tensor on the fragments' device."""
    P = fr.num_people
    counts = (fr.vert_offsets[1:] - fr.vert_offsets[:-1]).tolist()
    if isinstance(attrs, (list, tuple)):
        if len(attrs) != P:
            raise RenderError(f"{name} has {len(attrs)} entries but {P} people were rasterized; pass one per person.")
        xs = [torch.as_tensor(a) for a in attrs]
        for i, (a, n) in enumerate(zip(xs, counts, strict=True)):
            if a.dim() == 0 or a.shape[0] != n:
                raise RenderError(f"{name}[{i}] has shape {tuple(a.shape)}; person {i} has {n} vertices.")
        if not xs:
            return torch.zeros(0, device=fr.device)
        return torch.cat([a.to(fr.device) for a in xs], 0)
    if not isinstance(attrs, torch.Tensor):
        raise RenderError(f"{name} is {type(attrs).__name__}; pass a tensor (P, V, C) or a list of (V_i, C).")
    a = attrs.to(fr.device)
    if P > 0 and all(n == counts[0] for n in counts):
        V = counts[0]
        if a.dim() >= 2 and a.shape[0] == P and a.shape[1] == V:
            return a.reshape(P * V, *a.shape[2:])
        if a.dim() >= 1 and a.shape[0] == V:  # the same attributes for every person
            return a.unsqueeze(0).expand(P, *a.shape).reshape(P * V, *a.shape[1:])
    elif P == 0:
        return a.reshape(0, *a.shape[2:]) if a.dim() >= 2 else a.reshape(0)
    raise RenderError(
        f"{name} has shape {tuple(attrs.shape)}; expected (P, V, ...) = ({P}, {counts[0] if counts else 0}, ...) "
        "matching the rasterized vertices, (V, ...) shared by all people, or a list of per-person tensors."
    )


def interpolate(fragments: Fragments, vertex_attrs: Any, *, background: float = 0.0) -> torch.Tensor:
    """Interpolate per-vertex attributes with the perspective-correct barycentrics.

    ``vertex_attrs``: ``(P, V, C)`` (or ``(P, V)``, any trailing shape), ``(V, C)`` shared by all
    people, or a list of per-person ``(V_i, C)``. Returns ``(H, W, C)`` (trailing shape as given)
    with ``background`` where nothing is visible. Integer attributes are interpolated as float32;
    use :func:`interpolate_nearest` for labels.
    """
    a = _packed_attrs(fragments, vertex_attrs, "vertex_attrs")
    if not a.is_floating_point():
        a = a.to(torch.float32)
    cdt = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
    H, W = fragments.height, fragments.width
    trail = tuple(a.shape[1:])
    a2 = a.reshape(a.shape[0], math.prod(trail))
    C = a2.shape[1]
    out = torch.full((H * W, C), float(background), dtype=a.dtype, device=fragments.device)
    win, gf = _visible(fragments)
    if win.numel():
        bary = fragments.bary.reshape(-1, 3)
        ft = fragments.faces_t
        chunk = max(1, _PIXEL_CHUNK // max(1, C // 4))
        for s in range(0, win.numel(), chunk):
            w, g = win[s : s + chunk], gf[s : s + chunk]
            b = _take(bary, w).to(cdt)
            acc = b[:, 0:1] * _take(a2, _take(ft[0], g)).to(cdt)
            acc.addcmul_(b[:, 1:2], _take(a2, _take(ft[1], g)).to(cdt))
            acc.addcmul_(b[:, 2:3], _take(a2, _take(ft[2], g)).to(cdt))
            out.index_copy_(0, w, acc.to(a.dtype))
    return out.view(H, W, *trail)


def _visible(fr: Fragments) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the covered pixels and their index into the packed faces."""
    win = fr.mask.reshape(-1).nonzero().squeeze(1)
    person = _take(fr.person_idx.reshape(-1), win)
    return win, _take(fr.face_offsets, person) + _take(fr.face_idx.reshape(-1), win)


def interpolate_nearest(fragments: Fragments, vertex_labels: Any, *, background: int | float = -1) -> torch.Tensor:
    """Per-pixel value of the visible face's vertex with the largest barycentric weight.

    For integer labels (body parts, person-local vertex ids). ``vertex_labels``: ``(P, V)``
    (or ``(P, V, ...)``), ``(V,)`` shared by all people, or a list of per-person ``(V_i,)``.
    Returns ``(H, W)`` (plus trailing shape) in the labels' dtype, ``background`` on background.
    Ties go to the lower corner (vertex 0 before 1 before 2).
    """
    a = _packed_attrs(fragments, vertex_labels, "vertex_labels")
    H, W = fragments.height, fragments.width
    trail = tuple(a.shape[1:])
    out = torch.full((H * W, *trail), background, dtype=a.dtype, device=fragments.device)
    win, gf = _visible(fragments)
    if win.numel():
        corner = _take(fragments.bary.reshape(-1, 3), win).argmax(dim=1)
        vid = torch.where(
            corner == 0,
            _take(fragments.faces_t[0], gf),
            torch.where(corner == 1, _take(fragments.faces_t[1], gf), _take(fragments.faces_t[2], gf)),
        )
        out.index_copy_(0, win, _take(a, vid))
    return out.view(H, W, *trail)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals ``(P, V, 3)`` (or ``(V, 3)`` for ``(V, 3)`` input).

    Each vertex sums the cross products ``(v1 - v0) x (v2 - v0)`` of its faces (length = twice
    the area), so for meshes wound counter-clockwise seen from outside the normals point outward
    (in camera coordinates a normal facing the camera has ``z < 0``). Vertices without faces get a
    zero normal. Bit-deterministic on CPU; on CUDA the sums use atomics (last-bit differences
    between runs) unless ``torch.use_deterministic_algorithms(True)`` is on.
    """
    v = _check_verts(verts, "verts")
    squeeze = v.dim() == 2
    if squeeze:
        v = v.unsqueeze(0)
    if v.dim() != 3 or v.shape[-1] != 3:
        raise RenderError(f"verts has shape {tuple(verts.shape)}; expected (P, V, 3) or (V, 3).")
    P, V, _ = v.shape
    dev = v.device
    f = _check_faces(faces, "faces", V, dev)
    cdt = torch.float32 if v.dtype in (torch.float16, torch.bfloat16) else v.dtype
    vc = v.to(cdt).reshape(P * V, 3)
    # Packed corner indices (3, P * F) so every gather / scatter is a fast row operation on (P * V, 3).
    ft = (f.t().contiguous().unsqueeze(1) + (torch.arange(P, device=dev) * V).view(1, P, 1)).reshape(3, P * f.shape[0])
    p0, p1, p2 = (vc.index_select(0, ft[k]) for k in range(3))
    fn = torch.linalg.cross(p1.sub_(p0), p2.sub_(p0), dim=-1)  # length = 2 * area
    out = torch.zeros(P * V, 3, dtype=cdt, device=dev)
    for k in range(3):
        out.index_add_(0, ft[k], fn)
    out = out.view(P, V, 3)
    n = out / out.norm(dim=-1, keepdim=True).clamp(min=eps)
    n = n.to(v.dtype)
    return n.squeeze(0) if squeeze else n

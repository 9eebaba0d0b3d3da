"""Torch rasterizer core: per-face setup (culling, pixel boxes, plane equations) and finalization.

:func:`_setup_faces` is step 1 of the torch backend (:mod:`refsd.render.raster`): project the
vertices, drop faces with a vertex at ``z <= near``, zero screen area or an empty pixel box,
and compute the screen-space barycentric and inverse-depth plane equations of the kept faces
(float32 coefficients at each box origin for the pair evaluation, float64 ones for the final
recompute). :func:`_finalize` is step 4, shared by both backends: from the winning packed face
of each covered pixel it builds :class:`~refsd.render.fragments.Fragments`, recomputing
barycentrics and depth in float64 and making them perspective-correct (torch backend), or
taking them as given (pytorch3d backend).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fit.camera import Camera
from .fragments import _PIXEL_CHUNK, Fragments, _Packed, _take

__all__: list[str] = []

# Faces whose projected area (twice the signed area, in pixels^2) is below this are dropped.
_MIN_AREA2 = 1e-10


@dataclass
class _FaceSetup:
    kept: torch.Tensor  # (K,) packed face index of each kept face
    c0: torch.Tensor  # (K,) int64 first candidate column
    c1: torch.Tensor  # last candidate column (inclusive)
    r0: torch.Tensor
    r1: torch.Tensor
    # (9, K) float32 rows: b1, db1/dj, db1/di, b2, db2/dj, db2/di, 1/z, d(1/z)/dj, d(1/z)/di
    # (screen-space barycentrics of vertices 1, 2 and inverse depth) at the box origin pixel centre.
    coef: torch.Tensor
    # (9, K) float64 rows: u0, v0, A1, B1, A2, B2, 1/z0, 1/z1, 1/z2 (b_k = A_k (u - u0) + B_k (v - v0)).
    fin: torch.Tensor



def _setup_faces(pk: _Packed, cam: Camera, near: float, cull_backfaces: bool) -> _FaceSetup:
    """Per-face pixel boxes and plane equations; culls unusable faces.

    Culling and boxes use float32 projections (cheap: most of the faces of a body are tiny and many
    cover no pixel centre at all); the plane equations of the kept faces are computed in float64.
    """
    H, W = cam.height, cam.width
    i32, f64 = torch.int32, torch.float64
    fidx = pk.faces_t  # (3, F): corner k of every face

    def project(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        v = pk.verts.to(dtype)
        z = v[:, 2]
        front = z > near
        iz = torch.where(front, z, torch.ones_like(z)).reciprocal_()
        return v[:, 0] * iz * cam.fx + cam.cx, v[:, 1] * iz * cam.fy + cam.cy, iz, front

    u, w, _, front = project(torch.float32)
    u0, u1, u2 = (_take(u, fidx[k]) for k in range(3))
    w0, w1, w2 = (_take(w, fidx[k]) for k in range(3))
    keep = _take(front, fidx[0]) & _take(front, fidx[1]) & _take(front, fidx[2])
    area2 = (u1 - u0) * (w2 - w0) - (w1 - w0) * (u2 - u0)  # < 0: front-facing for CCW-outward meshes
    keep &= area2 != 0
    if cull_backfaces:
        keep &= area2 < 0

    # Columns j (rows i) whose centre j + 0.5 lies in [min, max]; clamp first so huge values cannot overflow.
    def box(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.minimum(torch.minimum(a, b), c).sub_(0.5).clamp_(-1.0, size)
        hi = torch.maximum(torch.maximum(a, b), c).sub_(0.5).clamp_(-1.0, size)
        return lo.ceil_().to(i32).clamp_(min=0), hi.floor_().to(i32).clamp_(max=size - 1)

    c0, c1 = box(u0, u1, u2, W)
    r0, r1 = box(w0, w1, w2, H)
    keep &= (c0 <= c1) & (r0 <= r1)
    kept = keep.nonzero().squeeze(1)
    del u0, u1, u2, w0, w1, w2, area2, keep

    # Plane equations of the kept faces, float64, written straight into the rows of ``fin``.
    u, w, iz, _ = project(f64)
    K = kept.numel()
    fk = [_take(fidx[k], kept) for k in range(3)] if K < fidx.shape[1] else fidx
    if K < fidx.shape[1]:
        c0, c1, r0, r1 = (_take(x, kept) for x in (c0, c1, r0, r1))
    fin = torch.empty(9, K, dtype=f64, device=u.device)  # u0, v0, A1, B1, A2, B2, 1/z0, 1/z1, 1/z2
    u0 = torch.index_select(u, 0, fk[0], out=fin[0])
    w0 = torch.index_select(w, 0, fk[0], out=fin[1])
    iz0, iz1, iz2 = (torch.index_select(iz, 0, fk[k], out=fin[6 + k]) for k in range(3))
    e1u, e2u = _take(u, fk[1]).sub_(u0), _take(u, fk[2]).sub_(u0)
    e1w, e2w = _take(w, fk[1]).sub_(w0), _take(w, fk[2]).sub_(w0)
    area2 = e1u * e2w - e1w * e2u
    ok = area2.abs() > _MIN_AREA2  # float32 may call a degenerate sliver non-degenerate
    if not bool(ok.all()):
        sub = ok.nonzero().squeeze(1)
        K = sub.numel()
        fin = fin.index_select(1, sub)
        u0, w0, iz0, iz1, iz2 = fin[0], fin[1], fin[6], fin[7], fin[8]
        kept, e1u, e1w, e2u, e2w, area2, c0, c1, r0, r1 = (
            _take(x, sub) for x in (kept, e1u, e1w, e2u, e2w, area2, c0, c1, r0, r1)
        )
    inv = area2.reciprocal_()
    # Screen barycentrics of vertices 1 and 2 at offset (du, dv) from vertex 0: b = A * du + B * dv.
    A1 = torch.mul(e2w, inv, out=fin[2])
    B1 = torch.mul(e2u, inv, out=fin[3]).neg_()
    A2 = torch.mul(e1w, inv, out=fin[4]).neg_()
    B2 = torch.mul(e1u, inv, out=fin[5])
    d1, d2 = iz1 - iz0, iz2 - iz0
    Gu, Gv = A1 * d1 + A2 * d2, B1 * d1 + B2 * d2  # inverse depth is affine in screen space
    du = c0.to(f64).add_(0.5).sub_(u0)  # box origin pixel centre minus vertex 0
    dv = r0.to(f64).add_(0.5).sub_(w0)
    coef = torch.empty(9, K, dtype=torch.float32, device=u.device)
    for k, x in enumerate((A1 * du + B1 * dv, A1, B1, A2 * du + B2 * dv, A2, B2, iz0 + Gu * du + Gv * dv, Gu, Gv)):
        coef[k].copy_(x)
    return _FaceSetup(kept, c0, c1, r0, r1, coef, fin)



def _finalize(
    pk: _Packed,
    cam: Camera,
    win: torch.Tensor,
    gface: torch.Tensor,
    fin: torch.Tensor | None,
    kwin: torch.Tensor | None,
    out_dtype: torch.dtype,
    bary_in: torch.Tensor | None = None,
    z_in: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> Fragments:
    """Build Fragments from the winning packed face of each covered flat pixel index ``win``.

    Either recomputes barycentrics/depth from the float64 face setup ``fin`` (torch backend) or
    takes them as given (``bary_in``, ``z_in``; pytorch3d backend).
    """
    H, W = cam.height, cam.width
    dev = win.device
    face_idx = torch.full((H * W,), -1, dtype=torch.int64, device=dev)
    person_idx = torch.full((H * W,), -1, dtype=torch.int64, device=dev)
    bary = torch.zeros(H * W, 3, dtype=out_dtype, device=dev)
    zbuf = torch.full((H * W,), float("inf"), dtype=out_dtype, device=dev)
    if win.numel():
        person = torch.searchsorted(pk.face_offsets[1:], gface, right=True)
        face_idx.index_copy_(0, win, gface - _take(pk.face_offsets, person))
        person_idx.index_copy_(0, win, person)
        for s in range(0, win.numel(), _PIXEL_CHUNK):
            w = win[s : s + _PIXEL_CHUNK]
            if bary_in is not None and z_in is not None:
                bary.index_copy_(0, w, bary_in[s : s + _PIXEL_CHUNK].to(out_dtype))
                zbuf.index_copy_(0, w, z_in[s : s + _PIXEL_CHUNK].to(out_dtype))
                continue
            assert fin is not None and kwin is not None  # noqa: S101 - internal invariant
            kw = kwin[s : s + _PIXEL_CHUNK]
            u0, v0, A1, B1, A2, B2, q0, q1, q2 = (_take(row, kw) for row in fin)
            # In-place arithmetic on the fresh gathers: fewer large temporaries on big images.
            wf = w.to(torch.float64)
            i = (wf + 0.5).mul_(1.0 / W).floor_()  # exact: the fraction is >= 0.5 / W away from integers
            du = wf.sub_(i * W).add_(0.5).sub_(u0)
            dv = i.add_(0.5).sub_(v0)
            b1 = A1.mul_(du).add_(B1.mul_(dv))
            b2 = A2.mul_(du).add_(B2.mul_(dv))
            b0 = torch.sub(1.0, b1).sub_(b2).clamp_(min=0.0)
            b1.clamp_(min=0.0)
            b2.clamp_(min=0.0)
            q0.mul_(b0)  # (screen barycentric) / z
            q1.mul_(b1)
            q2.mul_(b2)
            rq = (q0 + q1).add_(q2).reciprocal_()
            bary.index_copy_(0, w, torch.stack((q0, q1, q2), 1).mul_(rq.unsqueeze(1)).to(out_dtype))
            # sum(b) is 1 up to the inside tolerance; scaling by it keeps z on the plane after clamping.
            zbuf.index_copy_(0, w, b0.add_(b1).add_(b2).mul_(rq).to(out_dtype))
    if mask is None:
        mask = face_idx >= 0
    return Fragments(
        face_idx=face_idx.view(H, W),
        person_idx=person_idx.view(H, W),
        bary=bary.view(H, W, 3),
        zbuf=zbuf.view(H, W),
        mask=mask.view(H, W),
        faces_t=pk.faces_t,
        face_offsets=pk.face_offsets,
        vert_offsets=pk.vert_offsets,
    )


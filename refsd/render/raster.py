"""Triangle rasterizer: multi-person, pixel-aligned, vectorized PyTorch (CPU and CUDA).

:func:`rasterize` turns camera-space meshes of all people in one image into
per-pixel :class:`Fragments` (visible face, person, perspective-correct barycentrics,
depth, coverage), from which :func:`interpolate` / :func:`interpolate_nearest` build any
per-vertex attribute image (colours, normals, part labels).

Conventions (see :mod:`refsd.render.camera`): OpenCV camera coordinates (x right, y down,
z forward, metres); a pixel ``(i, j)`` is sampled at its centre ``(u, v) = (j + 0.5, i + 0.5)``.
A pixel is covered by a triangle when its centre lies inside the projected triangle
(closed test with a 1e-6 barycentric tolerance, so shared edges never leave cracks).
Triangles are two-sided unless ``cull_backfaces=True``. Visibility is the smallest
camera-space z; exact depth ties go to the lower packed face index (person order), so
results are deterministic (bit-identical for the same input on the same device).

Torch backend algorithm (no Python loop over faces or pixels):

1. project vertices; per face compute the integer bounding box of the pixel centres it can
   cover (float32) and drop faces with a vertex at ``z <= near``, zero screen area, or an
   empty box (most faces of a body at 512 px); for the kept faces compute the screen-space
   barycentric and inverse-depth plane equations (float64);
2. enumerate every candidate (face, pixel) pair of the boxes with ``repeat_interleave``
   (work ~ total box area), evaluate barycentrics at the pixel centres (float32),
   keep the inside pairs;
3. resolve visibility with one ``scatter_reduce(amin)`` of a packed int64 key
   ``(float32 bits of -1/z) << 32 | face``;
4. for the visible face of each covered pixel recompute barycentrics and depth in float64
   and make them perspective-correct.

When the candidate pairs would exceed ``max_pairs`` (huge images, many people), step 2-3 run
over bands of image rows sized so that each band stays within the budget; the result is
bit-identical to the unbanded one.
"""

from __future__ import annotations

import bisect
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .camera import Camera, RenderError

__all__ = [
    "Fragments",
    "RenderError",
    "DEFAULT_MAX_PAIRS",
    "rasterize",
    "interpolate",
    "interpolate_nearest",
    "vertex_normals",
    "pytorch3d_available",
]

# Candidate (face, pixel) pairs processed at once (one band of rows). The torch backend peaks at
# roughly 25-40 bytes per pair, so the default bounds that working set to ~0.1-0.2 GB on top of
# the output buffers (~40 bytes per pixel, ~0.7 GB at 4096 x 4096). Measured on CPU, bands of
# this size are also faster than one huge pass (cache locality).
DEFAULT_MAX_PAIRS = 1 << 22

# Closed inside test tolerance on (screen-space) barycentrics, float32.
_BARY_EPS = 1e-6
# Faces whose projected area (twice the signed area, in pixels^2) is below this are dropped.
_MIN_AREA2 = 1e-10
_KEY_BG = torch.iinfo(torch.int64).max
_INF_BITS = 0x7F800000  # float32 bit pattern of +inf
_LOW32 = 0xFFFFFFFF
# Pixels finalized (float64 recompute) / interpolated per chunk, to bound memory on huge images.
_PIXEL_CHUNK = 1 << 20
# Hard cap on pairs per band (int32 index arithmetic).
_MAX_BAND_PAIRS = 1 << 30

_BACKENDS = ("torch", "pytorch3d", "auto")


def pytorch3d_available() -> bool:
    """Whether ``pytorch3d`` is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("pytorch3d") is not None
    except (ImportError, ValueError):
        return False


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
    ``face_offsets`` and ``vert_offsets`` (``P + 1`` cumulative counts) let :func:`interpolate`
    map pixels back to vertices.
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


# ---------------------------------------------------------------------------
# Torch backend
# ---------------------------------------------------------------------------
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


def _take(x: torch.Tensor, idx: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``x[idx]`` along ``dim`` (``index_select`` is much faster than advanced indexing on CPU)."""
    return x.index_select(dim, idx)


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


def _bands(fs: _FaceSetup, H: int, max_pairs: int) -> list[tuple[int, int]]:
    """Split rows [0, H) into bands whose candidate pairs each stay within ``max_pairs``.

    A band is at least one row, so a single row with more pairs than the budget is processed whole.
    """
    bw = (fs.c1 - fs.c0 + 1).to(torch.int64)
    hist = torch.zeros(H + 1, dtype=torch.int64, device=bw.device)
    hist.index_add_(0, fs.r0.to(torch.int64), bw)
    hist.index_add_(0, fs.r1.to(torch.int64) + 1, -bw)
    cum = torch.cumsum(torch.cumsum(hist[:H], 0), 0).tolist()  # pairs in rows [0, i]
    bands = []
    start, base = 0, 0
    while start < H:
        end = max(bisect.bisect_right(cum, base + max_pairs, lo=start), start + 1)
        if cum[end - 1] > base:  # skip bands without any pair
            bands.append((start, end))
        base = cum[end - 1]
        start = end
    return bands


def _scatter_band(fs: _FaceSetup, W: int, rs: int, re: int, whole: bool, keybuf: torch.Tensor) -> None:
    """Evaluate all candidate pairs of rows [rs, re) and min-reduce their keys into ``keybuf``.

    Index arithmetic is int32 (a band holds < 2**31 pairs and an image < 2**31 pixels).
    """
    dev = keybuf.device
    i32 = torch.int32
    if whole:
        sel = None
        c0, r0, c1, r1 = fs.c0, fs.r0, fs.c1, fs.r1
        r0b, r1b = r0, r1
    else:
        sel = ((fs.r0 < re) & (fs.r1 >= rs)).nonzero().squeeze(1)
        if sel.numel() == 0:
            return
        c0, r0, c1, r1 = _take(fs.c0, sel), _take(fs.r0, sel), _take(fs.c1, sel), _take(fs.r1, sel)
        r0b, r1b = r0.clamp(min=rs), r1.clamp(max=re - 1)
    bw = (c1 - c0 + 1).to(i32)
    cnt = bw * (r1b - r0b + 1).to(i32)
    ends = torch.cumsum(cnt, 0, dtype=i32)
    n = int(ends[-1])
    if n == 0:
        return
    # Local index of a pair inside its face's *unclipped* box, so values do not depend on banding.
    start = ends - cnt - (r0b - r0).to(i32) * bw
    fidx = torch.repeat_interleave(cnt, output_size=n)  # int32, grouped by face
    local = torch.arange(n, device=dev, dtype=i32) - _take(start, fidx)
    bwp = _take(bw, fidx)
    di = torch.div(local, bwp, rounding_mode="trunc")
    dj = local - di * bwp
    del local, bwp
    coef = fs.coef if sel is None else fs.coef.index_select(1, sel)
    djf = dj.to(torch.float32)
    dif = di.to(torch.float32)

    def plane(k: int, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = coef[k : k + 3]
        return torch.addcmul(torch.addcmul(_take(c[0], idx), _take(c[1], idx), x), _take(c[2], idx), y)

    b1 = plane(0, fidx, djf, dif)
    b2 = plane(3, fidx, djf, dif)
    inside = (b1 >= -_BARY_EPS) & (b2 >= -_BARY_EPS) & ((b1 + b2) <= 1.0 + _BARY_EPS)
    del b1, b2
    idx = inside.nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    fi = _take(fidx, idx)
    invz = plane(6, fi, _take(djf, idx), _take(dif, idx)).clamp_(min=1e-30)
    base = r0.to(i32) * W + c0.to(i32)
    pix = (_take(base, fi) + _take(di, idx) * W + _take(dj, idx)).to(torch.int64)
    kidx = fi.to(torch.int64) if sel is None else _take(sel, fi)
    key = ((_INF_BITS - invz.view(i32).to(torch.int64)) << 32) | kidx
    keybuf.scatter_reduce_(0, pix, key, reduce="amin")


def _rasterize_torch(
    pk: _Packed, cam: Camera, near: float, cull_backfaces: bool, max_pairs: int, out_dtype: torch.dtype
) -> Fragments:
    H, W = cam.height, cam.width
    dev = pk.verts.device
    max_pairs = min(max_pairs, _MAX_BAND_PAIRS)
    keybuf = torch.full((H * W,), _KEY_BG, dtype=torch.int64, device=dev)
    fs = _setup_faces(pk, cam, near, cull_backfaces)
    if fs.kept.numel():
        total = int(((fs.c1 - fs.c0 + 1) * (fs.r1 - fs.r0 + 1)).sum(dtype=torch.int64))
        if total <= max_pairs:
            _scatter_band(fs, W, 0, H, True, keybuf)
        else:
            for rs, re in _bands(fs, H, max_pairs):
                _scatter_band(fs, W, rs, re, False, keybuf)
    mask = keybuf != _KEY_BG
    win = mask.nonzero().squeeze(1)
    kwin = _take(keybuf, win) & _LOW32
    del keybuf
    return _finalize(pk, cam, win, _take(fs.kept, kwin), fs.fin, kwin, out_dtype, mask=mask)


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


# ---------------------------------------------------------------------------
# pytorch3d backend
# ---------------------------------------------------------------------------
def _pytorch3d_ndc(u: torch.Tensor, v: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Our pixel coordinates -> pytorch3d screen NDC (+X left, +Y up, shorter side in [-1, 1]).

    pytorch3d samples output pixel (row r, col c) at ``x = PixToNonSquareNdc(W - 1 - c, W, H)``,
    ``y = PixToNonSquareNdc(H - 1 - r, H, W)``, i.e. ``x = (W - 2 (c + 0.5)) / min(H, W)``; with
    ``u = c + 0.5`` that is ``(W - 2u) / min(H, W)``.
    """
    s = float(min(H, W))
    return (W - 2.0 * u) / s, (H - 2.0 * v) / s


def _rasterize_pytorch3d(
    pk: _Packed, cam: Camera, near: float, cull_backfaces: bool, out_dtype: torch.dtype
) -> Fragments:
    """Same contract as the torch backend, rasterized by ``pytorch3d.renderer.mesh.rasterize_meshes``.

    Vertices are projected with our intrinsics and mapped to pytorch3d's screen NDC
    (+X left, +Y up, the shorter image side spanning [-1, 1]; pixel centre ``u`` maps to
    ``x_ndc = (W - 2u) / min(H, W)``), keeping camera z as the depth used for visibility and
    perspective correction -- what ``MeshRasterizer`` does for ``PerspectiveCameras(in_ndc=False)``.
    Culling (near plane, zero area, back faces) is done here with the torch backend's rules so
    that both backends agree.
    """
    from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
    from pytorch3d.structures import Meshes

    H, W = cam.height, cam.width
    dev = pk.verts.device
    v = pk.verts.to(torch.float64)
    z = v[:, 2]
    front = z > near
    zs = torch.where(front, z, torch.ones_like(z))
    u = cam.fx * v[:, 0] / zs + cam.cx
    w = cam.fy * v[:, 1] / zs + cam.cy
    f = pk.faces_t.t()
    keep = front[f].all(dim=1)
    fu, fw = u[f], w[f]
    area2 = (fu[:, 1] - fu[:, 0]) * (fw[:, 2] - fw[:, 0]) - (fw[:, 1] - fw[:, 0]) * (fu[:, 2] - fu[:, 0])
    keep &= area2.abs() > _MIN_AREA2
    if cull_backfaces:
        keep &= area2 < 0
    kept = keep.nonzero().squeeze(1)
    win = torch.zeros(0, dtype=torch.int64, device=dev)
    if kept.numel() == 0:
        return _finalize(pk, cam, win, win, None, None, out_dtype)
    xn, yn = _pytorch3d_ndc(u, w, H, W)
    ndc = torch.stack((xn, yn, zs), dim=1).to(torch.float32)
    meshes = Meshes(verts=[ndc], faces=[f[kept]])
    nk = int(kept.numel())
    with torch.no_grad():
        pix_to_face, zbuf, bary, _ = rasterize_meshes(
            meshes,
            image_size=(H, W),
            blur_radius=0.0,
            faces_per_pixel=1,
            bin_size=None,
            # Generous per-bin capacity: coarse rasterization must never overflow (it would drop faces).
            max_faces_per_bin=max(10000, nk),
            perspective_correct=True,
            cull_backfaces=False,
        )
    p2f = pix_to_face[0, :, :, 0].reshape(-1)
    win = (p2f >= 0).nonzero().squeeze(1)
    gface = kept[p2f[win]]
    b = bary[0, :, :, 0, :].reshape(-1, 3)[win].clamp(min=0.0)
    b = b / b.sum(1, keepdim=True).clamp(min=1e-12)
    zz = zbuf[0, :, :, 0].reshape(-1)[win]
    return _finalize(pk, cam, win, gface, None, None, out_dtype, bary_in=b, z_in=zz)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def rasterize(
    verts: torch.Tensor | Sequence[torch.Tensor],
    faces: torch.Tensor | Sequence[torch.Tensor],
    camera: Camera,
    *,
    backend: str = "torch",
    cull_backfaces: bool = False,
    max_pairs: int | None = None,
    near: float = 1e-3,
) -> Fragments:
    """Rasterize all people of one image together, with occlusion between them.

    Args:
        verts: camera-space vertices (OpenCV: x right, y down, z forward, metres), either a
            ``(P, V, 3)`` tensor with ``faces`` shared by all ``P`` people (``(V, 3)`` means one
            person), or a list of per-person ``(V_i, 3)`` tensors. ``P = 0`` gives an empty image.
        faces: ``(F, 3)`` integer vertex indices shared by all people, or (with list ``verts``) a
            list of per-person ``(F_i, 3)`` tensors. Moved to the vertices' device.
        camera: intrinsics and output size; outputs are exactly ``(camera.height, camera.width)``.
        backend: ``"torch"`` (default, vectorized PyTorch, any device), ``"pytorch3d"`` (needs
            pytorch3d installed) or ``"auto"`` (pytorch3d for CUDA inputs when importable, else torch).
        cull_backfaces: drop faces whose geometric normal ``(v1 - v0) x (v2 - v0)`` points away
            from the camera (i.e. faces are wound counter-clockwise seen from outside, as in
            SMPL/Anny). Default: two-sided.
        max_pairs: budget of candidate (face, pixel) pairs evaluated at once (torch backend);
            above it the image is processed in bands of rows. Default :data:`DEFAULT_MAX_PAIRS`.
        near: faces with a vertex at ``z <= near`` (metres) are dropped (no clipping).

    Returns:
        :class:`Fragments` (``zbuf`` is ``+inf`` and ``face_idx``/``person_idx`` are ``-1`` on background).
    """
    if not isinstance(camera, Camera):
        raise RenderError(
            f"camera is {type(camera).__name__}; pass a refsd.render.Camera (e.g. Camera.from_fov(W, H, 50))."
        )
    if backend not in _BACKENDS:
        raise RenderError(f"backend is {backend!r}; use one of {', '.join(repr(b) for b in _BACKENDS)}.")
    if max_pairs is None:
        max_pairs = DEFAULT_MAX_PAIRS
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise RenderError(f"max_pairs is {max_pairs!r}; it must be a positive integer (or None for the default).")
    try:
        near = float(near)
    except (TypeError, ValueError) as e:
        raise RenderError(f"near is {near!r}; it must be a positive distance in metres (e.g. 1e-3).") from e
    if not near > 0:
        raise RenderError(f"near is {near}; it must be a positive distance in metres (e.g. 1e-3).")

    pk = _pack(verts, faces)
    if pk.faces_t.shape[1] >= 2**31:
        raise RenderError(f"{pk.faces_t.shape[1]} faces in one image; at most 2**31 - 1 are supported.")
    if pk.verts.numel() and not bool(torch.isfinite(pk.verts).all()):
        raise RenderError("verts contain NaN or infinite values; check the body fit (it may have diverged).")
    dt = pk.verts.dtype
    out_dtype = dt if dt in (torch.float32, torch.float64) else torch.float32

    if backend == "auto":
        # pytorch3d's CPU rasterizer is the naive O(pixels x faces) one: use it on CUDA only.
        backend = "pytorch3d" if pytorch3d_available() and pk.verts.is_cuda else "torch"
    if backend == "pytorch3d":
        if not pytorch3d_available():
            raise RenderError(
                "backend='pytorch3d' but pytorch3d is not installed; install it "
                "(https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md) or use backend='torch'."
            )
        return _rasterize_pytorch3d(pk, camera, near, cull_backfaces, out_dtype)
    with torch.no_grad():
        return _rasterize_torch(pk, camera, near, cull_backfaces, max_pairs, out_dtype)


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

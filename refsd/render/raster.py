"""Triangle rasterizer: multi-person, pixel-aligned, vectorized PyTorch (CPU and CUDA).

:func:`rasterize` turns camera-space meshes of all people in one image into
per-pixel :class:`~refsd.render.fragments.Fragments` (visible face, person, perspective-correct
barycentrics, depth, coverage), from which :func:`~refsd.render.attributes.interpolate` /
:func:`~refsd.render.attributes.interpolate_nearest` build any per-vertex attribute image
(colours, normals, part labels).

Conventions (see :mod:`refsd.fit.camera`): OpenCV camera coordinates (x right, y down,
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
   barycentric and inverse-depth plane equations (float64) (:mod:`refsd.render.raster_faces`);
2. enumerate every candidate (face, pixel) pair of the boxes with ``repeat_interleave``
   (work ~ total box area), evaluate barycentrics at the pixel centres (float32),
   keep the inside pairs;
3. resolve visibility with one ``scatter_reduce(amin)`` of a packed int64 key
   ``(float32 bits of -1/z) << 32 | face``;
4. for the visible face of each covered pixel recompute barycentrics and depth in float64
   and make them perspective-correct (:func:`~refsd.render.raster_faces._finalize`).

When the candidate pairs would exceed ``max_pairs`` (huge images, many people), step 2-3 run
over bands of image rows sized so that each band stays within the budget; the result is
bit-identical to the unbanded one.

This module holds :func:`rasterize` (argument checks, backend choice), the torch backend's
pair evaluation and banded driver (steps 2-3) and the pytorch3d backend.
"""

from __future__ import annotations

import bisect
import importlib.util
from collections.abc import Sequence

import torch

from ..fit.camera import Camera, RenderError
from .fragments import Fragments, _pack, _Packed, _take
from .raster_faces import _MIN_AREA2, _FaceSetup, _finalize, _setup_faces

__all__ = [
    "DEFAULT_MAX_PAIRS",
    "rasterize",
    "pytorch3d_available",
]

# Candidate (face, pixel) pairs processed at once (one band of rows). The torch backend peaks at
# roughly 25-40 bytes per pair, so the default bounds that working set to ~0.1-0.2 GB on top of
# the output buffers (~40 bytes per pixel, ~0.7 GB at 4096 x 4096). Measured on CPU, bands of
# this size are also faster than one huge pass (cache locality).
DEFAULT_MAX_PAIRS = 1 << 22

# Closed inside test tolerance on (screen-space) barycentrics, float32.
_BARY_EPS = 1e-6
_KEY_BG = torch.iinfo(torch.int64).max
_INF_BITS = 0x7F800000  # float32 bit pattern of +inf
_LOW32 = 0xFFFFFFFF
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
# Torch backend: candidate pairs, banded over rows
# ---------------------------------------------------------------------------
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


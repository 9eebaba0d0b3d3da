"""Tests for the rasterizer core (refsd.render): coverage, depth, barycentrics, occlusion, tiling."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from refsd.errors import RefSDError
from refsd.render import (
    Camera,
    Fragments,
    RenderError,
    interpolate,
    interpolate_nearest,
    primitives,
    pytorch3d_available,
    rasterize,
    vertex_normals,
)
from refsd.render import raster as raster_mod

# ---------------------------------------------------------------------------
# Mesh helpers (outward winding: (v1 - v0) x (v2 - v0) points away from the centre)
# ---------------------------------------------------------------------------


def _orient_outward(v: torch.Tensor, f: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    tri = v[f].double()
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    inward = (n * (tri.mean(1) - center.double())).sum(-1) < 0
    f = f.clone()
    f[inward] = f[inward][:, [0, 2, 1]]
    return f


def uv_sphere(n_lat: int, n_lon: int, radius: float = 1.0, center=(0.0, 0.0, 0.0)):
    v, f = primitives.uv_sphere(n_lat, n_lon, radius, center)
    return v.float(), f


def box(center, size):
    c = torch.tensor(center, dtype=torch.float64)
    s = torch.tensor(size, dtype=torch.float64) / 2
    corners = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64)
    v = corners * s + c
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = torch.tensor([t for a, b, cc, d in quads for t in ((a, b, cc), (a, cc, d))])
    return v.float(), _orient_outward(v, f, c)


def quad(x0, x1, y0, y1, z):
    """Axis-aligned rectangle at depth z (two triangles sharing the diagonal)."""
    v = torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=torch.float32)
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


def _point_in_triangle(px, py, tri):
    """Strictly-inside mask (float64) and distance of the pixel centres to the triangle's boundary."""
    (x0, y0), (x1, y1), (x2, y2) = tri
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    e, d = [], []
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y2)), ((x2, y2), (x0, y0)), ((x0, y0), (x1, y1))):
        ex, ey = bx - ax, by - ay
        e.append((ex * (py - ay) - ey * (px - ax)) * np.sign(area))
        t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d.append(np.hypot(px - ax - t * ex, py - ay - t * ey))
    return (np.stack(e) > 0).all(0), np.stack(d).min(0)


def _centres(cam: Camera):
    py, px = np.meshgrid(np.arange(cam.height) + 0.5, np.arange(cam.width) + 0.5, indexing="ij")
    return px, py


def _project_np(cam: Camera, v: torch.Tensor) -> np.ndarray:
    v = v.double().numpy()
    return np.stack((cam.fx * v[:, 0] / v[:, 2] + cam.cx, cam.fy * v[:, 1] / v[:, 2] + cam.cy), 1)


def _assert_same(a: Fragments, b: Fragments):
    for name in ("face_idx", "person_idx", "bary", "zbuf", "mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.equal(x, y), f"{name} differs"


def _check_consistent(fr: Fragments, cam: Camera):
    H, W = cam.height, cam.width
    assert fr.face_idx.shape == (H, W) and fr.face_idx.dtype == torch.int64
    assert fr.person_idx.shape == (H, W) and fr.person_idx.dtype == torch.int64
    assert fr.bary.shape == (H, W, 3)
    assert fr.zbuf.shape == (H, W)
    assert fr.mask.shape == (H, W) and fr.mask.dtype == torch.bool
    m = fr.mask
    assert torch.equal(m, fr.face_idx >= 0) and torch.equal(m, fr.person_idx >= 0)
    assert torch.isinf(fr.zbuf[~m]).all() and (fr.zbuf[~m] > 0).all()
    assert (fr.bary[~m] == 0).all()
    if m.any():
        b = fr.bary[m]
        assert torch.isfinite(b).all() and (b >= 0).all()
        assert torch.allclose(b.sum(-1), torch.ones_like(b[:, 0]), atol=1e-5)
        assert torch.isfinite(fr.zbuf[m]).all() and (fr.zbuf[m] > 0).all()


# A tilted triangle at 2-3 m whose projection keeps every pixel centre > 0.02 px from its edges.
CAM_SMALL = Camera(fx=40.0, fy=40.0, cx=16.5, cy=8.5, width=33, height=17)
TRI = torch.tensor([[-0.6131, -0.2711, 2.0], [0.5373, -0.1937, 2.5], [-0.0717, 0.3173, 3.0]], dtype=torch.float32)


# ---------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------
def test_camera_from_fov_and_project():
    cam = Camera.from_fov(640, 480, 60.0)  # fov along the larger side by default
    assert cam.fx == pytest.approx(320 / math.tan(math.radians(30)))
    assert cam.fy == cam.fx and (cam.cx, cam.cy) == (320.0, 240.0) and cam.size == (480, 640)
    camv = Camera.from_fov(640, 480, 60.0, axis="vertical")
    assert camv.fy == pytest.approx(240 / math.tan(math.radians(30)))
    uv = cam.project(torch.tensor([[0.0, 0.0, 2.0], [1.0, -0.5, 2.0]]))
    assert torch.allclose(uv[0], torch.tensor([320.0, 240.0]))
    assert torch.allclose(uv[1], torch.tensor([320 + cam.fx / 2, 240 - cam.fy / 4]))
    back = cam.unproject(uv, torch.tensor([2.0, 2.0]))
    assert torch.allclose(back, torch.tensor([[0.0, 0.0, 2.0], [1.0, -0.5, 2.0]]), atol=1e-5)
    half = cam.resized(320, 240)
    assert (half.fx, half.cx, half.cy, half.width, half.height) == (cam.fx / 2, 160.0, 120.0, 320, 240)
    K = cam.matrix(dtype=torch.float64)
    assert Camera.from_matrix(K, 640, 480) == cam
    assert Camera.from_fov(np.int64(64), torch.tensor(48), 50.0).size == (48, 64)  # numpy / torch integers


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(fx=0.0, fy=1.0, cx=0, cy=0, width=4, height=4),
        dict(fx=1.0, fy=1.0, cx=float("nan"), cy=0, width=4, height=4),
        dict(fx=1.0, fy=1.0, cx=0, cy=0, width=0, height=4),
        dict(fx=1.0, fy=1.0, cx=0, cy=0, width=4.5, height=4),
        dict(fx=1.0, fy=1.0, cx=0, cy=0, width="64", height=4),
        dict(fx=1.0, fy=1.0, cx=0, cy=0, width=4, height=20000),
    ],
)
def test_camera_rejects_bad_values(kwargs):
    with pytest.raises(RenderError):
        Camera(**kwargs)
    with pytest.raises(ValueError):  # RenderError is a RefSDError is a ValueError
        Camera(**kwargs)


def test_camera_bad_fov():
    with pytest.raises(RenderError, match="fov_deg"):
        Camera.from_fov(64, 64, 180.0)
    with pytest.raises(RenderError, match="axis"):
        Camera.from_fov(64, 64, 50.0, axis="diagonal")


# ---------------------------------------------------------------------------
# Single triangle / quad: exact coverage, depth and barycentrics
# ---------------------------------------------------------------------------
def test_triangle_coverage_depth_and_barycentrics():
    cam = CAM_SMALL
    fr = rasterize(TRI[None], torch.tensor([[0, 1, 2]]), cam)
    _check_consistent(fr, cam)
    px, py = _centres(cam)
    inside, dist = _point_in_triangle(px, py, _project_np(cam, TRI))
    assert dist.min() > 0.02  # the test geometry keeps centres away from edges
    assert inside.sum() > 40
    assert np.array_equal(fr.mask.numpy(), inside)
    assert (fr.face_idx[fr.mask] == 0).all() and (fr.person_idx[fr.mask] == 0).all()

    # Depth: intersection of each pixel ray with the triangle's plane.
    t = TRI.double().numpy()
    n = np.cross(t[1] - t[0], t[2] - t[0])
    d = np.stack(((px - cam.cx) / cam.fx, (py - cam.cy) / cam.fy, np.ones_like(px)), -1)
    z_plane = (n @ t[0]) / (d @ n)
    zb = fr.zbuf.double().numpy()
    assert np.abs(zb[inside] - z_plane[inside]).max() < 1e-5

    # Perspective-correct barycentrics reproduce the 3D point, which projects onto the pixel centre.
    pts = fr.bary.double()[fr.mask] @ TRI.double()
    uv = cam.project(pts)
    assert torch.allclose(uv[:, 0], torch.from_numpy(px[inside]), atol=1e-4)
    assert torch.allclose(uv[:, 1], torch.from_numpy(py[inside]), atol=1e-4)
    assert torch.allclose(pts[:, 2], fr.zbuf.double()[fr.mask], atol=1e-6)


def test_triangle_vertex_order_and_winding_do_not_matter():
    cam = CAM_SMALL
    ref = rasterize(TRI[None], torch.tensor([[0, 1, 2]]), cam)
    flipped = rasterize(TRI[None], torch.tensor([[0, 2, 1]]), cam)
    rotated = rasterize(TRI[None], torch.tensor([[1, 2, 0]]), cam)
    for fr, perm in ((flipped, [0, 2, 1]), (rotated, [1, 2, 0])):
        assert torch.equal(fr.mask, ref.mask)
        assert torch.allclose(fr.zbuf[fr.mask], ref.zbuf[ref.mask], rtol=1e-6)
        # bary follow the face's corner order
        assert torch.allclose(fr.bary[fr.mask], ref.bary[ref.mask][:, perm], atol=1e-6)


def test_quad_has_no_cracks_and_exact_coverage():
    cam = Camera(fx=50.0, fy=50.0, cx=20.0, cy=15.0, width=40, height=30)
    v, f = quad(-0.3013, 0.2571, -0.1987, 0.2219, 2.0)
    fr = rasterize(v[None], f, cam)
    uv = _project_np(cam, v)
    px, py = _centres(cam)
    inside = (px > uv[:, 0].min()) & (px < uv[:, 0].max()) & (py > uv[:, 1].min()) & (py < uv[:, 1].max())
    assert np.array_equal(fr.mask.numpy(), inside)  # diagonal pixels are covered by exactly one triangle
    assert torch.allclose(fr.zbuf[fr.mask], torch.full_like(fr.zbuf[fr.mask], 2.0), atol=1e-6)


def test_pixel_centre_convention():
    """Pixel (i, j) is sampled at (j + 0.5, i + 0.5): a square covering u, v in [2, 5] hits columns/rows 2..4."""
    cam = Camera(fx=10.0, fy=10.0, cx=0.0, cy=0.0, width=8, height=8)
    v, f = quad(0.2 - 1e-4, 0.5 + 1e-4, 0.2 - 1e-4, 0.5 + 1e-4, 1.0)  # u, v in [~2, ~5]
    fr = rasterize(v[None], f, cam)
    expect = torch.zeros(8, 8, dtype=torch.bool)
    expect[2:5, 2:5] = True
    assert torch.equal(fr.mask, expect)


# ---------------------------------------------------------------------------
# Solids: analytic areas and nearest-surface depth
# ---------------------------------------------------------------------------
def test_sphere_area_and_depth():
    cam = Camera.from_fov(256, 256, 40.0)
    r, d = 0.5, 3.0
    v, f = uv_sphere(64, 128, r, (0.0, 0.0, d))
    fr = rasterize(v[None], f, cam)
    _check_consistent(fr, cam)
    rho = cam.fx * r / math.sqrt(d * d - r * r)  # silhouette radius in pixels (sphere on the optical axis)
    area = math.pi * rho * rho
    assert abs(fr.mask.sum().item() - area) / area < 0.02
    # Nearest ray-sphere intersection: z = t, t^2 |dir|^2 - 2 t d + d^2 - r^2 = 0 with dir = (x', y', 1).
    px, py = _centres(cam)
    a = ((px - cam.cx) / cam.fx) ** 2 + ((py - cam.cy) / cam.fy) ** 2 + 1
    disc = d * d - a * (d * d - r * r)
    m = fr.mask.numpy() & (disc > 0.02)  # stay off the silhouette, where tessellation dominates
    z_near = (d - np.sqrt(disc[m])) / a[m]
    z_far = (d + np.sqrt(disc[m])) / a[m]
    zb = fr.zbuf.double().numpy()[m]
    assert np.abs(zb - z_near).max() < 2e-3 * r  # tessellation error only
    assert (zb < (z_near + z_far) / 2).all()  # front surface, never the back one


def test_cube_on_axis_exact_front_face():
    cam = Camera(fx=100.0, fy=100.0, cx=32.3, cy=30.7, width=64, height=61)
    d = 4.0
    v, f = box((0.0, 0.0, d), (1.0, 1.0, 1.0))
    fr = rasterize(v[None], f, cam)
    side = cam.fx * 1.0 / (d - 0.5)  # front face projects to a square of this side
    px, py = _centres(cam)
    inside = (np.abs(px - cam.cx) < side / 2) & (np.abs(py - cam.cy) < side / 2)
    assert np.array_equal(fr.mask.numpy(), inside)
    assert torch.allclose(fr.zbuf[fr.mask], torch.full_like(fr.zbuf[fr.mask], d - 0.5), atol=1e-5)


def _convex_hull_area(pts: np.ndarray) -> float:
    pts = sorted(map(tuple, pts))

    def half(points):
        h = []
        for p in points:
            while len(h) >= 2 and (
                (h[-1][0] - h[-2][0]) * (p[1] - h[-2][1]) - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0]) <= 0
            ):
                h.pop()
            h.append(p)
        return h

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    x, y = np.array(hull).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_cube_off_axis_area_and_nearest_depth():
    cam = Camera.from_fov(200, 160, 50.0)
    c = np.array([0.7, -0.4, 3.5])
    v, f = box(tuple(c), (1.0, 0.8, 1.2))
    fr = rasterize(v[None], f, cam)
    _check_consistent(fr, cam)
    area = _convex_hull_area(_project_np(cam, v))
    assert abs(fr.mask.sum().item() - area) / area < 0.03
    # Slab-method ray/box entry depth for every covered pixel.
    px, py = _centres(cam)
    m = fr.mask.numpy()
    dirs = np.stack(((px[m] - cam.cx) / cam.fx, (py[m] - cam.cy) / cam.fy, np.ones(m.sum())), 1)
    lo = c - np.array([0.5, 0.4, 0.6])
    hi = c + np.array([0.5, 0.4, 0.6])
    t1, t2 = lo / dirs, hi / dirs
    t_near = np.minimum(t1, t2).max(1)
    t_far = np.maximum(t1, t2).min(1)
    hit = t_near <= t_far + 1e-9
    assert hit.mean() > 0.99  # covered pixels are on the box (up to edge-tolerance pixels)
    zb = fr.zbuf.double().numpy()[m]
    assert np.abs(zb[hit] - t_near[hit]).max() < 1e-4  # z = t because dir.z == 1


# ---------------------------------------------------------------------------
# Occlusion between people and within one mesh
# ---------------------------------------------------------------------------
def _two_people():
    a_v, f = uv_sphere(24, 48, 0.5, (-0.25, 0.0, 3.0))
    b_v, _ = uv_sphere(24, 48, 0.5, (0.25, 0.1, 3.6))
    return torch.stack((a_v, b_v)), f


def test_two_people_nearer_wins_and_order_invariance():
    cam = Camera.from_fov(96, 80, 50.0)
    verts, f = _two_people()
    fr = rasterize(verts, f, cam)
    _check_consistent(fr, cam)
    alone = [rasterize(verts[i : i + 1], f, cam) for i in range(2)]
    overlap = alone[0].mask & alone[1].mask
    assert overlap.sum() > 100
    assert (fr.person_idx[overlap] == 0).all()  # person 0 is nearer everywhere they overlap
    assert torch.equal(fr.mask, alone[0].mask | alone[1].mask)
    only1 = alone[1].mask & ~alone[0].mask
    assert (fr.person_idx[only1] == 1).all()
    assert torch.equal(fr.zbuf, torch.minimum(alone[0].zbuf, alone[1].zbuf))
    # Swapping the people swaps the labels and changes nothing else, bit for bit.
    sw = rasterize(verts.flip(0), f, cam)
    assert torch.equal(sw.face_idx, fr.face_idx)
    assert torch.equal(sw.bary, fr.bary) and torch.equal(sw.zbuf, fr.zbuf) and torch.equal(sw.mask, fr.mask)
    assert torch.equal(torch.where(sw.mask, 1 - sw.person_idx, -1), fr.person_idx)


def test_list_input_matches_batched_and_supports_different_topologies():
    cam = Camera.from_fov(96, 80, 50.0)
    verts, f = _two_people()
    batched = rasterize(verts, f, cam)
    listed = rasterize([verts[0], verts[1]], [f, f], cam)
    _assert_same(batched, listed)
    shared = rasterize([verts[0], verts[1]], f, cam)
    _assert_same(batched, shared)
    # Different topologies: a box in front of a sphere.
    bv, bf = box((0.0, 0.0, 2.5), (0.3, 0.3, 0.3))
    fr = rasterize([verts[1], bv], [f, bf], cam)
    box_alone = rasterize(bv, bf, cam)
    assert torch.equal(fr.mask & (fr.person_idx == 1), box_alone.mask)
    assert (fr.face_idx[fr.person_idx == 1] < bf.shape[0]).all()
    assert fr.num_people == 2


def test_hand_in_front_of_torso():
    cam = Camera.from_fov(64, 64, 50.0)
    torso_v, torso_f = quad(-0.4, 0.4, -0.5, 0.5, 3.0)
    hand_v, hand_f = quad(-0.1, 0.15, -0.05, 0.2, 2.6)
    # As two people ...
    fr = rasterize([torso_v, hand_v], [torso_f, hand_f], cam)
    hand_alone = rasterize(hand_v, hand_f, cam)
    assert hand_alone.mask.sum() > 20
    assert (fr.person_idx[hand_alone.mask] == 1).all()
    assert torch.allclose(fr.zbuf[hand_alone.mask], torch.tensor(2.6), atol=1e-6)
    rest = fr.mask & ~hand_alone.mask
    assert (fr.person_idx[rest] == 0).all() and torch.allclose(fr.zbuf[rest], torch.tensor(3.0), atol=1e-6)
    # ... and as one mesh (self-occlusion), listed torso first or hand first.
    for order in ((torso_v, torso_f, hand_v, hand_f), (hand_v, hand_f, torso_v, torso_f)):
        v = torch.cat((order[0], order[2]))
        f = torch.cat((order[1], order[3] + order[0].shape[0]))
        one = rasterize(v[None], f, cam)
        assert torch.equal(one.mask, fr.mask)
        assert torch.equal(one.zbuf, fr.zbuf)
        assert (one.person_idx[one.mask] == 0).all()


def test_interpenetrating_planes_split_by_depth():
    """Two tilted planes crossing each other: each pixel shows whichever is nearer there."""
    cam = Camera.from_fov(64, 48, 50.0)
    a = torch.tensor([[-1.0, -1.0, 2.0], [1.0, -1.0, 4.0], [1.0, 1.0, 4.0], [-1.0, 1.0, 2.0]])
    b = torch.tensor([[-1.0, -1.0, 4.0], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 4.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fr = rasterize(torch.stack((a, b)), f, cam)
    px, _ = _centres(cam)
    left = torch.from_numpy(px < cam.cx - 1.0) & fr.mask
    right = torch.from_numpy(px > cam.cx + 1.0) & fr.mask
    assert (fr.person_idx[left] == 0).all() and (fr.person_idx[right] == 1).all()


# ---------------------------------------------------------------------------
# Sizes, tiling, determinism, degenerate input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(17, 33), (16, 16), (1, 1), (33, 17)])
def test_output_size_is_exact(hw):
    H, W = hw
    cam = Camera.from_fov(W, H, 60.0)
    verts, f = _two_people()
    fr = rasterize(verts, f, cam)
    _check_consistent(fr, cam)
    assert fr.height == H and fr.width == W
    assert fr.mask.any()


def _four_spheres(n_lat=12, n_lon=24):
    centres = [(-0.6, -0.2, 3.0), (0.1, 0.0, 3.3), (0.5, 0.3, 2.8), (-0.2, 0.5, 3.9)]
    vs = []
    f = None
    for c in centres:
        v, f = uv_sphere(n_lat, n_lon, 0.55, c)
        vs.append(v)
    return torch.stack(vs), f


def test_tiled_equals_untiled(monkeypatch):
    cam = Camera.from_fov(160, 128, 50.0)
    verts, f = _four_spheres()
    ref = rasterize(verts, f, cam)
    calls = []
    orig = raster_mod._scatter_band

    def spy(fs, W, rs, re, whole, keybuf):
        calls.append((rs, re, whole))
        return orig(fs, W, rs, re, whole, keybuf)

    monkeypatch.setattr(raster_mod, "_scatter_band", spy)
    for budget in (3000, 700, 1):  # 1: one row per band, each row over budget
        calls.clear()
        tiled = rasterize(verts, f, cam, max_pairs=budget)
        assert len(calls) > 3 and not any(c[2] for c in calls)
        rows = sorted(calls)
        assert all(a[1] <= b[0] for a, b in zip(rows, rows[1:], strict=False))  # disjoint bands
        _assert_same(ref, tiled)


def test_4096_four_people_stays_within_memory_budget():
    """4096 x 4096 with 4 people runs banded (default budget) in a fresh process; peak RSS stays bounded."""
    script = textwrap.dedent(
        """
        import json, math, resource, sys, torch
        sys.path.insert(0, {tests!r})
        from test_render_raster import _four_spheres
        from refsd.render import Camera, rasterize
        from refsd.render import raster as R
        calls = []
        orig = R._scatter_band
        def spy(*a):
            calls.append(a[4])
            return orig(*a)
        R._scatter_band = spy
        verts, f = _four_spheres(16, 32)
        cam = Camera.from_fov(4096, 4096, 50.0)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fr = rasterize(verts, f, cam)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = dict(bands=len(calls), whole=any(calls), covered=int(fr.mask.sum()),
                   people=sorted(set(fr.person_idx[fr.mask].tolist())), shape=list(fr.mask.shape),
                   base_mb=base / 1024, peak_mb=peak / 1024)
        print(json.dumps(out))
        """
    ).format(tests=str(__import__("pathlib").Path(__file__).parent))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4096, 4096]
    assert out["people"] == [0, 1, 2, 3]
    assert out["bands"] > 1 and not out["whole"]
    assert out["covered"] > 0.25 * 4096 * 4096
    # Output buffers are ~0.55 GB at 4096^2; the working set must stay well below the unbanded one.
    assert out["peak_mb"] - out["base_mb"] < 2500, out


def test_deterministic():
    cam = Camera.from_fov(128, 96, 50.0)
    verts, f = _four_spheres()
    a = rasterize(verts, f, cam)
    b = rasterize(verts.clone(), f.clone(), cam)
    _assert_same(a, b)


def test_empty_inputs():
    cam = Camera.from_fov(32, 24, 50.0)
    _, f = uv_sphere(8, 16)
    for fr in (
        rasterize(torch.zeros(0, 114, 3), f, cam),
        rasterize([], [], cam),
        rasterize(torch.zeros(2, 5, 3), torch.zeros(0, 3, dtype=torch.long), cam),
    ):
        _check_consistent(fr, cam)
        assert not fr.mask.any()
        assert interpolate(fr, torch.zeros(fr.num_people, 114 if fr.num_people == 0 else 5, 3)).shape == (24, 32, 3)


def test_behind_camera_and_near_plane():
    cam = Camera.from_fov(64, 64, 60.0)
    # Entirely behind the camera: nothing.
    behind = TRI * torch.tensor([1.0, 1.0, -1.0])
    assert not rasterize(behind[None], torch.tensor([[0, 1, 2]]), cam).mask.any()
    # A floor strip from behind the camera to far away, finely triangulated along z.
    zs = torch.linspace(-1.0, 6.0, 29)
    left = torch.stack((torch.full_like(zs, -1.0), torch.full_like(zs, 0.8), zs), 1)
    right = torch.stack((torch.full_like(zs, 1.0), torch.full_like(zs, 0.8), zs), 1)
    v = torch.cat((left, right))
    n = zs.numel()
    i = torch.arange(n - 1)
    f = torch.cat((torch.stack((i, i + 1, n + i), 1), torch.stack((i + 1, n + i + 1, n + i), 1)))
    near = 0.05
    fr = rasterize(v[None], f, cam, near=near)
    _check_consistent(fr, cam)
    assert fr.mask.any()
    assert (fr.zbuf[fr.mask] > near).all()
    in_front = (v[f][:, :, 2] > near).all(1)
    assert (in_front[fr.face_idx[fr.mask]]).all()  # only faces fully in front are drawn
    # Same as rasterizing just those faces.
    only = rasterize(v[None], f[in_front], cam, near=near)
    assert torch.equal(only.mask, fr.mask) and torch.equal(only.zbuf, fr.zbuf)


def test_backface_culling():
    cam = Camera.from_fov(96, 96, 50.0)
    v, f = uv_sphere(24, 48, 0.5, (0.1, 0.0, 3.0))
    both = rasterize(v[None], f, cam)
    culled = rasterize(v[None], f, cam, cull_backfaces=True)
    assert torch.equal(both.mask, culled.mask)  # closed convex mesh: front faces cover the silhouette
    assert torch.equal(both.zbuf, culled.zbuf)
    inward = rasterize(v[None], f[:, [0, 2, 1]], cam, cull_backfaces=True)  # inside-out: far side remains
    m = both.mask & inward.mask
    assert m.sum() > 0.9 * both.mask.sum()
    assert (inward.zbuf[m] > both.zbuf[m]).all()
    # A single triangle facing away from the camera disappears.
    tri_f = torch.tensor([[0, 1, 2]])
    t = TRI.double()
    facing = torch.linalg.cross(t[1] - t[0], t[2] - t[0]) @ t[0] < 0
    kept = rasterize(TRI[None], tri_f if facing else tri_f[:, [0, 2, 1]], CAM_SMALL, cull_backfaces=True)
    gone = rasterize(TRI[None], tri_f[:, [0, 2, 1]] if facing else tri_f, CAM_SMALL, cull_backfaces=True)
    assert kept.mask.any() and not gone.mask.any()


# ---------------------------------------------------------------------------
# Attributes and normals
# ---------------------------------------------------------------------------
def test_interpolate_positions_and_labels():
    cam = Camera.from_fov(96, 80, 50.0)
    verts, f = _two_people()
    fr = rasterize(verts, f, cam)
    pos = interpolate(fr, verts)
    assert pos.shape == (80, 96, 3)
    m = fr.mask
    assert (pos[~m] == 0).all()
    # Interpolated z is the depth of the visible surface.
    assert torch.allclose(pos[..., 2][m], fr.zbuf[m], rtol=1e-5)
    # Shared (V, C) attributes and per-person lists.
    col = torch.rand(verts.shape[1], 3)
    assert torch.allclose(interpolate(fr, col), interpolate(fr, col.expand(2, -1, -1)))
    assert torch.allclose(interpolate(fr, [col, col], background=-1.0)[~m], torch.tensor(-1.0))
    # Person id as a vertex label reproduces person_idx; nearest label is one of the face's corners.
    pid = torch.arange(2)[:, None].expand(2, verts.shape[1])
    assert torch.equal(interpolate_nearest(fr, pid), fr.person_idx)
    vid = torch.arange(verts.shape[1]).expand(2, -1)
    lab = interpolate_nearest(fr, vid)
    corners = f[fr.face_idx[m]]
    assert (corners == lab[m][:, None]).any(1).all()
    assert (lab[~m] == -1).all()


def test_interpolate_rejects_wrong_shapes():
    cam = Camera.from_fov(32, 32, 50.0)
    verts, f = _two_people()
    fr = rasterize(verts, f, cam)
    with pytest.raises(RenderError, match="vertex_attrs"):
        interpolate(fr, torch.zeros(3, 7, 2))
    with pytest.raises(RenderError, match="2 people"):
        interpolate(fr, [torch.zeros(verts.shape[1], 3)])


def test_vertex_normals():
    v, f = uv_sphere(16, 32, 0.7, (0.2, -0.1, 3.0))
    n = vertex_normals(v[None], f)
    assert n.shape == (1, v.shape[0], 3)
    radial = (v - torch.tensor([0.2, -0.1, 3.0])) / 0.7
    assert ((n[0] * radial).sum(-1) > 0.98).all()  # outward, close to radial
    assert torch.allclose(n.norm(dim=-1), torch.ones(1, v.shape[0]), atol=1e-5)
    assert torch.equal(vertex_normals(v, f), n[0])
    assert torch.equal(vertex_normals(v[None], f), n)  # deterministic
    # Area weighting: a vertex shared by a big and a tiny face follows the big one.
    vv = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.01, 0], [0, 0, 0.01]])
    nn = vertex_normals(vv, torch.tensor([[0, 1, 2], [0, 3, 4]]))  # normals +z (area 0.5) and +x (area 5e-5)
    assert nn[0, 2] > 0.9999 and 0 < nn[0, 0] < 1e-3 and nn[3, 0] > 0.9999
    assert vertex_normals(torch.zeros(0, 5, 3), torch.tensor([[0, 1, 2]])).shape == (0, 5, 3)  # no people
    # Unused vertex -> zero normal.
    assert torch.equal(vertex_normals(torch.cat((vv, torch.ones(1, 3))), torch.tensor([[0, 1, 2]]))[4], torch.zeros(3))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_bad_inputs_raise_render_errors():
    cam = Camera.from_fov(16, 16, 50.0)
    f = torch.tensor([[0, 1, 2]])
    cases = [
        (lambda: rasterize(TRI[None], torch.tensor([[0, 1, 3]]), cam), "vertex 3"),
        (lambda: rasterize(TRI[None], torch.tensor([[0, 1, -1]]), cam), "vertex -1"),
        (lambda: rasterize(TRI[None], f.float(), cam), "integer"),
        (lambda: rasterize(TRI[None], torch.tensor([0, 1, 2]), cam), r"\(F, 3\)"),
        (lambda: rasterize(TRI[None].long(), f, cam), "floating"),
        (lambda: rasterize(TRI[None, :, :2], f, cam), r"\(P, V, 3\)"),
        (lambda: rasterize(TRI[None] * float("nan"), f, cam), "NaN"),
        (lambda: rasterize(TRI[None], f, (16, 16)), "Camera"),
        (lambda: rasterize(TRI[None], f, cam, backend="opengl"), "backend"),
        (lambda: rasterize(TRI[None], f, cam, max_pairs=0), "max_pairs"),
        (lambda: rasterize(TRI[None], f, cam, near=0.0), "near"),
        (lambda: rasterize([TRI, TRI], [f], cam), "one faces tensor per person"),
        (lambda: rasterize(TRI.numpy(), f, cam), "tensor"),
    ]
    for fn, msg in cases:
        with pytest.raises(RenderError, match=msg):
            fn()
    assert issubclass(RenderError, RefSDError) and issubclass(RenderError, ValueError)


@pytest.mark.skipif(pytorch3d_available(), reason="pytorch3d is installed")
def test_pytorch3d_backend_missing_is_a_clear_error():
    with pytest.raises(RenderError, match="pytorch3d"):
        rasterize(TRI[None], torch.tensor([[0, 1, 2]]), CAM_SMALL, backend="pytorch3d")
    # "auto" falls back to the torch backend.
    assert torch.equal(
        rasterize(TRI[None], torch.tensor([[0, 1, 2]]), CAM_SMALL, backend="auto").mask,
        rasterize(TRI[None], torch.tensor([[0, 1, 2]]), CAM_SMALL).mask,
    )


# ---------------------------------------------------------------------------
# Other backends / devices
# ---------------------------------------------------------------------------
def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a & b).sum().item() / max(1, (a | b).sum().item())


@pytest.mark.parametrize("hw", [(120, 160), (97, 161), (50, 50)])
def test_pytorch3d_ndc_mapping_matches_its_pixel_centres(hw):
    """Our pixel centres land exactly where pytorch3d's kernels sample (PixToNonSquareNdc, reversed axes)."""
    H, W = hw

    def pix_to_non_square_ndc(i, s1, s2):  # pytorch3d's PixToNonSquareNdc (C++/CUDA rasterizer utils), re-stated
        rng = 2.0 * s1 / s2 if s1 > s2 else 2.0
        return -rng / 2 + (rng * i + rng / 2) / s1

    rows = torch.tensor([0, H // 3, H - 1], dtype=torch.float64)
    cols = torch.tensor([0, W // 2, W - 1], dtype=torch.float64)
    xn, yn = raster_mod._pytorch3d_ndc(cols + 0.5, rows + 0.5, H, W)
    for k in range(3):
        assert xn[k].item() == pytest.approx(pix_to_non_square_ndc(W - 1 - int(cols[k]), W, H), abs=1e-12)
        assert yn[k].item() == pytest.approx(pix_to_non_square_ndc(H - 1 - int(rows[k]), H, W), abs=1e-12)


@pytest.mark.parametrize("hw", [(120, 160), (161, 97)])
def test_pytorch3d_agrees_with_torch_backend(hw):
    pytest.importorskip("pytorch3d")
    H, W = hw
    cam = Camera.from_fov(W, H, 50.0)
    verts, f = _four_spheres(24, 48)
    ref = rasterize(verts, f, cam)
    p3 = rasterize(verts, f, cam, backend="pytorch3d")
    _check_consistent(p3, cam)
    assert _iou(ref.mask, p3.mask) > 0.99
    both = ref.mask & p3.mask
    agree = (ref.person_idx[both] == p3.person_idx[both]).float().mean().item()
    assert agree > 0.995
    same = both & (ref.face_idx == p3.face_idx) & (ref.person_idx == p3.person_idx)
    assert same.sum() > 0.95 * both.sum()
    assert torch.allclose(ref.zbuf[same], p3.zbuf[same], rtol=1e-4)
    assert torch.allclose(ref.bary[same], p3.bary[same], atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cam = Camera.from_fov(200, 150, 50.0)
    verts, f = _four_spheres(24, 48)
    cpu = rasterize(verts, f, cam)
    gpu = rasterize(verts.cuda(), f, cam)  # faces follow the vertices' device
    assert gpu.mask.is_cuda and gpu.zbuf.is_cuda
    assert _iou(cpu.mask, gpu.mask.cpu()) > 0.999
    both = cpu.mask & gpu.mask.cpu()
    assert (cpu.person_idx[both] == gpu.person_idx.cpu()[both]).float().mean() > 0.999
    _assert_same(gpu, rasterize(verts.cuda(), f.cuda(), cam))  # deterministic on CUDA too
    tiled = rasterize(verts.cuda(), f, cam, max_pairs=2000)
    _assert_same(gpu, tiled)
    n = vertex_normals(verts.cuda(), f)
    assert torch.allclose(n.cpu(), vertex_normals(verts, f), atol=1e-5)

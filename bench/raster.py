"""Micro-benchmark of the rasterizer core (refsd.render.rasterize), no external files.

The mesh is a procedural body: 16 ellipsoids (head, neck, torso, pelvis, arms, hands, legs,
feet) of 842 vertices / 1680 faces each, 13,472 vertices and 26,880 faces in all, 1.72 m
tall, a body model's size and triangle density. Cases (min time over the repeats, after one
warm-up call):

* 512x512, 1 person covering about half the image height;
* 512x512, 4 people side by side at different depths (overlapping);
* 1024x1024, the same 4 people;
* 4096x4096, the same 4 people (not with ``--quick``): runs banded within the pair budget.

Also reported: candidate (face, pixel) pairs, covered pixels and the process's peak RSS.

Usage: python bench/raster.py [--quick] [--repeats N] [--device cpu|cuda] [--backend torch|pytorch3d]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.render import Camera, rasterize  # noqa: E402
from refsd.render.primitives import uv_sphere  # noqa: E402

# (centre x, centre y above the floor, radius x, radius y, radius z), metres, body frame (y up).
PARTS = [
    (0.0, 1.60, 0.09, 0.12, 0.10),  # head
    (0.0, 1.45, 0.05, 0.06, 0.05),  # neck
    (0.0, 1.20, 0.18, 0.27, 0.11),  # torso
    (0.0, 0.92, 0.17, 0.12, 0.10),  # pelvis
    *[(s * 0.24, 1.22, 0.05, 0.16, 0.05) for s in (-1, 1)],  # upper arms
    *[(s * 0.27, 0.93, 0.04, 0.15, 0.04) for s in (-1, 1)],  # forearms
    *[(s * 0.28, 0.72, 0.03, 0.07, 0.02) for s in (-1, 1)],  # hands
    *[(s * 0.09, 0.62, 0.08, 0.23, 0.08) for s in (-1, 1)],  # thighs
    *[(s * 0.09, 0.23, 0.055, 0.20, 0.055) for s in (-1, 1)],  # shins
    *[(s * 0.09, 0.03, 0.045, 0.03, 0.11) for s in (-1, 1)],  # feet
]


def ellipsoid(n_lat: int, n_lon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit UV sphere with outward winding: ``(V, 3)`` float64 vertices and ``(F, 3)`` faces."""
    return uv_sphere(n_lat, n_lon)


def body_mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural body in a body frame (y up, feet at y = 0, feet pointing +z): float32 verts, faces."""
    unit_v, unit_f = ellipsoid(22, 40)
    vs, fs = [], []
    for k, (cx, cy, rx, ry, rz) in enumerate(PARTS):
        vs.append(unit_v * torch.tensor([rx, ry, rz], dtype=torch.float64) + torch.tensor([cx, cy, 0.0]))
        fs.append(unit_f + k * unit_v.shape[0])
    return torch.cat(vs).float(), torch.cat(fs)


def place(body: torch.Tensor, x: float, z: float, yaw_deg: float) -> torch.Tensor:
    """Body frame -> OpenCV camera frame (a rotation of 180 deg about x, so the winding stays outward):
    yaw the body, stand it at depth z, x metres right of the optical axis, feet 0.86 m below it."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    p = body @ rot.T
    return torch.stack((p[:, 0] + x, 0.86 - p[:, 1], z - p[:, 2]), dim=1)


def scene(num_people: int) -> torch.Tensor:
    body, _ = body_mesh()
    spots = [(0.0, 4.7, 10.0), (-0.85, 5.2, -25.0), (0.7, 4.3, 35.0), (-0.2, 5.9, 180.0)]
    return torch.stack([place(body, *spots[i]) for i in range(num_people)])


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(quick: bool = False, repeats: int | None = None, device: str = "cpu", backend: str = "torch") -> dict:
    """Run the cases; returns ``{"cases": [...], "peak_rss_mb": ...}`` (times in ms)."""
    _, faces = body_mesh()
    faces = faces.to(device)
    reps = repeats if repeats is not None else (5 if quick else 20)
    cases = [(512, 1, reps), (512, 4, reps), (1024, 4, max(2, reps // 2))]
    if not quick:
        cases.append((4096, 4, 2))
    out = []
    for size, people, n in cases:
        verts = scene(people).to(device)
        cam = Camera.from_fov(size, size, 40.0, axis="vertical")

        def call(verts=verts, cam=cam):
            fr = rasterize(verts, faces, cam, backend=backend)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return fr

        ms = timeit(call, n)
        fr = call()
        out.append(
            {
                "size": size,
                "people": people,
                "faces": int(faces.shape[0]) * people,
                "ms": round(ms, 2),
                "covered_px": int(fr.mask.sum()),
                "people_visible": len(set(fr.person_idx[fr.mask].tolist())),
                "repeats": n,
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
        print(
            f"{size}x{size} {people} person(s): {ms:8.2f} ms  (min of {n}; {out[-1]['covered_px']} px covered, "
            f"peak RSS {out[-1]['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    return {
        "bench": "raster",
        "backend": backend,
        "device": device,
        "threads": torch.get_num_threads(),
        "cases": out,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip the 4096x4096 case (< 30 s)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch", choices=("torch", "pytorch3d"))
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    body, faces = body_mesh()
    print(f"procedural body: {body.shape[0]} vertices, {faces.shape[0]} faces; torch {torch.__version__}", flush=True)
    res = run(quick=a.quick, repeats=a.repeats, device=a.device, backend=a.backend)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

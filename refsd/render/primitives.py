"""Simple meshes (spheres) for tests, benchmarks and previews."""

from __future__ import annotations

import math

import torch

__all__ = ["uv_sphere"]


def uv_sphere(n_lat: int, n_lon: int, radius: float = 1.0, center=(0.0, 0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """UV sphere: ``(V, 3)`` float64 vertices and ``(F, 3)`` faces wound counter-clockwise seen
    from outside (outward normals). ``n_lat`` rings of latitude (poles included), ``n_lon``
    segments of longitude."""
    lat = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)[1:-1]
    lon = torch.arange(n_lon, dtype=torch.float64) * (2 * math.pi / n_lon)
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    ring = torch.stack((la.sin() * lo.cos(), -la.cos(), la.sin() * lo.sin()), -1).reshape(-1, 3)
    v = torch.cat((torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64), ring, torch.tensor([[0.0, 1.0, 0.0]])))
    N = n_lon
    j = torch.arange(N)
    faces = [torch.stack((torch.zeros(N, dtype=torch.long), 1 + (j + 1) % N, 1 + j), 1)]
    for i in range(n_lat - 2):
        a = 1 + i * N + j
        b = 1 + i * N + (j + 1) % N
        faces += [torch.stack((a, b, a + N), 1), torch.stack((b, b + N, a + N), 1)]
    last = v.shape[0] - 1
    base = 1 + (n_lat - 2) * N
    faces.append(torch.stack((torch.full((N,), last), base + j, base + (j + 1) % N), 1))
    f = torch.cat(faces)
    tri = v[f]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    inward = (n * tri.mean(1)).sum(-1) < 0
    f[inward] = f[inward][:, [0, 2, 1]]
    return v * radius + torch.tensor(center, dtype=torch.float64), f

"""Benchmark of the render passes (refsd.render.passes.render_passes) on the real Anny body.

Scenes: Anny people (default shape, varied arm poses) standing in front of a camera with a 40
degree vertical field of view, framed as in bench/raster.py (a person covers about half the image
height): 1 person, or 4 people side by side at 4.3-5.9 m (overlapping, one seen from the back).
Cases (min time over the repeats, after one warm-up call):

* 512x512, 1 person; 512x512, 4 people; 1024x1024, 4 people;
* 4096x4096, 4 people (not with ``--quick``).

``ms`` is the whole :func:`render_passes` call (one body-model forward, rasterization, shading,
depth, normals, parts, Canny edges, OpenPose image + POSE_KEYPOINT); ``ms_passes`` the same without
the body-model forward (:func:`render_passes_from_output`); ``stages`` splits one call into
forward / raster / shade (rgb, normal, depth, parts) / edges / pose. With pytorch3d importable,
the 512x512 1-person case is also timed with ``backend="pytorch3d"`` (its CPU rasterizer is the
naive one) in the same run. Peak RSS is the process's (the Anny model itself takes ~0.9 GB).

Usage: python bench/render.py [--quick] [--repeats N] [--threads N] [--device cpu|cuda]
The last line of output is one JSON object with ``ms_512_1p``, ``ms_512_4p``, ``ms_1024_4p``
(and ``ms_4096_4p``), ``peak_rss_mb`` and, when pytorch3d is importable, ``ms_512_1p_pytorch3d``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import timeit  # noqa: E402

from refsd.body import POSE_JOINT_NAMES, get_body_model  # noqa: E402
from refsd.fit.result import BodyFit, PersonFit  # noqa: E402
from refsd.render import passes as P  # noqa: E402
from refsd.render import pytorch3d_available, rasterize  # noqa: E402

# (x, z, yaw in degrees, pose): pelvis 0.13 m above the optical axis, as bench/raster.py frames its bodies.
SPOTS = [
    (0.0, 4.7, 10.0, {"right_shoulder": (0.0, 1.5, 0.0)}),  # right arm forward, over the belly
    (-0.85, 5.2, -25.0, {"left_shoulder": (0.0, 0.0, 0.9)}),  # left arm lowered
    (0.7, 4.3, 35.0, {"right_elbow": (0.0, -1.2, 0.0)}),
    (-0.2, 5.9, 180.0, {}),  # seen from the back
]


def person(model, x: float, z: float, yaw: float, pose: dict) -> PersonFit:
    a = math.radians(yaw) / 2  # body (Y up, facing +Z) -> OpenCV camera: half turn about (cos a, 0, sin a)
    body_pose = [[0.0, 0.0, 0.0] for _ in POSE_JOINT_NAMES]
    for name, aa in pose.items():
        body_pose[POSE_JOINT_NAMES.index(name)] = list(aa)
    return PersonFit(
        global_orient=[math.pi * math.cos(a), 0.0, math.pi * math.sin(a)],
        body_pose=body_pose,
        shape=model.default_shape(1)[0].tolist(),
        transl=[x, -0.13, z],
        reproj_error_px=0.0,
        quality="good",
    )


def scene(model, size: int, people: int) -> BodyFit:
    f = 0.5 * size / math.tan(math.radians(20.0))
    return BodyFit(
        model_id=model.model_id,
        image_width=size,
        image_height=size,
        camera={"fx": f, "fy": f, "cx": size / 2, "cy": size / 2},
        people=[person(model, *SPOTS[i]) for i in range(people)],
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux




def stages(model, fit: BodyFit, colors: torch.Tensor, sync, repeats: int = 3) -> dict:
    """One call split into its stages (ms; min over ``repeats`` runs of each stage)."""
    out_t = {}

    def lap(name, fn):
        best, r = math.inf, None
        for _ in range(repeats):
            r = None  # free the previous result first: the peak RSS then reflects one call
            sync()
            t = time.perf_counter()
            r = fn()
            sync()
            best = min(best, time.perf_counter() - t)
        out_t[name] = round(best * 1e3, 2)
        return r

    cam = P.fit_camera(fit)
    out = lap("forward", lambda: P.fit_output(model, fit))
    fr = lap("raster", lambda: rasterize(out.vertices, model.faces, cam))
    win = fr.mask.reshape(-1).nonzero().squeeze(1)
    sh = lap(
        "shade",
        lambda: P._shade(fr, win, out.vertices, colors, model.part_labels, cam, P.DEFAULT_LIGHTING, 0.2, "flat"),
    )
    lap("edges", lambda: P.canny(sh["rgb"], mask=fr.mask))
    lap("pose", lambda: P._pose_passes(out, out.vertices, fr, cam, True, True))
    return out_t


def run(model, quick: bool = False, repeats: int | None = None, device: str = "cpu") -> dict:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    reps = repeats if repeats is not None else (5 if quick else 15)
    cases = [(512, 1, reps), (512, 4, reps), (1024, 4, max(2, reps // 2))]
    if not quick:
        cases.append((4096, 4, 2))
    g = torch.Generator().manual_seed(0)
    results = []
    for size, people, n in cases:
        fit = scene(model, size, people)
        # Piecewise-constant colours (a random colour per body part and person), as the materials produce.
        pal = torch.rand(people, int(model.part_labels.max()) + 1, 3, generator=g)
        colors = torch.stack([pal[p][model.part_labels.cpu()] for p in range(people)]).to(device)
        out = P.fit_output(model, fit)
        cam = P.fit_camera(fit)
        ms = timeit(lambda fit=fit, colors=colors: P.render_passes(model, fit, colors), n, sync)
        ms_passes = timeit(
            lambda out=out, cam=cam, colors=colors: P.render_passes_from_output(
                out, model.faces, model.part_labels, cam, colors
            ),
            n,
            sync,
        )
        rp = P.render_passes(model, fit, colors)
        row = {
            "size": size,
            "people": people,
            "ms": round(ms, 2),
            "ms_passes": round(ms_passes, 2),
            "covered_px": int(rp.alpha.sum()),
            "edge_px": int(rp.edges[..., 0].sum()),
            "people_in_pose_keypoint": len(rp.pose_keypoint[0]["people"]),
            "repeats": n,
        }
        del rp, out
        row["stages"] = stages(model, fit, colors, sync)
        row["peak_rss_mb"] = round(peak_rss_mb(), 1)
        results.append(row)
        print(
            f"{size}x{size} {people} person(s): {ms:8.2f} ms all passes ({ms_passes:.2f} ms without the body "
            f"forward; stages {row['stages']}; {row['covered_px']} px covered; peak RSS {row['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    res = {
        "bench": "render",
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cases": results,
    }
    for r in results:
        res[f"ms_{r['size']}_{r['people']}p"] = r["ms"]
        res[f"ms_passes_{r['size']}_{r['people']}p"] = r["ms_passes"]
    if pytorch3d_available():
        fit = scene(model, 512, 1)
        ms = timeit(lambda: P.render_passes(model, fit, backend="pytorch3d"), max(2, reps // 2), sync)
        res["ms_512_1p_pytorch3d"] = round(ms, 2)
        print(f"512x512 1 person, pytorch3d raster backend: {ms:8.2f} ms", flush=True)
    else:
        print("pytorch3d is not importable: no side-by-side timing", flush=True)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip the 4096x4096 case (< 60 s)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument(
        "--cache-dir", default=None, help="Anny cache folder (default: $REFSD_CACHE_DIR/anny or .cache/anny)"
    )
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cache = a.cache_dir or str(Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache") / "anny")
    t = time.perf_counter()
    model = get_body_model("anny", device=a.device, cache_dir=cache)
    print(
        f"anny: {model.num_vertices} vertices, {model.num_faces} faces (loaded in {time.perf_counter() - t:.1f} s); "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {a.device}",
        flush=True,
    )
    res = run(model, quick=a.quick, repeats=a.repeats, device=a.device)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

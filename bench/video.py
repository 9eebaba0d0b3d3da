"""Benchmark of video fitting and tracking on synthetic sequences with known 3D.

For each kind of :mod:`refsd.testing.sequences` (walking, turning, two people crossing, a walker
missed for six frames), 40 frames at 25 fps: the tracker's ID switches against the true
identities, and per person the acceleration error (mm / frame^2) and PA-MPJPE (mm) of fitting
every frame alone (:meth:`BodyFitter.fit_frame`) against the video fit (:func:`refsd.fit.fit_video`:
warm start, one shape per track, smoothing), with seconds per frame. Anny by default.

Usage: python bench/video.py [--frames N] [--seeds N] [--threads N]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.body import get_body_model  # noqa: E402
from refsd.fit import BodyFitter, fit_video  # noqa: E402
from refsd.keypoints.track import count_id_switches, track_frames  # noqa: E402
from refsd.testing.sequences import KINDS, accel_error, fitted_joints, make_sequence, sequence_pa_mpjpe  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    model = get_body_model("anny", cache_dir=str(cache / "anny"))
    fitter = BodyFitter(model)
    rows, switches_all = [], []
    for kind in KINDS:
        for seed in range(args.seeds):
            seq = make_sequence(model, kind, frames=args.frames, seed=seed)
            t0 = time.perf_counter()
            per = [fitter.fit_frame(f, camera=seq.camera) for f in seq.frames]
            t_per = time.perf_counter() - t0
            ids = track_frames(seq.frames)
            switches = count_id_switches(seq.truth_ids, ids)
            switches_all.append(switches)
            for f, row in zip(seq.frames, ids, strict=True):
                for p, tid in zip(f.people, row, strict=True):
                    p.track_id = tid
            t0 = time.perf_counter()
            vid = fit_video(fitter, seq.frames, camera=seq.camera)
            t_vid = time.perf_counter() - t0
            shape = next(iter(seq.joints.values())).shape
            P, V = fitted_joints(model, per, seq.truth_ids, shape), fitted_joints(model, vid, seq.truth_ids, shape)
            for k, gt in seq.joints.items():
                row = {"kind": kind, "seed": seed, "person": k, "id_switches": switches,
                       "accel_per_frame": round(accel_error(P[k], gt), 1), "accel_video": round(accel_error(V[k], gt), 1),
                       "pa_per_frame": round(sequence_pa_mpjpe(P[k], gt), 1), "pa_video": round(sequence_pa_mpjpe(V[k], gt), 1),
                       "s_per_frame_single": round(t_per / args.frames, 3), "s_per_frame_video": round(t_vid / args.frames, 3)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    ratio = [r["accel_per_frame"] / r["accel_video"] for r in rows]
    summary = {"sequences": len(rows), "frames": args.frames, "id_switches": sum(switches_all),
               "accel_ratio_min": round(min(ratio), 1), "accel_ratio_median": round(float(np.median(ratio)), 1),
               "pa_no_worse": all(r["pa_video"] <= r["pa_per_frame"] for r in rows)}
    print(json.dumps({"rows": rows, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

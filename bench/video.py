"""Benchmark of video fitting and tracking on synthetic sequences with known 3D.

For each kind of :mod:`refsd.testing.sequences` (walking, turning, two people crossing, a walker
missed for six frames), 40 frames at 25 fps: the tracker's ID switches against the true
identities, and per person the acceleration error (mm / frame^2) and PA-MPJPE (mm) of fitting
every frame alone (:meth:`BodyFitter.fit_frame`) against the video fit (:func:`refsd.fit.fit_video`:
warm start, one shape per track, smoothing), with seconds per frame. Anny by default.

Then the flicker of the pseudonymized people on a real photo under a panning camera (bus.jpg,
two people, 12 frames, 4 px per frame; render-only: no SD weights exist here): the mean absolute
change (0..255) of the replaced region between consecutive frames after undoing the pan, for
every frame pseudonymized on its own (as separate images: a new draw of each person per frame,
independent fits) against the video path (:func:`refsd.pipeline.video.pseudonymize_frames`:
tracks, one look per track, coherent fits, the removed region filled from earlier frames), and
the video path with a per-frame fill; the photo itself changes by 0 there. ``people``: inside
the new people's silhouettes; ``region``: the whole replaced region; ``fill``: the region less
the new people (the background fill alone).

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


def measure_flicker(cache: Path, n: int = 12, shift: int = 4) -> dict:
    """Mean |frame t+1 shifted back by the pan - frame t| inside the people's regions, per-frame vs video."""
    from PIL import Image

    from refsd.comfyapi import image_seed
    from refsd.pipeline import RefSDPipeline
    from refsd.pipeline.video import VideoState, pseudonymize_frames
    from refsd.testing.video import pan_video

    photo = np.asarray(Image.open(cache / "photos" / "bus.jpg").convert("RGB").resize((405, 540), Image.LANCZOS))
    frames = pan_video(photo, n, (320, 480), (shift, 0))
    pipe = RefSDPipeline(detect=True, identity_check=False, device="cpu", anny_cache_dir=cache / "anny",
                         detect_dirs=[cache / "detect"])
    t0 = time.perf_counter()
    alone = [pipe(f, None, seed=image_seed(0, f"frame{t}.png")) for t, f in enumerate(frames)]
    t_alone = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    video = pseudonymize_frames(pipe, list(frames), image_seed(0, "clip.mp4"), VideoState())
    t_video = (time.perf_counter() - t0) / n
    plain = pseudonymize_frames(pipe, list(frames), image_seed(0, "clip.mp4"), VideoState(), temporal_background=False)

    def flicker(results, key: str, background: bool = False) -> float:
        vals = []
        for a, b in zip(results, results[1:], strict=False):
            ia, ib = (r.image.numpy() * 255 for r in (a, b))
            ma, mb = (getattr(r, key).numpy() > 0.5 for r in (a, b))
            inside = ma[:, shift:] | mb[:, :-shift]
            if background:  # the fill alone: neither frame's new person there
                inside &= ~(a.avatar_mask.numpy()[:, shift:] > 0.5) & ~(b.avatar_mask.numpy()[:, :-shift] > 0.5)
            d = np.abs(ib[:, :-shift] - ia[:, shift:]).mean(-1)  # b's content is a's moved left by `shift`
            vals.append(float(d[inside].mean()))
        return round(float(np.mean(vals)), 2)

    photo_change = float(np.abs(frames[1][:, :-shift].astype(float) - frames[0][:, shift:]).mean())
    return {"frames": n, "pan_px": shift, "photo_change": round(photo_change, 3),
            "people_per_frame": flicker(alone, "avatar_mask"), "people_video": flicker(video, "avatar_mask"),
            "region_per_frame": flicker(alone, "region"), "region_video": flicker(video, "region"),
            "region_video_per_frame_fill": flicker(plain, "region"),
            "fill_per_frame": flicker(alone, "region", True), "fill_video": flicker(video, "region", True),
            "fill_video_per_frame_fill": flicker(plain, "region", True),
            "s_per_frame_alone": round(t_alone, 2), "s_per_frame_video": round(t_video, 2)}


def measure_refine_flicker(cache: Path, n: int = 6, shift: int = 4, size: str = "tiny") -> dict:
    """The same flicker inside the new people with diffusion refinement (random-weight SD1.5-shaped
    models built here: no real weights can be fetched, so this measures the mechanism, not the look):
    each frame alone (a new seed per frame), the video path refining every frame's crops alone
    (one seed per track) and the video path continuing each track's last refined crop
    (:mod:`refsd.pipeline.video_refine`, img2img at 0.35 where the pose changed little)."""
    import tempfile

    from PIL import Image

    from refsd.comfyapi import image_seed
    from refsd.pipeline import RefSDPipeline
    from refsd.pipeline.video import VideoState, pseudonymize_frames
    from refsd.refine import DiffusersRefiner
    from refsd.testing import write_test_models
    from refsd.testing.video import pan_video

    paths = write_test_models(Path(tempfile.mkdtemp()), size=size, controls=("depth", "openpose"), single_file=False)
    cn = paths["controlnets"]
    refiner = DiffusersRefiner(paths["model"], {"depth": cn["depth"], "openpose": cn["openpose"]}, device="cpu")
    photo = np.asarray(Image.open(cache / "photos" / "bus.jpg").convert("RGB").resize((405, 540), Image.LANCZOS))
    frames = pan_video(photo, n, (320, 480), (shift, 0))
    pipe = RefSDPipeline(detect=True, identity_check=False, device="cpu", anny_cache_dir=cache / "anny",
                         detect_dirs=[cache / "detect"], refiner=refiner, crop_size=(256, 384), steps=10,
                         sd_removal=False)
    alone = [pipe(f, None, seed=image_seed(0, f"frame{t}.png")) for t, f in enumerate(frames)]
    seed = image_seed(0, "clip.mp4")
    per_frame = pseudonymize_frames(pipe, list(frames), seed, VideoState(), refine_denoise=None)
    t0 = time.perf_counter()
    state = VideoState()
    cont = pseudonymize_frames(pipe, list(frames), seed, state)
    t_cont = (time.perf_counter() - t0) / n

    def flicker(results) -> float:
        vals = []
        for a, b in zip(results, results[1:], strict=False):
            ia, ib = (r.image.numpy() * 255 for r in (a, b))
            inside = (a.avatar_mask.numpy()[:, shift:] > 0.5) | (b.avatar_mask.numpy()[:, :-shift] > 0.5)
            vals.append(float(np.abs(ib[:, :-shift] - ia[:, shift:]).mean(-1)[inside].mean()))
        return round(float(np.mean(vals)), 2)

    return {"frames": n, "models": f"random {size}", "crop": [256, 384], "steps": 10,
            "people_each_frame_alone": flicker(alone), "people_video_refined_per_frame": flicker(per_frame),
            "people_video_continued": flicker(cont), "s_per_frame_continued": round(t_cont, 2),
            "crops_continued": f"{state.crops_continued} of {state.crops_refined}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flicker-only", action="store_true", help="only the flicker on bus.jpg")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    if args.flicker_only:
        print(json.dumps({"flicker": measure_flicker(cache), "refined": measure_refine_flicker(cache)}))
        return 0
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
    flicker = measure_flicker(cache)
    flicker["refined"] = measure_refine_flicker(cache)
    ratio = [r["accel_per_frame"] / r["accel_video"] for r in rows]
    summary = {"sequences": len(rows), "frames": args.frames, "id_switches": sum(switches_all),
               "accel_ratio_min": round(min(ratio), 1), "accel_ratio_median": round(float(np.median(ratio)), 1),
               "pa_no_worse": all(r["pa_video"] <= r["pa_per_frame"] for r in rows)}
    print(json.dumps({"rows": rows, "summary": summary, "flicker": flicker}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

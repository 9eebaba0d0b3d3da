"""Benchmark the body fitter on a synthetic set with known 3D ground truth.

The set is made here, seeded: people of varied body shapes (Anny: adults 18-64 y of
any gender, height/weight/muscle/proportions in the middle 40-60% of their ranges; SMPL-X:
betas ~ N(0, 1) clipped to +-2), yaw all around, camera pitch 0-30 deg
(looking down) with +-5 deg roll, 2.5-8 m away, ~15% shifted partly out of frame, in eight
pose families with equal shares (standing, walking, arms raised, reaching, crouching,
sitting, bending, lunging with a twisted torso), each family a base pose in degrees plus
random variation. Keypoints (BODY_25 incl. feet) are projected at 512x512 with the fitter's
default camera, with 2 px Gaussian noise, 10% dropped at random, and out-of-frame points
dropped as a detector would.

Metrics over 14 joints (neck, nose, shoulders, elbows, wrists, hips, knees, ankles taken from
the model's own COCO-18 output): MPJPE after aligning the hip midpoint, PA-MPJPE after a
similarity Procrustes alignment (both in mm), reprojection RMS error in px (a convergence
check), time per person (one person per call) and people per second when 8 people share
one image (batched), and peak RSS.

Usage: python bench/fit.py [--backend anny|smplx] [--quick] [--people N]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.body import get_body_model  # noqa: E402
from refsd.fit import BodyFitter, FitOptions  # noqa: E402
from refsd.fit.camera import Camera  # noqa: E402
from refsd.fit.kinematics import matrix_to_axis_angle, rot_x, rot_y  # noqa: E402
from refsd.fit.metrics import pa_mpjpe  # noqa: E402
from refsd.fit.prior import build_prior  # noqa: E402
from refsd.keypoints import from_array  # noqa: E402

FAMILIES = ("standing", "walking", "arms_raised", "reaching", "crouching", "sitting", "bending", "lunge_twist")
EVAL_COCO18 = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # neck, nose, R arm, L arm, R leg, L leg
IMG = 512

# anatomical angles (degrees) per family; keys: joint -> (x, y, z) in the fitter's joint frames
# (hip/knee/spine: x = flexion sign as in refsd.fit.prior; shoulders: z = elevation from
# horizontal, y < 0 = forward; elbow: flexion first). Left side given; "R" entries override.
BASE = {
    "standing": {"L_shoulder": (0, -5, -75), "R_shoulder": (0, 5, 75), "L_elbow": (10, 0, 0), "R_elbow": (10, 0, 0)},
    "walking": {
        "L_hip": (-25, 0, 0), "R_hip": (15, 0, 0), "R_knee": (30, 0, 0), "L_knee": (10, 0, 0),
        "L_shoulder": (0, 20, -75), "R_shoulder": (0, 20, 75), "L_elbow": (20, 0, 0), "R_elbow": (30, 0, 0),
    },
    "arms_raised": {"L_shoulder": (0, -10, 70), "R_shoulder": (0, 10, -70), "L_elbow": (15, 0, 0), "R_elbow": (15, 0, 0)},
    "reaching": {
        "R_shoulder": (0, 80, 10), "L_shoulder": (0, -10, -70), "R_elbow": (10, 0, 0), "L_elbow": (20, 0, 0),
        "spine1": (10, 0, 0), "spine2": (8, 0, 0),
    },
    "crouching": {
        "L_hip": (-110, 0, 10), "R_hip": (-110, 0, -10), "L_knee": (130, 0, 0), "R_knee": (130, 0, 0),
        "L_ankle": (20, 0, 0), "R_ankle": (20, 0, 0), "spine1": (20, 0, 0), "spine2": (10, 0, 0),
        "L_shoulder": (0, -40, -60), "R_shoulder": (0, 40, 60), "L_elbow": (60, 0, 0), "R_elbow": (60, 0, 0),
    },
    "sitting": {
        "L_hip": (-90, 0, 5), "R_hip": (-90, 0, -5), "L_knee": (90, 0, 0), "R_knee": (90, 0, 0),
        "L_shoulder": (0, -30, -70), "R_shoulder": (0, 30, 70), "L_elbow": (60, 0, 0), "R_elbow": (60, 0, 0),
    },
    "bending": {
        "spine1": (25, 0, 0), "spine2": (20, 0, 0), "spine3": (15, 0, 0), "L_hip": (-50, 0, 0), "R_hip": (-50, 0, 0),
        "L_shoulder": (0, -60, -60), "R_shoulder": (0, 60, 60), "L_elbow": (20, 0, 0), "R_elbow": (20, 0, 0),
    },
    "lunge_twist": {
        "L_hip": (-70, 0, 5), "R_hip": (25, 0, -5), "L_knee": (80, 0, 0), "R_knee": (20, 0, 0),
        "spine1": (5, 15, 0), "spine2": (5, 15, 0), "spine3": (0, 10, 0),
        "L_shoulder": (0, -40, -50), "R_shoulder": (0, 40, 50), "L_elbow": (45, 0, 0), "R_elbow": (45, 0, 0),
    },
}
# per-DOF random variation (degrees): large where the joint moves freely, small on hinge axes
JITTER = {"hip": (15, 10, 8), "knee": (12, 2, 2), "ankle": (8, 5, 5), "spine": (6, 5, 4), "neck": (10, 12, 6),
          "head": (8, 10, 5), "shoulder": (15, 20, 15), "elbow": (15, 15, 2), "wrist": (12, 12, 12),
          "collar": (3, 3, 3), "foot": (3, 2, 2)}
JOINTS = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle", "spine3",
    "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip


def family_alpha(prior, family: str, rng: np.random.Generator) -> torch.Tensor:
    """Anatomical angles (radians, (21,3)) for one sample of a family."""
    alpha = np.zeros((21, 3))
    base = BASE[family]
    for j, name in enumerate(JOINTS):
        side = "L" if name.startswith("left_") else "R" if name.startswith("right_") else None
        key = name.split("_", 1)[1] if side else name
        v = np.array(base.get(f"{side}_{key}" if side else key, (0, 0, 0)), dtype=float)
        if side == "R" and key not in ("elbow",) and f"R_{key}" not in base and f"L_{key}" in base:
            lv = np.array(base[f"L_{key}"], dtype=float)
            v = np.array([lv[0], -lv[1], -lv[2]])
        jit = np.array(JITTER["spine" if key.startswith("spine") else key])
        v = v + rng.normal(0, 1, 3) * jit
        alpha[j] = np.radians(v)
    a = torch.tensor(alpha, dtype=torch.float64)
    # shoulders: the tables give angles for a T-pose rest; shift by the model's rest arm drop
    for j, name in enumerate(JOINTS):
        if name.endswith("shoulder"):
            drop = prior.shoulder_drop[name.split("_")[0]]
            a[j, 2] += drop if name.startswith("left") else -drop
    return a


# realistic adult ranges for Anny's phenotypes (0..1 each; age 0.77 = 18 y, 0.83 = 64 y)
ANNY_RANGES = {"gender": (0, 1), "age": (0.77, 0.84), "muscle": (0.2, 0.8), "weight": (0.2, 0.8),
               "height": (0.3, 0.7), "proportions": (0.3, 0.7)}


def sample_shape(model, rng) -> torch.Tensor:
    names = list(getattr(model, "shape_names", ()))
    if set(names) == set(ANNY_RANGES):
        return torch.tensor([rng.uniform(*ANNY_RANGES[n]) for n in names], dtype=torch.float64)
    lo, hi = (t.double().cpu() for t in model.shape_bounds())
    return (torch.tensor(rng.normal(0, 1, len(names))).clamp(-2, 2) * (hi - lo) / 6).to(torch.float64)


def make_set(model, n: int, seed: int, cam: Camera):
    rng = np.random.default_rng(seed)
    fitter_prior = build_prior(model(**model.zero_params(1)).pose_joints[0].detach())
    fitter_prior.shoulder_drop = {}
    J = model(**model.zero_params(1)).pose_joints[0].detach().double()
    for side, (si, ei) in (("left", (16, 18)), ("right", (17, 19))):
        d = J[ei] - J[si]
        fitter_prior.shoulder_drop[side] = math.atan2(-float(d[1]), abs(float(d[0])))
    samples = []
    while len(samples) < n:
        fam = FAMILIES[len(samples) % len(FAMILIES)]
        alpha = family_alpha(fitter_prior, fam, rng)
        body_pose = fitter_prior.to_rotvec(alpha)
        shape = sample_shape(model, rng)
        yaw = rng.uniform(0, 2 * math.pi)
        pitch = math.radians(rng.uniform(0, 30))
        roll = math.radians(rng.uniform(-5, 5))
        Rz = torch.tensor([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]],
                          dtype=torch.float64)
        R = Rz @ rot_x(torch.tensor(-pitch, dtype=torch.float64)) @ rot_x(torch.tensor(math.pi, dtype=torch.float64))
        R = R @ rot_y(torch.tensor(yaw, dtype=torch.float64))
        dist = rng.uniform(2.5, 8.0)
        params = model.zero_params(1)
        dt, dev = model.dtype, model.device
        params.update(global_orient=matrix_to_axis_angle(R)[None].to(dev, dt), body_pose=body_pose[None].to(dev, dt),
                      shape=shape[None].to(dev, dt), transl=torch.zeros(1, 3, device=dev, dtype=dt))
        with torch.no_grad():
            out = model(**params)
        # place the person: centre of the 2D bbox near the image centre (or off the edge for 15%)
        kp = out.body25[0].double().cpu()
        center = kp.mean(0)
        off_frame = rng.uniform() < 0.15
        target_uv = np.array([IMG / 2, IMG / 2]) + rng.normal(0, 30, 2)
        t = torch.tensor([(target_uv[0] - cam.cx) / cam.fx * dist, (target_uv[1] - cam.cy) / cam.fy * dist, dist],
                         dtype=torch.float64) - center
        t[2] = dist - float(center[2])
        kp_cam = kp + t
        uv = torch.stack([cam.fx * kp_cam[:, 0] / kp_cam[:, 2] + cam.cx, cam.fy * kp_cam[:, 1] / kp_cam[:, 2] + cam.cy], -1)
        if off_frame:
            ext = uv.max(0).values - uv.min(0).values
            shift = torch.tensor([0.0, 0.0], dtype=torch.float64)
            ax = int(rng.integers(0, 2))
            shift[ax] = float(ext[ax]) * rng.uniform(0.2, 0.4) * (1 if rng.uniform() < 0.5 else -1)
            # move in 3D so the projection shifts by `shift`
            t[0] += float(shift[0]) / cam.fx * float(kp_cam[:, 2].mean())
            t[1] += float(shift[1]) / cam.fy * float(kp_cam[:, 2].mean())
            kp_cam = kp + t
            uv = torch.stack([cam.fx * kp_cam[:, 0] / kp_cam[:, 2] + cam.cx,
                              cam.fy * kp_cam[:, 1] / kp_cam[:, 2] + cam.cy], -1)
        uvn = uv.numpy() + rng.normal(0, 2.0, uv.shape)
        conf = np.full(len(uvn), 0.9)
        conf[rng.uniform(size=len(uvn)) < 0.10] = 0.0
        inside = (uvn[:, 0] >= 0) & (uvn[:, 0] < IMG) & (uvn[:, 1] >= 0) & (uvn[:, 1] < IMG)
        conf[~inside] = 0.0
        if (conf[:15] > 0).sum() < 6:
            continue  # the fitter would skip it; keep the set meaningful
        kp25 = np.concatenate([uvn, conf[:, None]], 1)
        gt = (out.coco18[0].double().cpu() + t)[EVAL_COCO18].numpy()
        samples.append({"family": fam, "kp25": kp25, "gt": gt, "off_frame": off_frame})
    return samples


def evaluate(model, fitter: BodyFitter, samples, cam: Camera, batched: int = 8):
    rows = []
    t_single = 0.0
    for s in samples:
        frame = from_array(s["kp25"][None], fmt="body25", image_size=(IMG, IMG), min_joints=1)
        t0 = time.perf_counter()
        fit = fitter.fit_frame(frame, camera=cam)
        t_single += time.perf_counter() - t0
        if not fit.people:
            rows.append({"family": s["family"], "mpjpe": np.nan, "pa": np.nan, "reproj": np.nan})
            continue
        p = fit.people[0]
        params = model.zero_params(1)
        dev, dt = model.device, model.dtype
        params.update(global_orient=torch.tensor([p.global_orient], device=dev, dtype=dt),
                      body_pose=torch.tensor([p.body_pose], device=dev, dtype=dt),
                      shape=torch.tensor([p.shape], device=dev, dtype=dt),
                      transl=torch.tensor([p.transl], device=dev, dtype=dt))
        with torch.no_grad():
            pred = model(**params).coco18[0].double().cpu()[EVAL_COCO18].numpy()
        gt = s["gt"]
        # root-relative: hip midpoint (indices of RHip/LHip within EVAL_COCO18: 8, 11)
        pr = pred - (pred[8] + pred[11]) / 2
        gr = gt - (gt[8] + gt[11]) / 2
        mpjpe = np.linalg.norm(pr - gr, axis=1).mean() * 1000
        pa = pa_mpjpe(pred, gt) * 1000
        rows.append({"family": s["family"], "mpjpe": mpjpe, "pa": pa, "reproj": p.reproj_error_px})
    # batched: `batched` people per image
    t_batch, n_batch = 0.0, 0
    for i in range(0, len(samples) - batched + 1, batched):
        arr = np.stack([s["kp25"] for s in samples[i : i + batched]])
        frame = from_array(arr, fmt="body25", image_size=(IMG, IMG), min_joints=1)
        t0 = time.perf_counter()
        fitter.fit_frame(frame, camera=cam)
        t_batch += time.perf_counter() - t0
        n_batch += len(frame.people)
        if n_batch >= 4 * batched:
            break
    return rows, t_single / len(samples), (n_batch / t_batch if t_batch else float("nan"))


def table(rows):
    lines = [f"{'family':<13} {'n':>4} {'PA-MPJPE med':>13} {'PA p90':>8} {'MPJPE med':>10} {'MPJPE p90':>10} {'reproj med px':>14}"]
    fams = [*FAMILIES, "overall"]
    for fam in fams:
        sel = [r for r in rows if fam == "overall" or r["family"] == fam]
        if not sel:
            continue
        pa = np.array([r["pa"] for r in sel])
        mp = np.array([r["mpjpe"] for r in sel])
        rp = np.array([r["reproj"] for r in sel])
        lines.append(f"{fam:<13} {len(sel):>4} {np.nanmedian(pa):>13.1f} {np.nanpercentile(pa, 90):>8.1f} "
                     f"{np.nanmedian(mp):>10.1f} {np.nanpercentile(mp, 90):>10.1f} {np.nanmedian(rp):>14.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="anny", choices=["anny", "smplx"])
    ap.add_argument("--quick", action="store_true", help="small set, finishes in under a minute")
    ap.add_argument("--people", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-shape", action="store_true", help="keep the default body shape (pose-only fit)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n = args.people or (40 if args.quick else 240)
    t0 = time.perf_counter()
    if args.backend == "smplx":
        from refsd.testing import write_synthetic_smplx

        tmp = tempfile.mkdtemp()
        write_synthetic_smplx(tmp, gender="neutral", seed=1)
        model = get_body_model("smplx", model_dir=tmp)
    else:
        model = get_body_model("anny")
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitter = BodyFitter(model, FitOptions(fit_shape=not args.no_shape))
    t_fitter = time.perf_counter() - t0
    cam = Camera.from_fov(IMG, IMG, fitter.options.fov_deg)
    samples = make_set(model, n, args.seed, cam)
    rows, s_per_person, pps = evaluate(model, fitter, samples, cam)
    print(f"backend={args.backend} people={len(rows)} model build {t_model:.1f}s, fitter set-up {t_fitter:.1f}s")
    print(table(rows))
    print(f"time per person (one per call): {s_per_person:.3f} s; batched (8 per image): {pps:.1f} people/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB")
    pa = np.array([r["pa"] for r in rows])
    mp = np.array([r["mpjpe"] for r in rows])
    rp = np.array([r["reproj"] for r in rows])
    print(json.dumps({
        "backend": args.backend, "people": len(rows),
        "reproj_px_median": round(float(np.nanmedian(rp)), 2),
        "pa_mpjpe_mm": round(float(np.nanmedian(pa)), 1),
        "pa_mpjpe_mm_p90": round(float(np.nanpercentile(pa, 90)), 1),
        "mpjpe_mm": round(float(np.nanmedian(mp)), 1),
        "mpjpe_mm_p90": round(float(np.nanpercentile(mp, 90)), 1),
        "s_per_person": round(s_per_person, 3), "people_per_s_batched": round(pps, 2),
        "peak_rss_mb": round(peak), "failed": int(np.isnan(pa).sum()),
    }))


if __name__ == "__main__":
    main()

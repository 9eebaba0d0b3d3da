"""Benchmark of the evaluation suite (refsd.evaluate) on the real photos.

For ``camera.png``, ``astronaut.png`` and ``bus.jpg`` (with RefSD's hand annotations
``samples/*.json``): the render-only pipeline's output, then :class:`refsd.evaluate.Evaluator`
on it -- every face's worst-case similarity, OKS / PCK of RefSD's detector on the output and of
the avatars' own keypoints against the annotation -- with the seconds of each measure (min over
the repeats after a warm-up). Then what the identity measure says about degradations that are
*not* pseudonymization: the photo blurred (Gaussian sigma 2/4/6/8 px), flipped + brightened,
and a different person's photo, each with the plain SFace cosine (``sharp``) and RefSD's
worst case over blurred galleries (``similarity``).

Usage: python bench/evaluate.py [--repeats N] [--threads N]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _common import timeit  # noqa: E402

from refsd.evaluate import Evaluator, avatar_pose_keypoint, check_identity, gaussian_blur  # noqa: E402
from refsd.pipeline import RefSDPipeline, load_image  # noqa: E402

CACHE = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
PHOTOS = {"camera.png": ROOT / "samples" / "camera.png", "astronaut.png": CACHE / "photos" / "astronaut.png",
          "bus.jpg": CACHE / "photos" / "bus.jpg"}


def _r(x):
    return None if x is None else round(x, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dirs = [CACHE / "detect"]
    pipe = RefSDPipeline(identity_check=False, detect_dirs=dirs, device="cpu", anny_cache_dir=CACHE / "anny")
    ev = Evaluator(model_dirs=dirs, device="cpu")
    id_only = Evaluator(pose=False, model_dirs=dirs, device="cpu")
    pose_only = Evaluator(identity=False, model_dirs=dirs, device="cpu")
    photos, results = {}, {}
    for name, path in PHOTOS.items():
        if not path.is_file():
            print(f"{name}: not fetched (make setup), skipped", file=sys.stderr)
            continue
        kp = ROOT / "samples" / (Path(name).stem + ".json")
        photo = load_image(path)
        res = pipe(photo, kp, seed=0)
        photos[name] = photo
        avatar = avatar_pose_keypoint(res.fit, res.people)
        e = ev(photo, res.image, kp, avatar_keypoints=avatar)
        t_id = timeit(lambda p=photo, r=res, k=kp: id_only(p, r.image, k), args.repeats) / 1e3
        t_pose = timeit(lambda p=photo, r=res, k=kp: pose_only(p, r.image, k), args.repeats) / 1e3
        row = {
            "size": [int(photo.shape[1]), int(photo.shape[0])], "people": len(e.pose),
            "faces": [{"person": f.person, "similarity": _r(f.similarity), "sharp": _r(f.similarity_sharp),
                       "found_in_output": f.found_in_output} for f in e.identity.faces],
            "leaks": e.identity.leaks,
            "oks_output": [round(p.oks, 3) for p in e.pose], "pck01_output": [round(p.pck["0.1"], 3) for p in e.pose],
            "oks_avatar": [round(p.oks, 3) for p in e.avatar_pose],
            "pck01_avatar": [round(p.pck["0.1"], 3) for p in e.avatar_pose],
            "s_identity": round(t_id, 3), "s_pose": round(t_pose, 3),
        }
        results[name] = row
        print(name, json.dumps(row), file=sys.stderr)
    degrade = {}
    for name in ("camera.png", "astronaut.png"):
        if name not in photos:
            continue
        p = photos[name]
        cases = {f"blur {s}": gaussian_blur(p, s) for s in (2.0, 4.0, 6.0, 8.0)}
        cases["flipped + brightened"] = (p.flip(1) * 1.15 + 0.05).clamp(0, 1)
        other = "astronaut.png" if name == "camera.png" else "camera.png"
        if other in photos:
            cases[f"another person ({other})"] = photos[other]
        degrade[name] = {}
        for case, img in cases.items():
            r = check_identity(p, img, analyzer=ev.faces())
            f = max(r.faces, key=lambda x: x.similarity) if r.faces else None
            degrade[name][case] = None if f is None else {
                "similarity": _r(f.similarity), "sharp": _r(f.similarity_sharp), "leak": f.leak}
            print(name, case, json.dumps(degrade[name][case]), file=sys.stderr)
    print(json.dumps({"threads": args.threads, "photos": results, "degradations": degrade}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

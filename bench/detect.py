"""Benchmark of the person detector (refsd.detect.PersonDetector) on the real photos.

Photos: ``samples/camera.png`` (512 x 512, one man whose long coat hides his hips),
``astronaut.png`` (512 x 512, upper body) and ``bus.jpg`` (810 x 1080, two full-body people and
two cut by the frame), fetched by ``scripts/fetch_photos.py``, with RefSD's hand annotations
``samples/*.json``. For each landmark model (lite, full, heavy, those whose files are present):

* ``people``: how many people were found; ``found_annotated``: how many of the annotated
  people were matched by a detection (6+ common joints);
* ``median_px``: per annotated person, the median COCO-18 joint error of the best-matching
  detection, and ``median_rel`` the same over the height of the annotated joints;
* ``ms``: the whole call (min over the repeats after a warm-up), and ``ms_per_person``;
* on camera.png, ``coat_in_mask``: the fraction of the man's dark pixels (coat, hair, gloves)
  inside the detector's mask (> 0.5), and ``coat_in_region``: inside the region that RefSD
  Person Mask makes from the fitted body, colour growth and the detector's mask
  (``coat_in_region_colour_only``: without the mask).

Usage: python bench/detect.py [--quick] [--repeats N] [--threads N] [--device cpu|cuda]
(``--quick``: the full model only). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import PHOTOS, photo, timeit  # noqa: E402

from refsd.detect import DetectModelsMissing, PersonDetector  # noqa: E402
from refsd.keypoints import load_pose_keypoint_file, matched_errors, parse_pose_keypoint  # noqa: E402


def errors(name: str, img: np.ndarray, dets) -> list[tuple[float, float]]:
    ann = parse_pose_keypoint(load_pose_keypoint_file(ROOT / "samples" / (Path(name).stem + ".json")),
                              (img.shape[1], img.shape[0]))[0]
    return matched_errors(ann, dets.frame())




def coat(det_mask: torch.Tensor, img: np.ndarray) -> dict:
    from refsd.body import get_body_model
    from refsd.composite import extend_to_person, person_mask
    from refsd.fit import BodyFitter
    from refsd.fit.api import fit_pose_keypoint
    from refsd.render.scene import fit_person_masks

    photo_t = torch.from_numpy(img).float() / 255
    dark = photo_t.mean(-1) < 0.2
    dark[:, 360:] = False  # the scene right of the tripod
    dark[:60] = False  # the sky
    dark[300:, 225:] = False  # the tripod's legs
    model = get_body_model("anny")
    frames = json.loads((ROOT / "samples" / "camera.json").read_text())
    fit = fit_pose_keypoint(BodyFitter(model), frames, [(512, 512)])[0]
    sil = fit_person_masks(model, fit).cpu()
    m = det_mask.cpu()
    colour, _ = person_mask(extend_to_person(photo_t, sil, 0.25), None, 0.06)
    both, _ = person_mask(extend_to_person(photo_t, sil, 0.25, segmentation=m), m, 0.06)
    return {
        "coat_in_mask": round(float((m > 0.5)[dark].float().mean()), 4),
        "coat_in_region": round(float(both[dark].mean()), 4),
        "coat_in_region_colour_only": round(float(colour[dark].mean()), 4),
        "region_fraction": round(float(both.mean()), 3),
        "region_fraction_colour_only": round(float(colour.mean()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    images = {n: photo(n) for n in PHOTOS}
    result = {"device": args.device, "threads": torch.get_num_threads(), "cpu": os.uname().machine, "models": {}}
    for variant in ("full",) if args.quick else ("lite", "full", "heavy"):
        try:
            det = PersonDetector(variant, device=args.device)
        except DetectModelsMissing as e:
            print(f"{variant}: skipped ({e})")
            continue
        per = {}
        for name, img in images.items():
            d = det(img)
            ms = timeit(lambda img=img, det=det: det(img), args.repeats, sync)
            errs = errors(name, img, d)
            per[name] = {
                "size": [img.shape[1], img.shape[0]],
                "people": d.num_people,
                "found_annotated": f"{sum(math.isfinite(e) for e, _ in errs)}/{len(errs)}",
                "median_px": [round(e, 1) for e, _ in errs],
                "median_rel": [round(e / h, 3) for e, h in errs],
                "scores": [p["score"] for p in d.scores()],
                "ms": round(ms, 1),
                "ms_per_person": round(ms / max(1, d.num_people), 1),
            }
            print(variant, name, json.dumps(per[name]))
            if variant == "full" and name == "camera.png":
                result["camera_coat"] = coat(d.union_mask(), img)
                print("camera coat", json.dumps(result["camera_coat"]))
        result["models"][variant] = per
    print(json.dumps(result))


if __name__ == "__main__":
    main()

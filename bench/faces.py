"""Benchmark of the face pipeline (refsd.detect.FaceAnalyzer: YuNet + SFace in torch) on the real photos.

Photos: ``samples/camera.png`` (512 x 512, the cameraman), ``astronaut.png`` (512 x 512) and
``bus.jpg`` (810 x 1080, two faces), fetched by ``scripts/fetch_photos.py``. Reports:

* ``yunet_ms``: one ``detect()`` call per photo at ``max_side`` 320 and 640 (and the photo's
  own size), min over the repeats after a warm-up, with the faces found and their scores;
* ``sface_ms_per_face``: ``embed()`` (alignment + SFace) for 1 and 8 faces at once, per face;
* ``similarity``: the cosine of SFace features (same identity: >= 0.363) for the same face
  flipped and 25 % brighter, for every pair of different people, and for the same face under
  Gaussian blur sigma 2 / 4 / 6 (PIL's GaussianBlur; aligned at the blurred photo's own landmarks when YuNet still
  finds the face, and at the sharp photo's landmarks), with whether YuNet still detects it.

Usage: python bench/faces.py [--repeats N] [--threads N] [--device cpu|cuda]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import PHOTOS, photo, timeit  # noqa: E402

from refsd.detect import SFACE_COSINE_THRESHOLD, FaceAnalyzer  # noqa: E402


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.array(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    fa = FaceAnalyzer(device=args.device)
    images = {n: photo(n) for n in PHOTOS}
    result = {"device": args.device, "threads": torch.get_num_threads(), "cpu": os.uname().machine,
              "score_threshold": fa.score_threshold, "yunet_ms": {}, "faces": {}}
    for name, img in images.items():
        per = {}
        for side in (320, 640, max(img.shape[:2])):
            faces = fa.detect(img, max_side=side)
            ms = timeit(lambda img=img, side=side: fa.detect(img, max_side=side), args.repeats, sync)
            per[str(side)] = {"ms": round(ms, 1), "faces": len(faces), "scores": [round(f.score, 3) for f in faces]}
        result["yunet_ms"][name] = per
        print("yunet", name, json.dumps(per))

    img = images["astronaut.png"]
    face = fa.detect(img)[0]
    sface = {}
    for n in (1, 8):
        lms = np.repeat(face.landmarks[None], n, 0)
        sface[str(n)] = round(timeit(lambda lms=lms: fa.embed(img, lms), args.repeats, sync) / n, 1)
    result["sface_ms_per_face"] = sface
    print("sface ms per face", json.dumps(sface))

    feats, owners = [], []
    for name, img in images.items():
        faces = fa.detect(img)
        result["faces"][name] = [{"score": round(f.score, 3), "box": [round(v, 1) for v in f.box]} for f in faces]
        feats.append(fa.embed(img, faces))
        owners += [f"{name}#{i}" for i in range(len(faces))]
    feats = torch.cat(feats)
    sim = fa.similarity(feats, feats).cpu().numpy()
    different = {f"{owners[i]} vs {owners[j]}": round(float(sim[i, j]), 3)
                 for i in range(len(owners)) for j in range(i + 1, len(owners))}
    same, blurred = {}, {}
    for name in ("astronaut.png", "camera.png"):
        img = images[name]
        sharp = fa.detect(img)[0]
        ref = fa.embed(img, sharp)
        changed = np.clip(img[:, ::-1].astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
        found = fa.detect(changed)
        same[name] = round(float(fa.similarity(ref, fa.embed(changed, found[:1]))), 3) if found else None
        for sigma in (2, 4, 6):
            b = blur(img, sigma)
            found = fa.detect(b)
            blurred[f"{name} sigma {sigma}"] = {
                "detected": bool(found), "score": round(found[0].score, 3) if found else None,
                "cos_own_landmarks": round(float(fa.similarity(ref, fa.embed(b, found[:1]))), 3) if found else None,
                "cos_sharp_landmarks": round(float(fa.similarity(ref, fa.embed(b, sharp))), 3),
            }
    result["similarity"] = {"threshold": SFACE_COSINE_THRESHOLD, "same_face_flipped_brightened": same,
                            "different_people": different, "gaussian_blur": blurred}
    print("similarity", json.dumps(result["similarity"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

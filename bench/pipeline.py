"""Benchmark of the library pipeline (refsd.pipeline): seconds per image and per person by stage.

Stages (:data:`refsd.pipeline.STAGES`): ``fit`` (keypoints -> bodies), ``render`` (attributes,
avatars and every conditioning map), ``remove`` (person region + model-free removal),
``refine`` (diffusers img2img with depth + OpenPose ControlNets over all person crops,
including text encoding and the VAE), ``composite`` (composite on the cleaned photo, crops,
paste, privacy check). ``share_outside_diffusion`` is the part of the wall time spent in
RefSD's own stages (everything but ``refine``).

Scenes: the sample photo (512x512, 1 person, hand-annotated keypoints) and a 1024x512 scene
with 2 people (the photo and its mirror image side by side).

Modes:

* default / ``--quick``: the tiny random models of :mod:`refsd.testing` (written to a
  temporary folder and loaded through the public loading path), 512x768 crops, 20 steps,
  denoise 0.6, on the CPU (``--device`` to change). ``--quick``: one timed run per scene
  (under a minute on a 2-core CPU); otherwise ``--repeats`` (3).
* ``--full-size``: random-weight models with every tensor of SD1.5 and of two SD1.5
  ControlNets, built in memory, fp16 on CUDA (the target: RefSD's own stages <= 5% of the
  wall time, <= 1.0 s refine per person on an H100). Refuses to run on a CPU unless
  ``--allow-cpu`` (hours there).

Usage: python bench/pipeline.py [--quick] [--full-size] [--repeats N] [--device cpu|cuda] [--threads N]
The last line of output is one JSON object with ``s_per_image``, ``s_per_person``, ``s_fit``,
``s_render``, ``s_remove``, ``s_refine``, ``s_composite`` (mean seconds per image),
``per_person`` (the same per person), ``share_outside_diffusion``, ``device`` and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.pipeline import STAGES, RefSDPipeline  # noqa: E402


def scenes() -> list[tuple[str, object, list]]:
    """(name, PIL image, POSE_KEYPOINT) of the benchmark scenes."""
    from PIL import Image, ImageOps

    photo = Image.open(ROOT / "samples" / "camera.png").convert("RGB")
    kp = json.loads((ROOT / "samples" / "camera.json").read_text())
    w, h = photo.size
    wide = Image.new("RGB", (2 * w, h))
    wide.paste(photo, (0, 0))
    wide.paste(ImageOps.mirror(photo), (w, 0))
    first = kp[0]["people"][0]["pose_keypoints_2d"]
    mirrored = list(first)
    for i in range(0, len(mirrored), 3):
        if mirrored[i + 2] > 0:
            mirrored[i] = 2 * w - mirrored[i]
    kp2 = [{"canvas_width": 2 * w, "canvas_height": h,
            "people": [{"pose_keypoints_2d": first}, {"pose_keypoints_2d": mirrored}]}]
    return [("512x512_1p", photo, kp), ("1024x512_2p", wide, kp2)]


def tiny_refiner(folder: Path, device: str, dtype, batch_size: int):
    from refsd.refine import DiffusersRefiner
    from refsd.testing import write_test_models

    paths = write_test_models(folder, controls=("depth", "openpose"), single_file=False)
    cn = paths["controlnets"]
    return DiffusersRefiner(paths["model"], {"depth": cn["depth"], "openpose": cn["openpose"]}, device=device,
                            dtype=dtype, batch_size=batch_size)


def full_size_refiner(folder: Path, device: str, dtype, batch_size: int):
    """SD1.5-sized random UNet/VAE/CLIP + 2 SD1.5-sized ControlNets, built in memory on ``device``."""
    from diffusers import MultiControlNetModel, StableDiffusionControlNetImg2ImgPipeline
    from transformers import CLIPTokenizer

    from refsd.refine import DiffusersRefiner
    from refsd.testing import build_controlnet, build_sd15, write_clip_tokenizer

    write_clip_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    parts = build_sd15("full", seed=0, device=device, dtype=dtype)
    nets = [build_controlnet(parts["unet"], "full", seed=s) for s in (1, 2)]
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        **parts, tokenizer=tokenizer, controlnet=MultiControlNetModel(nets), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    return DiffusersRefiner(pipe=pipe, controlnets=("depth", "openpose"), device=device, dtype=dtype,
                            batch_size=batch_size)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one timed run per scene (under a minute on 2 CPU cores)")
    ap.add_argument("--full-size", action="store_true", help="SD1.5-sized random models, fp16 (a GPU benchmark)")
    ap.add_argument("--allow-cpu", action="store_true", help="let --full-size run on a CPU (very slow)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="default: cuda for --full-size, else cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--denoise", type=float, default=0.6)
    ap.add_argument("--crop", default="512x768")
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if args.full_size else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/pipeline.py: CUDA is not available; use --device cpu (and --allow-cpu with --full-size)")
    if args.full_size and not device.startswith("cuda") and not args.allow_cpu:
        sys.exit("bench/pipeline.py: --full-size on a CPU takes many minutes per image; add --allow-cpu to insist")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    crop = tuple(int(x) for x in args.crop.lower().split("x"))
    repeats = 1 if args.quick else max(1, args.repeats)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="refsd-bench-") as tmp:
        make = full_size_refiner if args.full_size else tiny_refiner
        t0 = time.perf_counter()
        refiner = make(Path(tmp), device, dtype, args.batch_size)
        s_load = time.perf_counter() - t0
        common = dict(refiner=refiner, device=device, crop_size=crop, denoise=args.denoise)
        pipe = RefSDPipeline(steps=args.steps, **common)
        t0 = time.perf_counter()
        pipe.warm_up()  # the body model and the fitter's keypoint proxy (once per process)
        name, photo, kp = scenes()[0]
        RefSDPipeline(steps=1, **common)(photo, kp, seed=0)  # warm every code path once
        s_warm = time.perf_counter() - t0

        rows = []
        for name, image, kp in scenes():
            for r in range(repeats):
                t0 = time.perf_counter()
                res = pipe(image, kp, seed=100 + r)
                wall = time.perf_counter() - t0
                rows.append({"scene": name, "people": res.num_people, "wall": wall, **res.timings,
                             "leak_ratio": res.leak_ratio})
                print(json.dumps({"scene": name, "repeat": r, "people": res.num_people, "s_wall": round(wall, 4),
                                  **{f"s_{k}": round(v, 4) for k, v in res.timings.items()},
                                  "leak_ratio": res.leak_ratio}), flush=True)
    n_img = len(rows)
    n_people = sum(r["people"] for r in rows)
    wall = sum(r["wall"] for r in rows)
    out = {
        "s_per_image": round(wall / n_img, 4),
        "s_per_person": round(wall / max(n_people, 1), 4),
        **{f"s_{k}": round(sum(r[k] for r in rows) / n_img, 4) for k in STAGES},
        "per_person": {k: round(sum(r[k] for r in rows) / max(n_people, 1), 4) for k in STAGES},
        "share_outside_diffusion": round(1 - sum(r["refine"] for r in rows) / wall, 4),
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else f"cpu ({os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} threads)",
        "models": "full-size SD1.5 + 2 ControlNets (random)" if args.full_size else "tiny random (refsd.testing)",
        "dtype": str(dtype).replace("torch.", ""), "crop": list(crop), "steps": args.steps, "denoise": args.denoise,
        "images": n_img, "people": n_people, "max_leak_ratio": max(r["leak_ratio"] for r in rows),
        "s_load_models": round(s_load, 2), "s_warm_up": round(s_warm, 2),
        "s_total": round(time.perf_counter() - t_start, 2), "quick": args.quick,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

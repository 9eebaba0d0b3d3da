"""Before/after contact sheet of the render-only pipeline on three real photos.

For ``samples/camera.png`` (scikit-image, CC0), ``astronaut.png`` (scikit-image, public
domain) and ``bus.jpg`` (ultralytics, AGPL; both fetched by ``scripts/fetch_photos.py``
into the git-ignored cache, never committed), with the hand-annotated keypoints
``samples/<name>.json``, this runs :class:`refsd.pipeline.RefSDPipeline` render-only
(``refiner=None``) and writes to ``OUTPUT/contact_sheet/``:

* ``NAME_before.png``      the photo;
* ``NAME_region.png``      the replaced region (white) as a mask;
* ``NAME_overlay.png``     the region tinted over the photo, its outline and the keypoints;
* ``NAME_background.png``  the photo with the people removed (model-free fill of the region);
* ``NAME_fit.png``         the fitted bodies over the photo (for checking the fit);
* ``NAME_after.png``       the pipeline's output;

plus ``OUTPUT/contact_sheet.png``: one row per photo, columns before | region overlay |
background (person removed) | after, labelled. Paths, fit quality, leak ratio and timings
are printed. The Anny body cache is reused from ``$REFSD_CACHE_DIR/anny``.

Usage: python scripts/contact_sheet.py [--output output] [--photos DIR] [--seed 0] [--only NAME ...] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import fetch_photos  # noqa: E402

PHOTOS = ("camera.png", "astronaut.png", "bus.jpg")
COLUMNS = ("before", "region overlay", "background (person removed)", "after")
CELL = 440  # each cell fits in CELL x CELL pixels
# COCO-18 limbs for the keypoint drawing on the overlay
LIMBS = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _pil(t):
    from PIL import Image

    from refsd.pipeline import to_uint8

    return Image.fromarray(to_uint8(t))


def _mask_pil(m):
    from PIL import Image

    return Image.fromarray((m.detach().float().cpu().clamp(0, 1).numpy() * 255).round().astype("uint8"))


def region_overlay(image, region, keypoints_json: Path):
    """The photo with the region tinted red, its outline in yellow and the annotated keypoints."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    img = image.detach().float().cpu()
    m = (region.detach().float().cpu() > 0.5)
    tint = torch.tensor([1.0, 0.15, 0.15])
    out = torch.where(m[..., None], 0.5 * img + 0.5 * tint, img)
    # outline: region pixels with a non-region 4-neighbour
    mm = m.numpy()
    edge = mm & ~(np.roll(mm, 1, 0) & np.roll(mm, -1, 0) & np.roll(mm, 1, 1) & np.roll(mm, -1, 1))
    arr = (out.numpy() * 255).round().astype("uint8")
    arr[edge] = (255, 230, 0)
    pil = Image.fromarray(arr)
    d = ImageDraw.Draw(pil)
    H, W = mm.shape
    r = max(2, round(min(H, W) / 160))
    for person in json.loads(keypoints_json.read_text())[0]["people"]:
        k = person["pose_keypoints_2d"]
        pts = [(k[3 * i], k[3 * i + 1], k[3 * i + 2]) for i in range(len(k) // 3)]
        for a, b in LIMBS:
            if pts[a][2] > 0 and pts[b][2] > 0:
                d.line([pts[a][:2], pts[b][:2]], fill=(0, 255, 255), width=max(1, r // 2))
        for x, y, c in pts:
            if c > 0:
                d.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 255), outline=(0, 0, 0))
    return pil


def run_photo(pipe, name: str, photo: Path, keypoints: Path, out_dir: Path, seed: int) -> dict:
    from refsd.render.overlay import render_fit_overlay

    t0 = time.perf_counter()
    res = pipe(photo, keypoints, seed=seed)
    wall = time.perf_counter() - t0
    stem = Path(name).stem
    from refsd.pipeline import load_image

    image = load_image(photo)
    files = {
        "before": out_dir / f"{stem}_before.png",
        "region": out_dir / f"{stem}_region.png",
        "overlay": out_dir / f"{stem}_overlay.png",
        "background": out_dir / f"{stem}_background.png",
        "fit": out_dir / f"{stem}_fit.png",
        "after": out_dir / f"{stem}_after.png",
    }
    _pil(image).save(files["before"])
    _mask_pil(res.region).save(files["region"])
    region_overlay(image, res.region, keypoints).save(files["overlay"])
    _pil(res.background).save(files["background"])
    model = pipe.body.fitter(pipe.device, __import__("torch").float32).model
    _pil(render_fit_overlay(image, model, res.fit)).save(files["fit"])
    res.pil().save(files["after"])
    return {"name": name, "files": files, "wall": wall, "timings": res.timings, "fit": res.fit_summary(),
            "leak_ratio": res.leak_ratio, "privacy_passed": res.privacy_passed, "notes": res.notes,
            "region_fraction": float(res.region.float().mean())}


def build_sheet(rows: list[dict], path: Path) -> None:
    from PIL import Image, ImageDraw

    pad, head, side = 12, 44, 170
    title_font, font, small = _font(26), _font(22), _font(17)
    width = side + len(COLUMNS) * (CELL + pad) + pad
    height = head + len(rows) * (CELL + pad) + pad
    sheet = Image.new("RGB", (width, height), (28, 28, 30))
    d = ImageDraw.Draw(sheet)
    for j, col in enumerate(COLUMNS):
        x = side + pad + j * (CELL + pad)
        d.text((x + CELL // 2, head // 2), col, fill=(240, 240, 240), font=title_font, anchor="mm")
    for i, row in enumerate(rows):
        y = head + pad + i * (CELL + pad)
        fit = row["fit"]
        lines = [Path(row["name"]).name, f"{fit['people']} fitted", "rms px " + ", ".join(map(str, fit["rms_px"])),
                 ", ".join(fit["quality"]), f"leak {row['leak_ratio']:.3f}",
                 "privacy ok" if row["privacy_passed"] else "PRIVACY FAIL", f"{row['wall']:.1f} s"]
        ty = y + 8
        for k, line in enumerate(lines):
            d.text((pad, ty), line, fill=(255, 255, 255) if k == 0 else (200, 200, 200), font=font if k == 0 else small)
            ty += 30 if k == 0 else 24
        for j, key in enumerate(("before", "overlay", "background", "after")):
            im = Image.open(row["files"][key]).convert("RGB")
            s = min(CELL / im.width, CELL / im.height)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
            x = side + pad + j * (CELL + pad)
            sheet.paste(im, (x + (CELL - im.width) // 2, y + (CELL - im.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=ROOT / "output", help="output folder (default output/)")
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder with astronaut.png and bus.jpg (default $REFSD_CACHE_DIR/photos; fetched when missing)")
    ap.add_argument("--seed", type=int, default=0, help="image seed for the sampled attributes")
    ap.add_argument("--only", nargs="*", choices=PHOTOS, help="run only these photos")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 is much faster on a shared 2-core machine whose other core is busy)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from refsd.pipeline import RefSDPipeline

    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    out_dir = args.output / "contact_sheet"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pipe = RefSDPipeline(refiner=None, anny_cache_dir=cache / "anny")
    pipe.warm_up()
    print(f"body model ready in {time.perf_counter() - t0:.1f} s")
    rows = []
    for name in args.only or PHOTOS:
        photo = fetch_photos.photo_path(name, args.photos)
        keypoints = ROOT / "samples" / (Path(name).stem + ".json")
        row = run_photo(pipe, name, photo, keypoints, out_dir, args.seed)
        rows.append(row)
        tm = " ".join(f"{k} {v:.2f}" for k, v in row["timings"].items())
        print(f"{name}: {row['wall']:.2f} s ({tm}); fit {row['fit']}; region {100 * row['region_fraction']:.1f} % "
              f"of the image; leak {row['leak_ratio']:.4f} ({'passed' if row['privacy_passed'] else 'FAILED'})")
        for note in row["notes"]:
            print(f"  note: {note}")
        for f in row["files"].values():
            print(f"  {f}")
    sheet = args.output / "contact_sheet.png"
    build_sheet(rows, sheet)
    print(f"contact sheet: {sheet} ({time.perf_counter() - t0:.1f} s in all)")
    return 0 if all(r["privacy_passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

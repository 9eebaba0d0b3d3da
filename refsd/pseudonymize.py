"""``refsd pseudonymize``: the RefSD pipeline over images or folders, without ComfyUI.

::

    refsd pseudonymize photos/ -o out/ --seed 7 \\
        --model models/sd15 --controlnet depth=models/cn-depth --controlnet openpose=models/cn-openpose
    refsd pseudonymize photos/ -o out/ --refiner none              # render-only, no diffusion
    refsd pseudonymize photos/ -o out/ --model ... --ray           # local Ray, one worker per CPU/GPU
    refsd pseudonymize photos/ -o out/ --model ... --ray auto      # an existing Ray cluster

Keypoints: ``<stem>.json`` (POSE_KEYPOINT) beside each image, or under ``--keypoints DIR``
with the same relative path (:func:`refsd.manifest.keypoints_for`). Outputs, laid out as
``refsd run`` lays them out: ``OUT/<flat stem>/pseudonymized.png`` (no metadata of the input
is copied), with ``--save-extras`` also ``region.png`` (the replaced region) and
``body_fit.json``, and ``OUT/manifest.jsonl`` in :mod:`refsd.manifest`'s schema, plus
``timings`` and ``notes``. An image failing the privacy check (leak ratio over ``--max-leak``)
is an ``error`` and its outputs are not kept (``--keep-failed`` keeps them). A run is resumable: images whose record is ``ok`` with every
output present are not redone. Per-image problems are recorded, never fatal: a non-image
file or an image without keypoints is ``skipped`` with the reason, a corrupt image or a
failing stage is an ``error``. People whose keypoints could not be fitted would stay
recognisable, so such an image is an ``error`` (no output) unless ``--allow-unfitted``.

With ``--ray`` the same per-image function runs in Ray Data actors (the models load once
per actor; one GPU per actor when the cluster has GPUs, else ``--ray-cpus-per-worker``
CPUs); the driver writes the outputs and the manifest, so the results are the same files
as a single-process run with the same seed and the same ``--threads`` (torch's CPU kernels
add up in a thread-dependent order, so the thread count is part of bit-exactness; on GPUs,
the same GPU model and software). The input (and ``--keypoints``) folder must be
readable at the same path on every Ray node.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import RefSDError
from .manifest import IMAGE_SUFFIXES, Manifest, image_seed, keypoints_for, list_images, output_stem, privacy_error

__all__ = ["add_parser", "main", "collect_inputs", "build_config", "process_one", "run_local", "run_ray"]

OUTPUT_NAME = "pseudonymized.png"  # as `refsd run` names refsd_full's output: <stem>/<label>.png


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _pairs(values: list[str] | None, what: str, convert: Callable[[str], Any] = str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values or []:
        name, sep, rest = v.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise RefSDError(f"{what} {v!r}: write NAME=VALUE (e.g. depth=/models/control_depth)")
        try:
            out[name.strip()] = convert(rest.strip())
        except ValueError as e:
            raise RefSDError(f"{what} {v!r}: {e}") from e
    return out


def _crop_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"crop size {text!r}: write WIDTHxHEIGHT, e.g. 512x768") from e
    return w, h


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pseudonymize", help="replace the people in images with synthetic humans (diffusers; optionally on Ray)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (outputs + manifest.jsonl)")
    p.add_argument("--keypoints", type=Path, default=None,
                   help="folder with the POSE_KEYPOINT JSON files (same relative paths); default: beside the images")
    p.add_argument("--seed", type=int, default=0, help="run seed; each image's seed derives from it and its name")
    p.add_argument("--manifest", type=Path, default=None, help="manifest path (default OUTPUT/manifest.jsonl)")
    p.add_argument("--no-resume", action="store_true", help="redo images already finished in the manifest")
    p.add_argument("--no-recursive", action="store_true", help="only the top level of input folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--save-extras", action="store_true", help="also write the region mask and the body fit JSON")
    p.add_argument("--allow-unfitted", action="store_true",
                   help="write outputs even when some people in the keypoints could not be fitted (they stay as they are)")
    p.add_argument("--keep-failed", action="store_true", help="keep outputs of images that fail the privacy check")
    p.add_argument("--max-leak", type=float, default=0.0, help="largest leak ratio that passes the privacy check")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process/worker (default: torch's own; Ray CPU workers: their CPUs). "
                   "Outputs are bit-identical between runs with the same seed and the same --threads")

    g = p.add_argument_group("refinement (diffusers)")
    g.add_argument("--refiner", choices=["auto", "none", "diffusers"], default="auto",
                   help="auto: diffusers when --model is given, else none (render-only)")
    g.add_argument("--model", type=Path, default=None,
                   help="SD1.5 diffusers folder, or a single-file .safetensors checkpoint (then --model-config)")
    g.add_argument("--model-config", type=Path, default=None, help="local diffusers config folder of a single-file checkpoint")
    g.add_argument("--controlnet", action="append", metavar="NAME=PATH",
                   help="a ControlNet (folder or .safetensors): depth, openpose, canny or normal; repeat for several. "
                   "Default with --model: none given is an error")
    g.add_argument("--controlnet-config", action="append", metavar="NAME=DIR",
                   help="folder with config.json for a single-file ControlNet")
    g.add_argument("--control-scale", action="append", metavar="NAME=X", help="conditioning strength per ControlNet")
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    g.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="diffusion dtype (default float16 on CUDA, float32 on CPU)")
    g.add_argument("--scheduler", default="dpmpp_2m_karras",
                   choices=["dpmpp_2m_karras", "ddim", "euler", "unipc", "default"])
    g.add_argument("--inpaint", action="store_true", help="inpaint only the avatar's mask instead of img2img on the crop")
    g.add_argument("--batch-size", type=int, default=4, help="crops per diffusion call (halved on GPU out-of-memory)")
    g.add_argument("--attention-slicing", action="store_true", help="less memory, slightly slower")
    g.add_argument("--vae-tiling", action="store_true", help="decode in tiles (large crops)")
    g.add_argument("--vae-slicing", action="store_true", help="decode one crop at a time")
    g.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until used (CUDA; slower)")
    g.add_argument("--crop-size", type=_crop_size, default=(512, 768), help="per-person crop WIDTHxHEIGHT (default 512x768)")
    g.add_argument("--context", type=float, default=0.15, help="context around each person in the crop")
    g.add_argument("--denoise", type=float, default=0.6, help="diffusion strength (default 0.6)")
    g.add_argument("--steps", type=int, default=20, help="denoising steps run (default 20)")
    g.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance (default 6)")
    g.add_argument("--extra-positive", default="", help="text added to every prompt")
    g.add_argument("--extra-negative", default="", help="text added to every negative prompt")

    b = p.add_argument_group("fit, render, composite")
    b.add_argument("--body", default="anny", help="'anny' (default) or the path of an SMPL-X .npz file")
    b.add_argument("--gender", default="neutral", choices=["neutral", "female", "male"], help="Anny start body of the fit")
    b.add_argument("--fov", type=float, default=None, help="camera field of view in degrees (default 60)")
    b.add_argument("--coords", default="auto", choices=["auto", "pixels", "normalized"])
    b.add_argument("--hand-order", default="left_first", choices=["left_first", "right_first"])
    b.add_argument("--min-confidence", type=float, default=0.3)
    b.add_argument("--margin", type=float, default=0.06, help="growth of each person's region (fraction of height)")
    b.add_argument("--reach", type=float, default=0.25,
                   help="how far a silhouette may extend over adjacent person-coloured pixels first (coats, hair; "
                   "fraction of height, 0 = off)")
    b.add_argument("--feather", type=float, default=1.5)
    b.add_argument("--match-color", type=float, default=0.5)

    a = p.add_argument_group("attributes (drawn per person from the image seed)")
    a.add_argument("--attributes-json", type=Path, default=None,
                   help="an AttributeDistribution as JSON (its to_dict form); the options below then do not apply")
    a.add_argument("--female-probability", type=float, default=0.5)
    a.add_argument("--age-min", type=float, default=18.0)
    a.add_argument("--age-max", type=float, default=70.0)
    a.add_argument("--skin-tones", default="all", help="e.g. 'mst1, mst2' or 'mst3:2, mst8:1'; all = uniform")
    a.add_argument("--hair-colors", default="all")
    a.add_argument("--tops", default="all")
    a.add_argument("--bottoms", default="all")
    a.add_argument("--dresses-and-skirts", default="female", choices=["female", "anyone", "never"])

    r = p.add_argument_group("Ray")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: no value = a local Ray instance (or RAY_ADDRESS), else the cluster address")
    r.add_argument("--ray-workers", type=int, default=None,
                   help="actors (default: the cluster's GPUs, else CPUs / --ray-cpus-per-worker)")
    r.add_argument("--ray-cpus-per-worker", type=float, default=1.0)
    p.set_defaults(func=main)
    return p


def _attributes(args) -> dict:
    from .attributes import (
        BOTTOMS,
        HAIR_COLORS,
        SKIN_TONES,
        TOPS,
        AttributeDistribution,
        AttributesError,
        parse_choice_weights,
    )

    if args.attributes_json is not None:
        try:
            data = json.loads(Path(args.attributes_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise RefSDError(f"--attributes-json {args.attributes_json}: cannot read it as JSON ({e})") from e
        return AttributeDistribution.from_dict(data).to_dict()
    if args.age_min > args.age_max:
        raise AttributesError(f"--age-min ({args.age_min}) is larger than --age-max ({args.age_max}); swap them.")
    dist = AttributeDistribution(
        female_probability=args.female_probability,
        age_range=(args.age_min, args.age_max),
        skin_tones=parse_choice_weights(args.skin_tones, SKIN_TONES, "--skin-tones"),
        hair_colors=parse_choice_weights(args.hair_colors, HAIR_COLORS, "--hair-colors"),
        tops=parse_choice_weights(args.tops, TOPS, "--tops"),
        bottoms=parse_choice_weights(args.bottoms, BOTTOMS, "--bottoms"),
        dresses_and_skirts=args.dresses_and_skirts,
    )
    return dist.to_dict()


def build_config(args) -> dict:
    """The JSON-safe pipeline config (:meth:`refsd.pipeline.RefSDPipeline.from_config`) of the options."""
    from .body.anny_backend import resolve_anny_cache_dir

    refiner = args.refiner
    if refiner == "auto":
        refiner = "diffusers" if args.model is not None else "none"
    cfg: dict[str, Any] = {
        "refiner": refiner, "body": args.body, "gender": args.gender,
        "device": args.device, "crop_width": args.crop_size[0], "crop_height": args.crop_size[1],
        "context": args.context, "denoise": args.denoise, "steps": args.steps, "guidance": args.guidance,
        "margin": args.margin, "reach": args.reach, "feather": args.feather, "match_color": args.match_color, "fov_deg": args.fov,
        "coords": args.coords, "hand_order": args.hand_order, "min_confidence": args.min_confidence,
        "max_leak": args.max_leak, "extra_positive": args.extra_positive, "extra_negative": args.extra_negative,
        "attributes": _attributes(args),
    }
    if str(args.body).lower() == "anny":
        cfg["anny_cache_dir"] = str(resolve_anny_cache_dir(None))  # the driver's choice, also in Ray workers
    if refiner == "diffusers":
        if args.model is None:
            raise RefSDError("--refiner diffusers needs --model (an SD1.5 diffusers folder or .safetensors checkpoint)")
        from .diffusion import CONTROL_MAPS, check_controlnet_path, check_model_path

        controlnets = _pairs(args.controlnet, "--controlnet", lambda s: str(Path(s).expanduser().resolve()))
        if not controlnets:
            raise RefSDError("--model needs at least one --controlnet NAME=PATH (e.g. depth=... and openpose=..., "
                             "or canny=...)")
        cn_configs = _pairs(args.controlnet_config, "--controlnet-config", lambda s: str(Path(s).expanduser().resolve()))
        for name, path in controlnets.items():  # fail early, in the driver, with the expected layout
            if name not in CONTROL_MAPS:
                raise RefSDError(f"--controlnet {name}=...: unknown control; use one of {', '.join(CONTROL_MAPS)}")
            check_controlnet_path(path, cn_configs.get(name))
        check_model_path(args.model, args.model_config)
        cfg.update({
            "model": str(Path(args.model).expanduser().resolve()),
            "model_config": str(Path(args.model_config).expanduser().resolve()) if args.model_config else None,
            "controlnets": controlnets,
            "controlnet_configs": cn_configs,
            "control_scales": _pairs(args.control_scale, "--control-scale", float),
            "dtype": args.dtype, "scheduler": args.scheduler, "inpaint": args.inpaint,
            "batch_size": args.batch_size, "attention_slicing": args.attention_slicing,
            "vae_tiling": args.vae_tiling, "vae_slicing": args.vae_slicing, "cpu_offload": args.cpu_offload,
        })
    return cfg


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def collect_inputs(inputs: Iterable[Path], recursive: bool = True) -> tuple[Path, list[Path], list[tuple[str, str]]]:
    """``(root, images, not_images)``: the folder keys are relative to (the common parent of the
    inputs), the image files by suffix, and ``(key, reason)`` for other files found in input
    folders (keypoint ``.json`` files and hidden files are not listed)."""
    inputs = [Path(p).expanduser().resolve() for p in inputs]
    for p in inputs:
        if not p.exists():
            raise RefSDError(f"input {p} does not exist (give image files or folders of images)")
    bases = [p if p.is_dir() else p.parent for p in inputs]
    root = Path(os.path.commonpath([str(b) for b in bases]))
    images: list[Path] = []
    others: list[tuple[str, str]] = []
    for p in inputs:
        if p.is_dir():
            images += list_images(p, recursive=recursive)
            it = p.rglob("*") if recursive else p.iterdir()
            for f in it:
                rel = f.relative_to(p)
                if (f.is_file() and f.suffix.lower() not in IMAGE_SUFFIXES + (".json", ".jsonl")
                        and not any(part.startswith(".") for part in rel.parts)):
                    others.append((f.relative_to(root).as_posix(), f"not an image file (suffix {f.suffix or 'none'!r})"))
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        else:
            others.append((p.relative_to(root).as_posix(), f"not an image file (suffix {p.suffix or 'none'!r})"))
    seen: set[Path] = set()
    uniq = []
    for im in images:
        if im not in seen:
            seen.add(im)
            uniq.append(im)
    uniq.sort(key=lambda q: q.relative_to(root).as_posix())
    return root, uniq, sorted(set(others))


# ---------------------------------------------------------------------------
# One image (shared by the local and the Ray runs)
# ---------------------------------------------------------------------------
def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def process_one(pipe, item: dict, options: dict, worker: str) -> tuple[dict, dict[str, bytes]]:
    """Run the pipeline on one work item ``{"image": key, "path", "keypoints", "seed",
    "attempts"}``. Returns the manifest record and the output files (name relative to the
    output folder -> bytes); never raises for a per-image problem."""
    from PIL import Image

    from .pipeline import to_uint8

    t0 = time.perf_counter()
    key = item["image"]
    rec: dict[str, Any] = {"image": key, "seed": item["seed"], "attempts": item.get("attempts", 1), "worker": worker}
    try:
        res = pipe(item["path"], item["keypoints"], seed=item["seed"])
    except Exception as e:  # per-image failure: recorded, not fatal
        rec.update(status="error", error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 3))
        return rec, {}
    stem = output_stem(key)
    rec.update(
        attributes=[res.attributes_dicts()], fit=res.fit_summary(), leak_ratio=res.leak_ratio,
        privacy_passed=res.privacy_passed, timings={k: round(v, 4) for k, v in res.timings.items()},
        notes=list(res.notes),
    )
    which = "; ".join(f"person {i}: {why}" for i, why in res.unfitted)
    error = privacy_error(None if options.get("keep_failed") else res.privacy_passed, res.leak_ratio,
                          len(res.unfitted), bool(options.get("allow_unfitted")), which)
    if error:
        rec.update(status="error", error=error, seconds=round(time.perf_counter() - t0, 3))
        return rec, {}
    files = {f"{stem}/{OUTPUT_NAME}": _png(res.pil())}
    if options.get("save_extras"):
        files[f"{stem}/region.png"] = _png(Image.fromarray(to_uint8(res.region[..., None].expand(-1, -1, 3))))
        files[f"{stem}/body_fit.json"] = res.fit.to_json(indent=1).encode()
    rec.update(status="ok" if res.privacy_passed else "error", outputs=sorted(files),
               seconds=round(time.perf_counter() - t0, 3))
    if not res.privacy_passed:
        rec["error"] = f"privacy check failed: leak ratio {res.leak_ratio:.6f} (outputs kept: --keep-failed)"
    return rec, files


def _write_outputs(out_dir: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def run_local(config: dict, items: list[dict], options: dict, on_result: Callable[[dict, dict], None],
              progress: Callable[[int], None] | None = None, threads: int | None = None) -> None:
    """Run every item in this process (the models load once)."""
    import torch

    from .pipeline import RefSDPipeline

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        pipe = RefSDPipeline.from_config(config)
        pipe.warm_up()
        worker = f"local:{os.getpid()}"
        for item in items:
            rec, files = process_one(pipe, item, options, worker)
            on_result(rec, files)
            if progress is not None:
                progress(1)
    finally:
        torch.set_num_threads(before)  # callers in the same process keep their setting


class _RayWorker:
    """A Ray Data actor: builds the pipeline once, then maps batches of work items."""

    def __init__(self, config: dict, options: dict, threads: int | None = None):
        import torch

        from .pipeline import RefSDPipeline

        if threads:
            torch.set_num_threads(int(threads))
        cfg = dict(config)
        if cfg.get("device") is None:
            cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe = RefSDPipeline.from_config(cfg)
        self.pipe.warm_up()
        self.options = options
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()[:8]
        except Exception:  # not inside Ray (direct use)
            node = "local"
        self.worker = f"ray:{node}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        records, blobs = [], []
        for payload in batch["item"]:
            rec, files = process_one(self.pipe, json.loads(str(payload)), self.options, self.worker)
            records.append(json.dumps(rec))
            blobs.append(json.dumps({k: base64.b64encode(v).decode("ascii") for k, v in files.items()}))
        return {"record": np.array(records, dtype=object), "files": np.array(blobs, dtype=object)}


def run_ray(config: dict, items: list[dict], options: dict, on_result: Callable[[dict, dict], None],
            address: str | None = "local", workers: int | None = None, cpus_per_worker: float = 1.0,
            progress: Callable[[int], None] | None = None, threads: int | None = None) -> None:
    """Map :func:`process_one` over the items with Ray Data actors; results come back to this
    process (which writes files and manifest). Uses a running Ray session if there is one,
    else connects to ``address`` (``"local"``/None: a new local instance, or RAY_ADDRESS)."""
    try:
        import ray
    except ImportError as e:
        raise RefSDError("--ray needs Ray Data: pip install 'refsd[ray]'") from e
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the CLI has its own progress bar
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address in (None, "local"):
            ray.init(**kw)
        else:
            ray.init(address=address, **kw)
        started = True
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        use_gpu = gpus > 0 and str(config.get("device") or "cuda").startswith("cuda")
        if use_gpu:
            n = workers or gpus
            remote = {"num_gpus": 1, "num_cpus": cpus_per_worker}
        else:
            n = workers or max(1, int(res.get("CPU", 1) // max(cpus_per_worker, 1e-6)))
            remote = {"num_gpus": 0, "num_cpus": cpus_per_worker}
            config = dict(config, device=config.get("device") or "cpu")
        n = max(1, min(n, len(items)))
        ds = ray.data.from_items([{"item": json.dumps(it)} for it in items])
        if threads is None and not use_gpu:
            threads = max(1, int(cpus_per_worker))
        kwargs = dict(fn_constructor_kwargs={"config": config, "options": options, "threads": threads},
                      batch_size=1, batch_format="numpy", **remote)
        kwargs["compute"] = ray.data.ActorPoolStrategy(size=n)
        out = ds.map_batches(_RayWorker, **kwargs)
        try:
            for row in out.iter_rows():
                rec = json.loads(row["record"])
                files = {k: base64.b64decode(v) for k, v in json.loads(row["files"]).items()}
                on_result(rec, files)
                if progress is not None:
                    progress(1)
        except RefSDError:
            raise
        except Exception as e:  # an actor failed to start (model loading) or the cluster went away
            raise RefSDError(f"the Ray run stopped: {type(e).__name__}: {e}; finished images are in the manifest, "
                             "run the same command again to resume") from e
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def pseudonymize(args) -> dict[str, int]:
    """The command's work; returns the manifest summary (raises RefSDError on bad settings)."""
    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = build_config(args)
    root, images, others = collect_inputs(args.inputs, recursive=not args.no_recursive)
    kp_root = Path(args.keypoints).expanduser().resolve() if args.keypoints else None
    if kp_root is not None and not kp_root.is_dir():
        raise RefSDError(f"--keypoints {kp_root} is not a folder")
    manifest = Manifest(args.manifest or out_dir / "manifest.jsonl", out_dir)
    manifest.compact()
    options = {"allow_unfitted": args.allow_unfitted, "keep_failed": args.keep_failed,
               "save_extras": args.save_extras}
    keys_in_order: list[str] = []
    items: list[dict] = []
    for key, reason in others:
        keys_in_order.append(key)
        if not manifest.records.get(key, {}).get("status") == "skipped":
            manifest.write({"image": key, "status": "skipped", "error": reason})
    for path in images:
        key = path.relative_to(root).as_posix()
        keys_in_order.append(key)
        seed = image_seed(args.seed, key)
        if not args.no_resume and manifest.is_done(key) and manifest.records[key].get("seed") == seed:
            continue
        kp = keypoints_for(path, root, kp_root)
        if kp is None:
            where = f"under {kp_root}" if kp_root else "beside the image"
            manifest.write({"image": key, "status": "skipped", "seed": seed,
                            "error": f"no keypoint file: expected {Path(key).with_suffix('.json').as_posix()} {where}"})
            continue
        prev = manifest.records.get(key)
        attempts = (prev.get("attempts", 1) + 1) if prev and prev.get("status") == "error" else 1
        items.append({"image": key, "path": str(path), "keypoints": str(kp), "seed": seed, "attempts": attempts})

    bar = None
    if items and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="image", desc="pseudonymize", file=sys.stderr)

    def on_result(rec: dict, files: dict[str, bytes]) -> None:
        _write_outputs(out_dir, files)
        manifest.write(rec)
        if bar is not None and rec.get("status") != "ok":
            bar.write(f"{rec['image']}: {rec['status']}: {rec.get('error')}")

    step = bar.update if bar is not None else None
    try:
        if not items:
            pass
        elif args.ray is not None:
            run_ray(config, items, options, on_result, address=args.ray, workers=args.ray_workers,
                    cpus_per_worker=args.ray_cpus_per_worker, progress=step, threads=args.threads)
        else:
            run_local(config, items, options, on_result, progress=step, threads=args.threads)
    finally:
        if bar is not None:
            bar.close()
        manifest.compact(keep=sorted(keys_in_order))
    return manifest.summary()


def main(args) -> int:
    try:
        summary = pseudonymize(args)
    except RefSDError as e:
        print(f"refsd pseudonymize: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary, "output": str(Path(args.output).resolve())}))
    return 0 if summary.get("error", 0) == 0 else 1

"""``refsd pseudonymize``: the RefSD pipeline over images or folders, without ComfyUI.

::

    refsd pseudonymize photos/ -o out/ --seed 7 \\
        --model models/sd15 --controlnet depth=models/cn-depth --controlnet openpose=models/cn-openpose
    refsd pseudonymize photos/ -o out/ --refiner none              # render-only, no diffusion
    refsd pseudonymize photos/ -o out/ --model ... --ray           # local Ray, one worker per CPU/GPU
    refsd pseudonymize photos/ -o out/ --model ... --ray auto      # an existing Ray cluster

Videos (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``, ``.m4v``) are pseudonymized chunk by
chunk with the people tracked across frames, one replacement per tracked person
(:mod:`refsd.cli.video`): ``OUT/<stem>/pseudonymized.mp4`` at the input's frame rate,
``--chunk-frames``, ``--save-frames``; without sound unless ``--keep-audio`` (a voice identifies
a person too; the record's ``audio`` says ``copied``, ``none``, ``dropped`` or ``failed``).
A finished video whose ``audio`` does not match ``--keep-audio`` is redone.

Keypoints: ``<stem>.json`` (POSE_KEYPOINT) beside each image, or under ``--keypoints DIR``
with the same relative path (:func:`refsd.comfyapi.manifest.keypoints_for`). ``--people``:
``auto`` (default) uses that file when the image has one and finds the people with the person
detector (:class:`refsd.detect.PersonDetector`, ``--detect-model``, ``--min-score``,
``--max-people``; its union person mask joins the replaced region) when it has none; ``file``
uses keypoint files only (an image without one is ``skipped``); ``detect`` always detects,
ignoring the files. The manifest records ``people_source`` ("file"/"detect") and, for
detected images, ``detections`` (per person: score, presence, box). An image in which the
detector finds nobody is handled as a keypoint file without people: ``ok``, its output is the
input (re-encoded, without metadata), with a note. Outputs, laid out as
``refsd run`` lays them out: ``OUT/<flat stem>/pseudonymized.png`` (no metadata of the input
is copied), with ``--save-extras`` also ``region.png`` (the replaced region) and
``body_fit.json``, and ``OUT/manifest.jsonl`` in :mod:`refsd.comfyapi.manifest`'s schema, plus
``timings`` and ``notes``. An image failing the privacy check (leak ratio over ``--max-leak``)
is an ``error`` and its outputs are not kept (``--keep-failed`` keeps them), and so is one in which a
face of the photo is still recognisable (the identity check, :func:`refsd.evaluate.check_identity`;
``--no-identity-check`` turns it off, ``--face-threshold`` sets its SFace cosine; the faces are in
the record's ``identity``); ``refsd eval`` measures a finished run in full. A run is resumable: images whose record is ``ok`` with every
output present are not redone. Per-image problems are recorded, never fatal: a non-image
file or (``--people file``) an image without keypoints is ``skipped`` with the reason, a corrupt image or a
failing stage is an ``error``. People whose keypoints could not be fitted would stay
recognisable, so such an image is an ``error`` (no output) unless ``--allow-unfitted``.

With ``--ray`` the images run in Ray Data actors (:mod:`refsd.cli.workers`); the outputs are
the same files as a single-process run with the same seed and the same ``--threads``. Each video
is one task of an actor, which writes its chunks and video into the output folder itself (so
that folder must be at the same path on every Ray node, as the inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..comfyapi import Manifest, image_seed, keypoints_for
from ..errors import RefSDError
from ..pipeline.video import VIDEO_SUFFIXES
from .config import build_config, check_detector_files, check_face_files, collect_inputs
from .workers import run_local, run_ray

__all__ = ["add_parser", "main", "pseudonymize"]


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
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
    p.add_argument("--people", choices=["auto", "file", "detect"], default="auto",
                   help="where the people come from: auto (default) = the keypoint JSON when the image has one, "
                   "else the person detector; file = keypoint JSONs only (an image without one is skipped); "
                   "detect = always the detector, ignoring JSONs")
    p.add_argument("--seed", type=int, default=0, help="run seed; each image's seed derives from it and its name")
    p.add_argument("--manifest", type=Path, default=None, help="manifest path (default OUTPUT/manifest.jsonl)")
    p.add_argument("--no-resume", action="store_true", help="redo images already finished in the manifest")
    p.add_argument("--no-recursive", action="store_true", help="only the top level of input folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--save-extras", action="store_true", help="also write the region mask and the body fit JSON")
    p.add_argument("--chunk-frames", type=int, default=48,
                   help="videos: frames processed (and kept in memory) at a time; a run resumes at the last finished chunk")
    p.add_argument("--save-frames", action="store_true",
                   help="videos: also keep every pseudonymized frame as OUT/<stem>/frames/NNNNNN.png")
    p.add_argument("--keep-audio", action="store_true",
                   help="videos: copy the input's audio into the output (default: left out, as voices identify "
                   "people too: personal data like the faces). Remuxed when MP4 carries its codec, else AAC; "
                   "trimmed to the video")
    p.add_argument("--allow-unfitted", action="store_true",
                   help="write outputs even when some people in the keypoints could not be fitted (they stay as they are)")
    p.add_argument("--keep-failed", action="store_true", help="keep outputs of images that fail the privacy check")
    p.add_argument("--max-leak", type=float, default=0.0, help="largest leak ratio that passes the privacy check")
    p.add_argument("--no-identity-check", action="store_true",
                   help="skip the face identity check (faster; by default an output in which a face recogniser still "
                   "finds a person of the photo fails the privacy check)")
    p.add_argument("--face-threshold", type=float, default=0.363,
                   help="face similarity (SFace cosine) from which a face counts as the same person (default 0.363)")
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

    d = p.add_argument_group("person detector (images without keypoints; --people)")
    d.add_argument("--detect-model", choices=["lite", "full", "heavy"], default="full",
                   help="BlazePose landmark model: lite (fastest), full (default), heavy (most accurate); "
                   "files from `refsd models fetch`")
    d.add_argument("--min-score", type=float, default=0.5, help="detector score a person needs (0..1, default 0.5)")
    d.add_argument("--max-people", type=int, default=8, help="most people detected per image (default 8)")

    r = p.add_argument_group("Ray")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: no value = a local Ray instance (or RAY_ADDRESS), else the cluster address")
    r.add_argument("--ray-workers", type=int, default=None,
                   help="actors (default: the cluster's GPUs, else CPUs / --ray-cpus-per-worker)")
    r.add_argument("--ray-cpus-per-worker", type=float, default=1.0)
    p.set_defaults(func=main)
    return p


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def _write_outputs(out_dir: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _audio_as_asked(rec: dict, keep: bool) -> bool:
    """Whether a finished video's ``audio`` fits ``--keep-audio`` (else it is redone: a voice that was
    copied must go when the audio is no longer asked for). No field: a run that wrote no audio."""
    return rec.get("audio") in (("copied", "none", "failed") if keep else ("dropped", "none", "failed", None))


def pseudonymize(args) -> dict[str, int]:
    """The command's work; returns the manifest summary (raises RefSDError on bad settings)."""
    if args.chunk_frames < 1:
        raise RefSDError(f"--chunk-frames {args.chunk_frames}: give at least 1 frame per chunk (default 48)")
    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = build_config(args)
    root, images, others = collect_inputs(args.inputs, recursive=not args.no_recursive)
    kp_root = Path(args.keypoints).expanduser().resolve() if args.keypoints else None
    if kp_root is not None and not kp_root.is_dir():
        raise RefSDError(f"--keypoints {kp_root} is not a folder")
    manifest = Manifest(args.manifest or out_dir / "manifest.jsonl", out_dir)
    manifest.compact()
    att = config.get("attributes")
    options = {"allow_unfitted": args.allow_unfitted, "keep_failed": args.keep_failed,
               "save_extras": args.save_extras, "max_leak": args.max_leak, "output_dir": str(out_dir),
               "chunk_frames": args.chunk_frames, "save_frames": args.save_frames, "keep_audio": args.keep_audio,
               "distribution": att if isinstance(att, dict) and "fixed_person" not in att else None}
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
        kp = None if args.people == "detect" else keypoints_for(path, root, kp_root)
        source = "detect" if kp is None and args.people != "file" else "file"
        video = path.suffix.lower() in VIDEO_SUFFIXES
        # done: ok, outputs present, same seed, people from the same source (videos: audio as asked)
        if (not args.no_resume and manifest.is_done(key, people_source=source)
                and manifest.records[key].get("seed") == seed
                and (not video or _audio_as_asked(manifest.records[key], args.keep_audio))):
            continue
        if kp is None and source == "file":
            where = f"under {kp_root}" if kp_root else "beside the image"
            manifest.write({"image": key, "status": "skipped", "seed": seed,
                            "error": f"no keypoint file: expected {Path(key).with_suffix('.json').as_posix()} {where} "
                            "(--people auto detects the people instead)"})
            continue
        prev = manifest.records.get(key)
        attempts = (prev.get("attempts", 1) + 1) if prev and prev.get("status") == "error" else 1
        items.append({"image": key, "path": str(path), "keypoints": str(kp) if kp is not None else None,
                      "people": source, "seed": seed, "attempts": attempts, "video": video})
    if any(it["people"] == "detect" for it in items):
        check_detector_files(args.detect_model)  # fail here, with the fetch command, not in every image
    if items and not args.no_identity_check:
        check_face_files()

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

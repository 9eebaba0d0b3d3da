"""``refsd pseudonymize``'s options as work: the JSON-safe pipeline config and the list of inputs.

:func:`build_config` turns the parsed command line (:mod:`refsd.cli.pseudonymize`) into the
config of :meth:`refsd.pipeline.RefSDPipeline.from_config`, including the attribute
distribution people are drawn from (``--attributes-json`` or the single options) and the
model paths, checked in the driver before any worker starts, and the person detector's
settings (``--people``, ``--detect-model``, ...; its model files are checked by
:func:`check_detector_files` when some image will be detected). :func:`collect_inputs` finds
the images (and the files that are not images) under the inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..comfyapi import IMAGE_SUFFIXES, list_images
from ..errors import RefSDError
from ..pipeline.video import VIDEO_SUFFIXES

__all__ = ["build_config", "check_detector_files", "collect_inputs"]


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


def _attributes(args) -> dict:
    from ..people import (
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
    from ..body.anny_cache import resolve_anny_cache_dir

    refiner = args.refiner
    if refiner == "auto":
        refiner = "diffusers" if args.model is not None else "none"
    cfg: dict[str, Any] = {
        "refiner": refiner, "body": args.body, "gender": args.gender,
        "device": args.device, "crop_width": args.crop_size[0], "crop_height": args.crop_size[1],
        "context": args.context, "denoise": args.denoise, "steps": args.steps, "guidance": args.guidance,
        "margin": args.margin, "reach": args.reach, "feather": args.feather, "match_color": args.match_color, "fov_deg": args.fov,
        "coords": args.coords, "hand_order": args.hand_order, "min_confidence": args.min_confidence,
        "max_leak": args.max_leak, "identity_check": not args.no_identity_check, "face_threshold": args.face_threshold,
        "extra_positive": args.extra_positive, "extra_negative": args.extra_negative,
        "attributes": _attributes(args),
        # the detector is built in each process / Ray worker on first use (an image without keypoints)
        "detect": args.people != "file", "detect_model": args.detect_model, "min_score": args.min_score,
        "max_people": args.max_people,
    }
    from ..pipeline.detection import check_detect_options

    check_detect_options(args.detect_model, args.min_score, args.max_people, 0.5)
    if str(args.body).lower() == "anny":
        cfg["anny_cache_dir"] = str(resolve_anny_cache_dir(None))  # the driver's choice, also in Ray workers
    if refiner == "diffusers":
        if args.model is None:
            raise RefSDError("--refiner diffusers needs --model (an SD1.5 diffusers folder or .safetensors checkpoint)")
        from ..refine import CONTROL_MAPS, check_controlnet_path, check_model_path

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


def check_detector_files(variant: str) -> None:
    """Raise :class:`refsd.detect.DetectModelsMissing` (folders searched, fetch command) when the
    detector's model files are not here; done in the driver before any worker starts."""
    from ..detect import find_model_files

    find_model_files(("pose_detection", f"pose_landmark_{variant}"))


def check_face_files() -> None:
    """Raise :class:`refsd.detect.DetectModelsMissing` when the face models of the identity check are
    not here (the message says how to fetch them, or to pass --no-identity-check)."""
    from ..detect import FACE_KEYS, find_model_files

    find_model_files(FACE_KEYS)


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
            images += list_images(p, recursive=recursive, suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            it = p.rglob("*") if recursive else p.iterdir()
            for f in it:
                rel = f.relative_to(p)
                if (f.is_file() and f.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES + (".json", ".jsonl")
                        and not any(part.startswith(".") for part in rel.parts)):
                    others.append((f.relative_to(root).as_posix(), f"not an image file (suffix {f.suffix or 'none'!r})"))
        elif p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
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

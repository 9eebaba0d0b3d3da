"""``refsd study create``: a study folder from a run's ``manifest.jsonl``.

For each ``ok`` image of the manifest and each fitted person: the crops (:mod:`.crops`), the
psi-A/B/C items and one phi item per requested attribute (:mod:`.questions`); then the
attention checks, the rater tokens and ``study.json`` (:mod:`.definition`).

Where the files are: the output image and ``body_fit.json`` from the record's ``outputs``
(relative to the manifest's folder); the original photo from the record's ``source`` (the
absolute path newer runs record) when that file exists, else ``--images DIR`` / ``image``.
Every problem (no manifest, no usable record, a missing file) is a :class:`StudyError` that names
the images and the fix; with ``skip_missing`` images whose files are missing are left out
(and listed under ``skipped``) instead.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import secrets
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..comfyapi.manifest import IMAGE_SUFFIXES, Manifest
from ..errors import RefSDError
from ..fit import BodyFit
from ..people import PersonAttributes
from .crops import PersonLocator, load_rgb, write_crops
from .definition import DB_FILE, FAMILIES, LIKERT_LABELS, STUDY_FILE, Study, StudyError
from .questions import PHI_ATTRIBUTES, attention_item, phi_items, psi_items

__all__ = ["create_study", "resolve_files", "read_manifest"]

FIX_RUN = "run `refsd run` or `refsd pseudonymize` first; each writes OUT/manifest.jsonl"
INSTRUCTIONS = (
    "You will see pictures of people, one question per screen. Some people in them have been replaced by "
    "synthetic people. Rate each statement from 1 (strongly disagree) to 5 (strongly agree): click a button "
    "or press the keys 1 to 5. There are no right or wrong answers, except for a few attention checks that tell "
    "you which answer to give. Your answers are saved as you go: you can close the page and come back later."
)


def read_manifest(path: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """``(manifest path, records)``: one record per image (the last one), in file order."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise StudyError(f"{path} does not exist: pass a run's OUT/manifest.jsonl ({FIX_RUN})")
    manifest = Manifest(path, path.parent)
    if not manifest.records:
        extra = f" ({manifest.skipped_lines} unreadable line(s))" if manifest.skipped_lines else ""
        raise StudyError(f"{path} has no image records{extra}: {FIX_RUN}, then build the study from it")
    return path.resolve(), list(manifest.records.values())


def _output_files(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    outputs = [o for o in rec.get("outputs") or [] if isinstance(o, str)]
    images = [o for o in outputs if o.lower().endswith(IMAGE_SUFFIXES)]
    named = [o for o in images if Path(o).stem.startswith("pseudonymized")]
    image = (named or [o for o in images if Path(o).stem not in ("region", "mask")] or [None])[0]
    fits = [o for o in outputs if o.endswith(".json") and "body_fit" in Path(o).name]
    return image, (fits[0] if fits else None)


def resolve_files(rec: dict[str, Any], out_dir: Path, images_dir: Path | None) -> tuple[dict[str, Path], list[str]]:
    """``({"original", "output", "body_fit"}: paths, problems)`` of one ``ok`` record."""
    key = rec["image"]
    problems: list[str] = []
    files: dict[str, Path] = {}
    tried: list[str] = []
    src = rec.get("source")
    if isinstance(src, str) and src and Path(src).is_file():
        files["original"] = Path(src)
    else:
        if isinstance(src, str) and src:
            tried.append(src)
        if images_dir is not None:
            cand = images_dir / key
            if cand.is_file():
                files["original"] = cand
            else:
                tried.append(str(cand))
        if "original" not in files:
            where = f" (looked at {', '.join(tried)})" if tried else " (the manifest has no 'source' path for it)"
            problems.append(f"{key}: the original photo was not found{where}; pass --images DIR, the input folder "
                            "of the run (the photos under their manifest names)")
    image, fit = _output_files(rec)
    for name, rel, fix in (("output", image, "its record lists no output image"),
                           ("body_fit", fit, "its record lists no body_fit.json: rerun with --save-extras "
                            "(refsd pseudonymize) or a workflow that saves the body fit (refsd run)")):
        if rel is None:
            problems.append(f"{key}: {fix}")
        elif not (out_dir / rel).is_file():
            problems.append(f"{key}: {out_dir / rel} is missing: keep the run's output folder next to its manifest")
        else:
            files[name] = out_dir / rel
    return files, problems


def _problem_list(problems: list[str], limit: int = 10) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  " + "\n  ".join(problems[:limit]) + more


def _check_folder(folder: Path, force: bool) -> None:
    """Refuse a folder holding answers (always) or anything else (without ``force``)."""
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"{folder} is a file; give a folder for the study")
    if (folder / DB_FILE).exists():
        raise StudyError(f"{folder} already holds answers ({DB_FILE}); nothing there is overwritten: build the new "
                         "study in another folder (-o)")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise StudyError(f"{folder} is not empty; choose another folder (-o) or pass --force to replace the study "
                         "in it (only study.json and crops/ are replaced)")


def _prepare_folder(folder: Path, force: bool) -> None:
    _check_folder(folder, force)
    if folder.is_dir():
        (folder / STUDY_FILE).unlink(missing_ok=True)
        shutil.rmtree(folder / "crops", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def create_study(
    manifest: str | Path,
    folder: str | Path,
    *,
    images: str | Path | None = None,
    attributes: Sequence[str] = PHI_ATTRIBUTES,
    attention_checks: int = 3,
    raters: int = 0,
    seed: int = 0,
    title: str = "RefSD perception study",
    detect_model: str | None = "full",
    body: str | Path | None = None,
    skip_missing: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Study:
    """Build a study folder from a run (see the module docstring); returns the loaded study."""
    folder = Path(folder).expanduser().resolve()
    _check_folder(folder, force)
    man_path, records = read_manifest(manifest)
    out_dir = man_path.parent
    images_dir = Path(images).expanduser().resolve() if images else None
    if images_dir is not None and not images_dir.is_dir():
        raise StudyError(f"--images {images_dir} is not a folder; pass the folder the run read its photos from")
    if attention_checks < 0 or raters < 0:
        raise StudyError("--attention-checks and --raters must be 0 or more")
    skipped: list[dict[str, str]] = []
    usable: list[tuple[dict[str, Any], dict[str, Path]]] = []
    problems: list[str] = []
    for rec in records:
        if rec.get("status") != "ok":
            skipped.append({"image": rec["image"], "reason": f"status {rec.get('status')}: {rec.get('error')}"})
            continue
        if not isinstance(rec.get("attributes"), list):
            skipped.append({"image": rec["image"], "reason": "its record has no person attributes (a run of an "
                            "older RefSD): rerun it to ask about it"})
            continue
        people = (rec["attributes"] or [[]])[0] or []  # one image per prompt: the batch's first image
        if not people:
            skipped.append({"image": rec["image"], "reason": "no person was replaced in it"})
            continue
        files, bad = resolve_files(rec, out_dir, images_dir)
        if bad and skip_missing:
            skipped += [{"image": rec["image"], "reason": b} for b in bad]
        elif bad:
            problems += bad
        else:
            usable.append((rec, files))
    if problems:
        raise StudyError(f"files of {len(problems)} image(s) are missing:{_problem_list(problems)}\n"
                         "Fix the paths (or pass --skip-missing to build the study from the other images).")
    if not usable:
        why = _problem_list([f"{s['image']}: {s['reason']}" for s in skipped]) if skipped else ""
        raise StudyError(f"{man_path} has no image with a replaced person to ask about:{why}\n{FIX_RUN}")

    _prepare_folder(folder, force)
    locator = PersonLocator(detect_model, body)
    people: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for rec, files in usable:
        if progress:
            progress(rec["image"])
        fit = BodyFit.load(files["body_fit"])
        attrs = rec["attributes"][0]
        if len(attrs) != fit.num_people:
            raise StudyError(f"{rec['image']}: the manifest has attributes for {len(attrs)} people but body_fit.json "
                             f"has {fit.num_people}; the outputs and the manifest come from different runs")
        try:
            persons = [PersonAttributes.from_dict(a) for a in attrs]
        except RefSDError as e:
            raise StudyError(f"{rec['image']}: the manifest's attributes are not valid person attributes ({e})") from e
        original, output = load_rgb(files["original"]), load_rgb(files["output"])
        for i, crop in enumerate(locator.locate(original, output, fit, persons)):
            pid = f"p{len(people) + 1:03d}"
            a = persons[i].to_dict()
            crops = write_crops(original, output, crop, folder, f"crops/{pid}")
            people.append({"id": pid, "image": rec["image"], "person": i,
                           "keypoint_index": fit.people[i].keypoint_index, "attributes": a,
                           "box": list(crop.box), "mask": crop.sources, "original": str(files["original"]),
                           "output": str(files["output"].relative_to(out_dir)), "seed": rec.get("seed")})
            items += psi_items(pid, crops) + phi_items(pid, a, attributes, crops["output"])
    if not items:
        raise StudyError(f"{man_path}: no fitted person found in the body fits; nothing to ask")

    rng = random.Random(seed)
    outputs = [it["images"][0] for it in items if it["family"] == "psi_c"]
    for k in range(attention_checks):
        items.append(attention_item(k, rng.choice([1, 2, 4, 5]), rng.choice(outputs)))
    data = {
        "format": "refsd-study", "version": 1, "study_id": uuid.uuid4().hex, "title": title, "seed": int(seed),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "manifest": str(man_path),
        "scale": {"min": 1, "max": 5, "labels": list(LIKERT_LABELS)}, "instructions": INSTRUCTIONS,
        "families": FAMILIES, "phi_attributes": list(attributes),
        "raters": [{"id": f"r{k + 1:02d}", "token": secrets.token_urlsafe(9)} for k in range(raters)],
        "people": people, "items": items, "skipped": skipped, "notes": locator.notes,
    }
    (folder / STUDY_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return Study.load(folder)

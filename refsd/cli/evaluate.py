"""``refsd eval``: the evaluation suite over a run's manifest (``refsd run`` or ``refsd pseudonymize``).

::

    refsd eval OUT/manifest.jsonl                      # -> OUT/eval/eval.json, report.md, *.png
    refsd eval OUT/manifest.jsonl --images photos/ --observed labels.json -o report/

For every image the run finished (``ok``): the photo (the record's ``source``, else
``--images`` + its key), the output (``--output-name``, default ``pseudonymized``), the input
keypoints (the record's ``keypoints`` file, else the JSON beside the photo or under
``--keypoints``; people the run detected are detected again) and, where the run saved a body
fit, the avatars re-rendered from it. Measures: :class:`refsd.evaluate.Evaluator`. Resumable:
per-image results are appended to ``<eval>/images.jsonl`` and an image is not redone while its
run record and output file are unchanged. The exit status is 1 when a face still matches (do
not publish), 2 on bad arguments, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..comfyapi import Manifest, keypoints_for
from ..errors import RefSDError

__all__ = ["add_parser", "main", "evaluate_manifest"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="measure privacy (face identity), pose kept and attributes of a run's outputs",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="the run's manifest.jsonl")
    p.add_argument("-o", "--output", type=Path, default=None, help="report folder (default: <manifest folder>/eval)")
    p.add_argument("--images", type=Path, default=None,
                   help="the run's input folder (needed when the manifest has no 'source' paths, or they moved)")
    p.add_argument("--keypoints", type=Path, default=None, help="folder of the input keypoint JSONs, as for the run")
    p.add_argument("--output-name", default="pseudonymized",
                   help="which saved output is the pseudonymized image (its file name starts with this)")
    p.add_argument("--no-identity", action="store_true", help="skip the face identity check (faster)")
    p.add_argument("--no-pose", action="store_true", help="skip the pose measure")
    p.add_argument("--no-avatar-pose", action="store_true", help="do not re-render the avatars from saved body fits")
    p.add_argument("--threshold", type=float, default=None, help="SFace cosine counted as the same person (0.363)")
    p.add_argument("--detect-model", choices=["lite", "full", "heavy"], default="full",
                   help="person detector landmark model for the outputs' keypoints")
    p.add_argument("--attributes-json", type=Path, default=None,
                   help="the requested AttributeDistribution (to_dict JSON); default: what the manifest recorded")
    p.add_argument("--observed", type=Path, default=None,
                   help="a classifier's labels: JSON {image key: [per person {attribute: value}]}")
    p.add_argument("--device", default=None, help="torch device of the models (default cpu)")
    p.add_argument("--no-resume", action="store_true", help="evaluate every image again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def _json(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RefSDError(f"{what} {path}: cannot read it as JSON ({e})") from e


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _inputs(rec: dict, run_dir: Path, args) -> tuple[Path, Path, Path | None, Path | None]:
    """(photo, output, keypoint file or None, body fit file or None) of one manifest record."""
    src = Path(rec["source"]) if rec.get("source") else None
    if src is None or not src.is_file():
        if args.images is None:
            raise RefSDError(f"the photo of {rec['image']} is not at {src or '(not recorded)'}: "
                             "pass the run's input folder with --images")
        src = args.images / rec["image"]
        if not src.is_file():
            raise RefSDError(f"the photo {src} does not exist: check --images")
    outs = [run_dir / o for o in rec.get("outputs") or []]
    pick = [o for o in outs if o.name.startswith(args.output_name) and o.suffix.lower() in (".png", ".jpg", ".webp")]
    if not pick or not pick[0].is_file():
        raise RefSDError(f"no output named {args.output_name}* for {rec['image']} among {[o.name for o in outs]} "
                         "(or it was deleted): set --output-name")
    kp = None
    if (rec.get("people_source") or "file") == "file":
        kp = Path(rec["keypoints"]) if rec.get("keypoints") and Path(rec["keypoints"]).is_file() else None
        if kp is None and (args.images or src.parent).is_dir():
            root = args.images or src.parent
            kp = keypoints_for(src, root, args.keypoints) if src.is_relative_to(root) else None
    fit = next((o for o in outs if o.suffix == ".json" and "body_fit" in o.name and o.is_file()), None)
    return src, pick[0], kp, fit


def _avatar_keypoints(fit_path: Path, rec: dict, device) -> list[dict] | None:
    """The avatars' own POSE_KEYPOINT re-rendered from a saved body fit and the sampled attributes
    (Anny fits only: an SMPL-X fit needs the user's model file)."""
    from ..evaluate.image import avatar_pose_keypoint
    from ..fit import BodyFit

    data = json.loads(fit_path.read_text(encoding="utf-8"))
    fit = BodyFit.from_dict(data[0] if isinstance(data, list) else data)
    attrs = (rec.get("attributes") or [None])[0]
    if not str(fit.model_id).startswith("anny") or attrs is None or len(attrs) != fit.num_people:
        return None
    return avatar_pose_keypoint(fit, attrs, device)


def evaluate_manifest(args) -> tuple[dict, Path]:
    """The command's work: returns (summary, report folder)."""
    from ..evaluate import Evaluator, summarize, write_report
    from ..pipeline import load_image

    mpath = Path(args.manifest).expanduser().resolve()
    if not mpath.is_file():
        raise RefSDError(f"manifest {mpath} not found: give the manifest.jsonl a run wrote")
    manifest = Manifest(mpath)
    if not manifest.records:
        raise RefSDError(f"manifest {mpath} has no image records: run `refsd run` or `refsd pseudonymize` first")
    run_dir = mpath.parent
    out_dir = Path(args.output).expanduser().resolve() if args.output else run_dir / "eval"
    if args.images is not None:
        args.images = Path(args.images).expanduser().resolve()
    distribution = _json(args.attributes_json, "--attributes-json")
    if distribution is None:
        distribution = next((r["distribution"] for r in manifest.records.values() if r.get("distribution")), None)
    observed = _json(args.observed, "--observed") or {}
    kw = {} if args.threshold is None else {"threshold": args.threshold}
    evaluator = Evaluator(identity=not args.no_identity, pose=not args.no_pose, detect_model=args.detect_model,
                          device=args.device, **kw)
    done = Manifest(out_dir / "images.jsonl")  # one record per image, the last wins
    keys = sorted(manifest.records)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(keys), unit="image", desc="eval", file=sys.stderr)
    settings = {"identity": evaluator.identity, "pose": evaluator.pose, "threshold": evaluator.threshold,
                "detect_model": evaluator.detect_model, "avatar_pose": not args.no_avatar_pose}
    records = []
    try:
        for key in keys:
            rec = manifest.records[key]
            base = {"image": key, "leak_ratio": rec.get("leak_ratio"), "privacy_passed": rec.get("privacy_passed"),
                    "attributes": rec.get("attributes"), "observed": observed.get(key), "run_finished": rec.get("finished"),
                    "settings": settings}
            if rec.get("status") != "ok":
                records.append({**base, "status": "skipped", "error": f"the run recorded {rec.get('status')}"})
            elif rec.get("video"):  # its privacy check ran on every frame in the run (record: video, identity)
                records.append({**base, "status": "skipped", "error": "a video: refsd eval measures photos so far; "
                                "the run checked every frame's privacy (manifest: video.frames_failed, identity)"})
            else:
                try:
                    src, out, kp, fit = _inputs(rec, run_dir, args)
                    stamp = _stamp(out)
                    prev = done.records.get(key)
                    if (not args.no_resume and prev and prev.get("status") == "ok" and prev.get("stamp") == stamp
                            and prev.get("run_finished") == rec.get("finished") and prev.get("settings") == settings):
                        records.append({**prev, "observed": observed.get(key)})
                    else:
                        avatar = None
                        if fit is not None and not args.no_avatar_pose and evaluator.pose:
                            avatar = _avatar_keypoints(fit, rec, args.device)
                        ev = evaluator(load_image(src), load_image(out), kp, avatar_keypoints=avatar)
                        r = {**base, "status": "ok", "stamp": stamp, "evaluation": ev.to_dict(),
                             "photo": str(src), "output": str(out), "keypoints": str(kp) if kp else None}
                        done.append(r)
                        records.append(r)
                except RefSDError as e:
                    r = {**base, "status": "error", "error": str(e)}
                    done.append(r)
                    records.append(r)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summary = summarize(records, distribution)
    summary["settings"] = settings
    summary["per_image"] = {r["image"]: {k: r.get(k) for k in ("status", "error", "evaluation", "leak_ratio")}
                            for r in records}
    write_report(summary, out_dir)
    return summary, out_dir


def main(args) -> int:
    try:
        summary, out_dir = evaluate_manifest(args)
    except RefSDError as e:
        print(f"refsd eval: error: {e}", file=sys.stderr)
        return 2
    ident = summary.get("identity") or {}
    print(json.dumps({"report": str(out_dir / "report.md"), "images": summary["images"],
                      "face_leaks": ident.get("leaks"), "faces": ident.get("faces"),
                      "mean_oks": ((summary.get("pose") or {}).get("oks") or {}).get("mean")}))
    return 1 if ident.get("leaks") else 0

"""``refsd eval``: the evaluation suite over a run's manifest (``refsd run`` or ``refsd pseudonymize``).

::

    refsd eval OUT/manifest.jsonl                      # -> OUT/eval/eval.json, report.md, *.png
    refsd eval OUT/manifest.jsonl --images photos/ --observed labels.json -o report/
    refsd eval OUT/manifest.jsonl --frame-stride 5     # videos: every 5th frame

For every image the run finished (``ok``): the photo (the record's ``source``, else
``--images`` + its key), the output (``--output-name``, default ``pseudonymized``), the input
keypoints (the record's ``keypoints`` file, else the JSON beside the photo or under
``--keypoints``; people the run detected are detected again) and, where the run saved a body
fit, the avatars re-rendered from it. Measures: :class:`refsd.evaluate.Evaluator`.

For every video the run finished (a record with ``video``): the source video and the output
video (``<stem>/pseudonymized.mp4``) are decoded in step and every ``--frame-stride``-th frame
(default: each) is measured like a photo, with that frame's keypoints when the keypoint file has
one per video frame, else the people detected on the source frame
(:mod:`refsd.cli.evaluate_video`, :func:`refsd.evaluate.video.evaluate_video`). The avatars alone
are not measured for videos (no per-frame body fit is saved). The record lists the frames
evaluated, per frame the faces, leaks, highest face similarity and OKS, the frames that leak and
the mean OKS; in the summary each evaluated frame counts like one image. Videos of different
lengths or sizes, missing / unreadable ones, or a keypoint file with fewer frames than the video
are error records.

Resumable: per-image (and per-video) results are appended to ``<eval>/images.jsonl`` and an
item is not redone while its run record, output file and the settings are unchanged. The
progress bar advances per image or video (a video shows its current frame). The exit status is
1 when a face still matches in a photo or any video frame (do not publish), 2 on bad
arguments, else 0.
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
    p = sub.add_parser("eval", help="measure privacy (face identity), pose kept and attributes of a run's outputs "
                       "(photos and videos)",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="the run's manifest.jsonl")
    p.add_argument("-o", "--output", type=Path, default=None, help="report folder (default: <manifest folder>/eval)")
    p.add_argument("--images", type=Path, default=None,
                   help="the run's input folder (needed when the manifest has no 'source' paths, or they moved)")
    p.add_argument("--keypoints", type=Path, default=None,
                   help="folder of the input keypoint JSONs, as for the run (a video's: one frame per video frame)")
    p.add_argument("--output-name", default="pseudonymized",
                   help="which saved output is the pseudonymized image or video (its file name starts with this)")
    p.add_argument("--no-identity", action="store_true", help="skip the face identity check (faster)")
    p.add_argument("--no-pose", action="store_true", help="skip the pose measure")
    p.add_argument("--no-avatar-pose", action="store_true",
                   help="do not re-render the avatars from saved body fits (videos: never measured)")
    p.add_argument("--frame-stride", type=int, default=1, metavar="N",
                   help="videos: evaluate every N-th frame, from the first (default 1: every frame)")
    p.add_argument("--threshold", type=float, default=None, help="SFace cosine counted as the same person (0.363)")
    p.add_argument("--detect-model", choices=["lite", "full", "heavy"], default="full",
                   help="person detector landmark model for the outputs' keypoints")
    p.add_argument("--attributes-json", type=Path, default=None,
                   help="the requested AttributeDistribution (to_dict JSON); default: what the manifest recorded")
    p.add_argument("--observed", type=Path, default=None,
                   help="a classifier's labels: JSON {image key: [per person {attribute: value}]}")
    p.add_argument("--device", default=None, help="torch device of the models (default cpu)")
    p.add_argument("--no-resume", action="store_true", help="evaluate every image and video again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it advances per image or video)")
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
    """(photo or video, output, keypoint file or None, body fit file or None) of one manifest record."""
    from ..pipeline.video import VIDEO_SUFFIXES

    video = bool(rec.get("video"))
    what = "video" if video else "photo"
    src = Path(rec["source"]) if rec.get("source") else None
    if src is None or not src.is_file():
        if args.images is None:
            raise RefSDError(f"the {what} of {rec['image']} is not at {src or '(not recorded)'}: "
                             "pass the run's input folder with --images")
        src = args.images / rec["image"]
        if not src.is_file():
            raise RefSDError(f"the {what} {src} does not exist: check --images")
    outs = [run_dir / o for o in rec.get("outputs") or []]
    suffixes = VIDEO_SUFFIXES if video else (".png", ".jpg", ".webp")
    pick = [o for o in outs if o.name.startswith(args.output_name) and o.suffix.lower() in suffixes]
    if not pick or not pick[0].is_file():
        raise RefSDError(f"no output {what} named {args.output_name}* for {rec['image']} among "
                         f"{[o.name for o in outs][:6]} (or it was deleted): set --output-name")
    kp = None
    if (rec.get("people_source") or "file") == "file":
        kp = Path(rec["keypoints"]) if rec.get("keypoints") and Path(rec["keypoints"]).is_file() else None
        if kp is None and (args.images or src.parent).is_dir():
            root = args.images or src.parent
            kp = keypoints_for(src, root, args.keypoints) if src.is_relative_to(root) else None
    fit = None if video else next((o for o in outs if o.suffix == ".json" and "body_fit" in o.name and o.is_file()),
                                  None)
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
    from .evaluate_video import evaluate_video_files, video_attributes

    mpath = Path(args.manifest).expanduser().resolve()
    if not mpath.is_file():
        raise RefSDError(f"manifest {mpath} not found: give the manifest.jsonl a run wrote")
    manifest = Manifest(mpath)
    if not manifest.records:
        raise RefSDError(f"manifest {mpath} has no image records: run `refsd run` or `refsd pseudonymize` first")
    if args.frame_stride < 1:
        raise RefSDError(f"--frame-stride {args.frame_stride}: evaluate every frame with 1, every N-th with N")
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
    done = Manifest(out_dir / "images.jsonl")  # one record per image or video, the last wins
    keys = sorted(manifest.records)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(keys), unit="item", desc="eval", file=sys.stderr)
    settings = {"identity": evaluator.identity, "pose": evaluator.pose, "threshold": evaluator.threshold,
                "detect_model": evaluator.detect_model, "avatar_pose": not args.no_avatar_pose}
    # videos: the stride matters, the avatars are never re-rendered; a photo resumes whatever the stride
    video_settings = {**settings, "avatar_pose": False, "frame_stride": args.frame_stride}
    records = []
    try:
        for key in keys:
            rec = manifest.records[key]
            video = bool(rec.get("video"))
            base = {"image": key, "leak_ratio": rec.get("leak_ratio"), "privacy_passed": rec.get("privacy_passed"),
                    "attributes": video_attributes(rec) if video else rec.get("attributes"),
                    "observed": observed.get(key), "run_finished": rec.get("finished"),
                    "settings": video_settings if video else settings}
            if rec.get("status") != "ok":
                records.append({**base, "status": "skipped", "error": f"the run recorded {rec.get('status')}"})
            else:
                try:
                    src, out, kp, fit = _inputs(rec, run_dir, args)
                    stamp = _stamp(out)
                    prev = done.records.get(key)
                    if (not args.no_resume and prev and prev.get("status") == "ok" and prev.get("stamp") == stamp
                            and prev.get("run_finished") == rec.get("finished")
                            and prev.get("settings") == base["settings"]):
                        records.append({**prev, "observed": observed.get(key)})
                    else:
                        r = {**base, "status": "ok", "stamp": stamp, "source" if video else "photo": str(src),
                             "output": str(out), "keypoints": str(kp) if kp else None}
                        if video:
                            ve = evaluate_video_files(evaluator, src, out, kp, args.frame_stride,
                                                      on_frame=_frame_progress(bar, key))
                            r.update(evaluation=ve.evaluation(), video=ve.to_dict())
                        else:
                            avatar = None
                            if fit is not None and not args.no_avatar_pose and evaluator.pose:
                                avatar = _avatar_keypoints(fit, rec, args.device)
                            r["evaluation"] = evaluator(load_image(src), load_image(out), kp,
                                                        avatar_keypoints=avatar).to_dict()
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
    summary["settings"] = {**settings, "frame_stride": args.frame_stride}
    summary["per_image"] = {r["image"]: _per_image(r) for r in records}
    write_report(summary, out_dir)
    return summary, out_dir


def _per_image(r: dict) -> dict:
    """eval.json's row of one item: a photo's full evaluation; a video's totals (its per-frame
    measures are in images.jsonl)."""
    if r.get("video"):
        return {"status": r.get("status"), "error": r.get("error"), "leak_ratio": r.get("leak_ratio"),
                "video": {k: v for k, v in r["video"].items() if k != "per_frame"}}
    return {k: r.get(k) for k in ("status", "error", "evaluation", "leak_ratio")}


def _frame_progress(bar, key: str):
    """A video's frames on the progress bar's label (the bar itself counts images and videos)."""
    if bar is None:
        return None

    def show(i: int, total: int) -> None:
        bar.set_postfix_str(f"{Path(key).name} frame {i + 1}" + (f"/{total}" if total else ""))

    return show


def main(args) -> int:
    try:
        summary, out_dir = evaluate_manifest(args)
    except RefSDError as e:
        print(f"refsd eval: error: {e}", file=sys.stderr)
        return 2
    ident = summary.get("identity") or {}
    print(json.dumps({"report": str(out_dir / "report.md"), "images": summary["images"],
                      "video_frames": sum(v["frames_evaluated"] for v in summary.get("videos") or []),
                      "face_leaks": ident.get("leaks"), "faces": ident.get("faces"),
                      "mean_oks": ((summary.get("pose") or {}).get("oks") or {}).get("mean")}))
    return 1 if ident.get("leaks") else 0

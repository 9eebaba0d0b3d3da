"""A dataset's evaluation: per-image records -> :func:`summarize` (``eval.json``) ->
:func:`write_report` (``report.md`` + matplotlib PNGs), with what each number means for a
user deciding whether to publish.

Per-image records are dicts: ``{"image", "status" ("ok" / "error" / "skipped"), "error",
"evaluation" (:meth:`ImageEvaluation.to_dict`), "leak_ratio" / "privacy_passed" (the run's
pixel check, from its manifest), "attributes" (the people as sampled), "observed" (a
classifier's labels per person, optional)}``.

A video's record (:mod:`~refsd.evaluate.video`) adds ``"video"``
(:meth:`VideoEvaluation.to_dict`: frames, frames evaluated, the frames that leak, mean OKS, per
frame measures) and its ``evaluation`` holds every evaluated frame's faces and pose rows: each
evaluated frame counts like one image in the identity and pose statistics (and in the seconds
per image); the summary's ``videos`` lists each video's totals and ``report.md`` has a table of
them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .attributes import observed_vs_sampled, sampled_vs_requested
from .pose import JOINT_GROUPS

__all__ = ["summarize", "write_report", "PLOTS"]

PLOTS = ("identity.png", "pose_groups.png", "attributes.png")


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    v = sorted(float(x) for x in values)
    if not v:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {"n": len(v), "mean": statistics.fmean(v), "median": statistics.median(v), "min": v[0], "max": v[-1]}


def _pose_summary(rows: list[dict]) -> dict[str, Any] | None:
    if not rows:
        return None
    out: dict[str, Any] = {
        "people": len(rows), "oks": _stats([r["oks"] for r in rows]),
        "oks_at_least_0.5": sum(r["oks"] >= 0.5 for r in rows) / len(rows),
        "not_found": sum(r["matched"] is None for r in rows),
        "pck": {a: statistics.fmean(r["pck"][a] for r in rows) for a in rows[0]["pck"]},
        "groups": {},
    }
    for g in JOINT_GROUPS:
        oks = [r["oks_groups"][g] for r in rows if r["oks_groups"].get(g) is not None]
        pck = [r["pck_groups"][g] for r in rows if r["pck_groups"].get(g) is not None]
        out["groups"][g] = {"oks": statistics.fmean(oks) if oks else None,
                            "pck_0.1": statistics.fmean(pck) if pck else None, "people": len(oks)}
    return out


def _frames(r: Mapping[str, Any]) -> int:
    """How many images a record counts as: a video's evaluated frames, else 1."""
    return int(r["video"]["frames_evaluated"]) if r.get("video") else 1


def _seconds(r: Mapping[str, Any]) -> list[float]:
    """Seconds per image of a record: a video's per evaluated frame."""
    if r.get("video"):
        return [float(f["seconds"]) for f in r["video"].get("per_frame") or []]
    return [sum((r["evaluation"].get("seconds") or {}).values())]


def _video_row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"image": r["image"], **{k: v for k, v in r["video"].items() if k != "per_frame"}}


def summarize(records: Sequence[Mapping[str, Any]], distribution: Mapping | None = None) -> dict[str, Any]:
    """The dataset's numbers from the per-image records (module docstring); ``distribution``:
    the requested :class:`~refsd.people.AttributeDistribution` as a dict (None: counts only)."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("evaluation")]
    faces = [f | {"image": r["image"]} for r in ok for f in ((r["evaluation"].get("identity") or {}).get("faces") or [])]
    checked = [r for r in ok if r["evaluation"].get("identity") is not None]
    leaks = [f for f in faces if f["leak"]]
    identity = {
        "images_checked": sum(_frames(r) for r in checked), "faces": len(faces), "leaks": len(leaks),
        "leak_rate": len(leaks) / len(faces) if faces else None,
        "images_with_leak": sorted({f["image"] for f in leaks}),
        "faces_removed": sum(not f["found_in_output"] for f in faces),
        "people_without_face": sum(len(r["evaluation"]["identity"].get("people_without_face") or []) for r in checked),
        "similarity": _stats([f["similarity"] for f in faces if f["similarity"] is not None]),
        "similarities": [round(float(f["similarity"]), 4) for f in faces if f["similarity"] is not None],
        "outputs_without_face": sum(f["similarity"] is None for f in faces),
        "threshold": (checked[0]["evaluation"]["identity"]["threshold"] if checked else None),
    } if checked else None
    pixel_leaks = [float(r["leak_ratio"]) for r in ok if r.get("leak_ratio") is not None]
    people = [a for r in ok for img in (r.get("attributes") or []) for a in (img or [])]
    observed = [o for r in ok for o in (r.get("observed") or [])]
    out: dict[str, Any] = {
        "images": {s: sum(r.get("status") == s for r in records) for s in ("ok", "error", "skipped")},
        "errors": {r["image"]: r.get("error") for r in records if r.get("status") == "error"},
        "identity": identity,
        "pixels": {"leak_ratio": _stats(pixel_leaks),
                   "failed": sum(r.get("privacy_passed") is False for r in ok)} if pixel_leaks else None,
        "pose": _pose_summary([p for r in ok for p in (r["evaluation"].get("pose") or [])]),
        "avatar_pose": _pose_summary([p for r in ok for p in (r["evaluation"].get("avatar_pose") or [])]),
        "attributes": sampled_vs_requested(people, distribution) if people else None,
        "attributes_requested": dict(distribution) if distribution is not None else None,
        "observed": observed_vs_sampled(people, observed) if observed and len(observed) == len(people) else None,
        "seconds_per_image": _stats([t for r in ok for t in _seconds(r)]),
        "videos": [_video_row(r) for r in ok if r.get("video")] or None,
    }
    return out


# --- report -------------------------------------------------------------------------------------
def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _identity_md(s: dict) -> list[str]:
    i = s["identity"]
    if i is None:
        return ["Not checked (`--no-identity`)."]
    videos = bool(s.get("videos"))
    verdict = ("**No face of the photos is still recognisable.**" if i["leaks"] == 0 else
               f"**{i['leaks']} face(s) are still recognisable: do not publish these images** "
               f"({', '.join(i['images_with_leak'])}" + ("; the videos' frames: see Videos" if videos else "")
               + ").")
    return [
        verdict, "",
        "| measure | value |", "|---|---|",
        f"| images checked{' (a video frame counts as one)' if videos else ''} | {i['images_checked']} |",
        f"| faces found in the photos | {i['faces']} |",
        f"| faces still recognisable (leak), rate | {i['leaks']}, {_f(i['leak_rate'])} |",
        f"| faces no longer found in the output (face removed) | {i['faces_removed']} |",
        f"| people without a visible face in the photo | {i['people_without_face']} |",
        f"| face similarity photo vs output: median, max | {_f(i['similarity']['median'])}, "
        f"{_f(i['similarity']['max'])} |",
        f"| threshold (SFace same identity) | {_f(i['threshold'])} |",
        "",
        "Each face of a photo is compared with the output at the same place by a face recogniser "
        "(YuNet + SFace), the photo also blurred at several strengths (a blurred face is still the same "
        "person to anyone holding a sharp photo of them). A similarity at or above the threshold means "
        "a recogniser would say *same person*. A leak rate of 0 is required to publish; a face "
        "\"removed\" is one the detector no longer finds at that place.",
    ]


def _pose_md(p: dict | None, what: str, videos: bool = False) -> list[str]:
    if p is None:
        return [f"Not measured ({what})."]
    lines = [
        f"{p['people']} people{' (a person in each evaluated video frame counts once)' if videos else ''}; "
        f"mean OKS **{_f(p['oks']['mean'])}** (median {_f(p['oks']['median'])}), "
        f"{_f(100 * p['oks_at_least_0.5'], 1)} % with OKS >= 0.5; PCK@0.05 {_f(p['pck'].get('0.05'))}, "
        f"PCK@0.1 {_f(p['pck'].get('0.1'))}; {p['not_found']} not found.", "",
        "| joint group | OKS | PCK@0.1 | people |", "|---|---|---|---|",
    ]
    lines += [f"| {g} | {_f(v['oks'])} | {_f(v['pck_0.1'])} | {v['people']} |" for g, v in p["groups"].items()]
    return lines


def _attributes_md(s: dict) -> list[str]:
    a = s["attributes"]
    if not a:
        return ["No sampled attributes in the manifest."]
    lines = ["| attribute | n | counts | chi-square p | note |", "|---|---|---|---|---|"]
    for k, v in a.items():
        counts = ", ".join(f"{c} {n}" for c, n in v["counts"].items())
        lines.append(f"| {k} | {v['n']} | {counts} | {_f(v.get('p_value'))} | {v.get('note', '')} |")
    lines += ["", "The p-value tests whether the people drawn follow the distribution asked for (small p, "
              "e.g. < 0.01: they do not). With few people the test has little power: look at the counts."]
    if s.get("observed"):
        lines += ["", "What a classifier sees in the outputs, against what was asked:", "",
                  "| attribute | people labelled | agreement |", "|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {_f(v['agreement'])} |" for k, v in s["observed"].items()]
    return lines


def _frame_list(frames: list[int], stride: int, most: int = 8) -> str:
    """Frame indices as runs (``0-12, 40``; a run steps by the stride, two frames are listed), at most
    ``most`` runs shown."""
    if not frames:
        return "none"
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + stride:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    text = ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + stride else f"{a}-{b}" for a, b in runs[:most])
    return text + (f", ... ({len(frames)} frames)" if len(runs) > most else "")


def _videos_md(s: Mapping[str, Any]) -> list[str]:
    lines = ["Each video is measured frame by frame like a photo (every N-th frame with `--frame-stride N`); "
             "each evaluated frame counts like one image above. The avatars alone are not measured for videos "
             "(a video run saves no per-frame body fit). Per-frame measures: `images.jsonl`.", "",
             "| video | frames evaluated | faces | leaks | frames that leak | max face similarity | mean OKS |",
             "|---|---|---|---|---|---|---|"]
    for v in s["videos"]:
        every = f", every {v['frame_stride']}" if v["frame_stride"] > 1 else ""
        lines.append(f"| {v['image']} | {v['frames_evaluated']} of {v['frames']}{every} | {_f(v['faces'])} | "
                     f"{_f(v['leaks'])} | {_frame_list(v['leak_frames'], v['frame_stride'])} | "
                     f"{_f(v['max_similarity'])} | {_f(v['mean_oks'])} |")
    return lines + ["", "Mean OKS: the mean over the evaluated frames with people of each frame's mean OKS."]


def write_report(summary: Mapping[str, Any], out_dir: str | Path, title: str = "RefSD evaluation") -> list[Path]:
    """Write ``eval.json``, ``report.md`` and the plots (:data:`PLOTS`, where there is data) into
    ``out_dir``; returns the paths written."""
    from .plots import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "eval.json"]
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True, allow_nan=False, default=str))
    tmp.replace(out / "eval.json")
    plots = write_plots(summary, out)
    written += plots
    s = summary
    im = s["images"]
    px = s.get("pixels")
    vids = s.get("videos") or []
    frames = sum(v["frames_evaluated"] for v in vids)
    md = [f"# {title}", "",
          f"Images{' and videos' if vids else ''}: {im['ok']} evaluated"
          + (f" ({len(vids)} video(s), {frames} frames)" if vids else "")
          + f", {im['error']} with errors, {im['skipped']} skipped; "
          f"{_f(s['seconds_per_image']['mean'], 2)} s per image{' or video frame' if vids else ''}.", ""]
    if s["errors"]:
        md += ["Errors:", ""] + [f"- `{k}`: {v}" for k, v in s["errors"].items()] + [""]
    md += ["## Privacy: identity", ""] + _identity_md(s) + [""]
    if px:
        md += ["## Privacy: pixels", "",
               f"Leak ratio (share of the replaced region still equal to the photo): max {_f(px['leak_ratio']['max'], 6)}; "
               f"{px['failed']} image(s) failed the run's pixel check.", ""]
    md += ["## Pose kept", "", "Keypoints found on the output against the input keypoints (OKS: COCO's keypoint "
           "similarity, 1 = same place; PCK@a: share of joints within a x the person's height). High values mean "
           "the new people stand exactly where the old ones stood, so pose labels stay valid.", ""]
    md += _pose_md(s["pose"], "--no-pose", bool(vids)) + [""]
    md += ["### The avatars alone (fit + render, before diffusion)", ""]
    md += _pose_md(s["avatar_pose"], "no body fit or avatar keypoints saved by the run"
                   + ("; never for videos" if vids else "")) + [""]
    if vids:
        md += ["## Videos", ""] + _videos_md(s) + [""]
    md += ["## Attributes", ""] + _attributes_md(s) + [""]
    for p in plots:
        md += [f"![{p.stem}]({p.name})", ""]
    (out / "report.md").write_text("\n".join(md))
    written.append(out / "report.md")
    return written

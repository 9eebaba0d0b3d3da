"""``refsd study report``: the numbers of a study, a CSV of the raw answers, plots and report.md.

Per question family (psi-A privacy, psi-B pose, psi-C realism and satisfaction, phi attribute
fidelity), per psi-C aspect and per phi attribute: n, mean, sd, 95 % CI (Student t, over the
answers) and Krippendorff's ordinal alpha (raters x questions). Attention checks: per rater,
how many were answered as asked; a rater who failed one is flagged (and left out of the numbers
with ``exclude_flagged``). Files, in ``STUDY/report/`` unless told otherwise::

    answers.csv     one row per answer (rater, question, family, aspect, person, image, value, ...)
    summary.json    every number of report.md
    psi.png  phi.png  likert.png
    report.md
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from .definition import DB_FILE, FAMILIES, FAMILY_ORDER, Study, StudyError
from .questions import PHI_LABELS
from .stats import describe, ordinal_alpha
from .store import AnswerStore

__all__ = ["collect", "summarize", "write_report"]

CSV_FIELDS = ("rater", "rater_kind", "item", "family", "aspect", "person", "image", "text", "value", "expected",
              "attention_passed", "position", "ms", "answered")


def collect(study: Study) -> list[dict[str, Any]]:
    """Every stored answer joined with its question (the rows of answers.csv)."""
    if not (study.folder / DB_FILE).is_file():
        raise StudyError(f"{study.folder} has no answers yet ({DB_FILE} is missing): run `refsd study serve "
                         f"{study.folder}` and let raters answer first")
    people = study.people
    rows = []
    for a in AnswerStore(study).all_answers():
        it = study.by_id.get(a["item"])
        if it is None:  # an answer to a question no longer in study.json: kept in the database, reported apart
            it = {"family": "unknown", "aspect": "", "person": None, "text": "", "expected": None}
        exp = it.get("expected")
        rows.append({
            "rater": a["label"], "rater_kind": a["kind"], "item": a["item"], "family": it["family"],
            "aspect": it.get("aspect", ""), "person": it.get("person") or "",
            "image": people.get(it.get("person") or "", {}).get("image", ""), "text": it.get("text", ""),
            "value": a["value"], "expected": exp, "attention_passed": None if exp is None else a["value"] == exp,
            "position": a["position"], "ms": a["ms"], "answered": a["answered"],
        })
    return rows


def _table(rows: list[dict[str, Any]]) -> tuple[list[list[float]], int]:
    raters = sorted({r["rater"] for r in rows})
    items = sorted({r["item"] for r in rows})
    ri, ii = {r: k for k, r in enumerate(raters)}, {it: k for k, it in enumerate(items)}
    t = np.full((len(raters), len(items)), np.nan)
    for r in rows:
        t[ri[r["rater"]], ii[r["item"]]] = r["value"]
    return t.tolist(), len(items)


def _stats(rows: list[dict[str, Any]], scale: tuple[int, int]) -> dict[str, Any]:
    out = describe(r["value"] for r in rows)
    alpha, note = ordinal_alpha(_table(rows)[0], list(range(scale[0], scale[1] + 1))) if rows else (None, "no answers")
    out.update(alpha=alpha, alpha_note=note, questions=len({r["item"] for r in rows}))
    return out


def summarize(study: Study, rows: list[dict[str, Any]], exclude_flagged: bool = False) -> dict[str, Any]:
    """All numbers of the report (what summary.json holds)."""
    total = len(study.items)
    raters: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = raters.setdefault(r["rater"], {"rater": r["rater"], "answered": 0, "checks": 0, "checks_passed": 0})
        d["answered"] += 1
        if r["family"] == "attention":
            d["checks"] += 1
            d["checks_passed"] += bool(r["attention_passed"])
    n_checks = sum(1 for it in study.items if it["family"] == "attention")
    for d in raters.values():
        d["complete"] = d["answered"] == total
        d["flagged"] = d["checks_passed"] < d["checks"]
    used = [r for r in rows if r["family"] in FAMILIES and r["family"] != "attention"
            and not (exclude_flagged and raters[r["rater"]]["flagged"])]
    families = {f: _stats([r for r in used if r["family"] == f], study.scale) for f in FAMILY_ORDER}
    aspects: dict[str, dict[str, Any]] = {}
    for f in ("psi_c", "phi"):
        names = [a for a in ([*PHI_LABELS] if f == "phi" else ["realism", "satisfaction"])
                 if any(it["family"] == f and it.get("aspect") == a for it in study.items)]
        aspects[f] = {a: _stats([r for r in used if r["family"] == f and r["aspect"] == a], study.scale)
                      for a in names}
    return {
        "title": study.title, "study_id": study.study_id, "manifest": study.data.get("manifest"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "people": len(study.people), "images": len({p["image"] for p in study.people.values()}),
        "questions_per_rater": total, "attention_checks": n_checks, "answers": len(rows),
        "exclude_flagged": exclude_flagged, "raters": sorted(raters.values(), key=lambda d: d["rater"]),
        "families": families, "aspects": aspects, "overall": _stats(used, study.scale),
        "unknown_answers": sum(1 for r in rows if r["family"] == "unknown"),
    }


def _f(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _row(label: str, s: dict[str, Any], alpha: bool = True) -> str:
    ci = "–" if s["ci_low"] is None else f"[{_f(s['ci_low'])}, {_f(s['ci_high'])}]"
    cells = [label, str(s["n"]), _f(s["mean"]), _f(s["sd"]), ci]
    if alpha:
        cells.append(_f(s["alpha"], 3) if s["alpha"] is not None else f"– ({s['alpha_note']})")
    return "| " + " | ".join(cells) + " |"


def _markdown(s: dict[str, Any], plots: dict[str, str]) -> str:
    fam, asp = s["families"], s["aspects"]
    head = "| question | n | mean | sd | 95 % CI | Krippendorff's α (ordinal) |\n|---|---:|---:|---:|---|---:|"
    lines = [
        f"# {s['title']}: results", "",
        f"{s['people']} people in {s['images']} image(s), {s['questions_per_rater']} questions per rater "
        f"({s['attention_checks']} attention checks), {len(s['raters'])} rater(s), {s['answers']} answers. "
        f"Answers from 1 (strongly disagree) to 5 (strongly agree). Run: `{s['manifest']}`. Report made {s['created']}.",
        "", "## ψ: privacy, pose, realism", "", head,
        _row("ψ-A privacy: *the two pictures show the same person* (lower is better)", fam["psi_a"]),
        _row("ψ-B pose: *same pose as the original* (higher is better)", fam["psi_b"]),
        _row("ψ-C realism and satisfaction (higher is better)", fam["psi_c"]),
    ]
    lines += [_row(f"&nbsp;&nbsp;ψ-C {a}", v) for a, v in asp["psi_c"].items()]
    lines += ["", f"![psi]({plots['psi']})", "", "## φ: attribute fidelity (is the requested attribute visible?)", "",
              head.replace("question", "attribute"), _row("**φ, all attributes**", fam["phi"])]
    lines += [_row(PHI_LABELS.get(a, a), v) for a, v in asp["phi"].items()]
    lines += ["", f"![phi]({plots['phi']})", "", "## Answer distributions", "", f"![likert]({plots['likert']})", "",
              "## Raters", "", "| rater | answered | attention checks passed | flagged |", "|---|---:|---:|---|"]
    for r in s["raters"]:
        flag = "**yes: failed an attention check**" if r["flagged"] else "no"
        lines.append(f"| {r['rater']} | {r['answered']} of {s['questions_per_rater']} | "
                     f"{r['checks_passed']} of {r['checks']} | {flag} |")
    flagged = [r["rater"] for r in s["raters"] if r["flagged"]]
    lines += ["", (f"Flagged raters ({', '.join(flagged)}) are **{'left out of' if s['exclude_flagged'] else 'included in'}**"
                   " the numbers above" + ("." if s["exclude_flagged"] else " (`--exclude-flagged` leaves them out)."))
              if flagged else "No rater failed an attention check.", "",
              f"Agreement over all questions: α = {_f(s['overall']['alpha'], 3)} ({s['overall']['alpha_note']}).", "",
              "## Method", "",
              "Mean and sample standard deviation over the answers; 95 % CI = mean ± t(0.975, n − 1) · sd / √n "
              "(Student t, answers treated as independent: several answers of one rater are not, so the interval "
              "is optimistic with few raters). Krippendorff's α with the ordinal metric over the raters × questions "
              "table (missing answers allowed). Attention checks are not part of any number. Raw answers: "
              "`answers.csv`; all numbers: `summary.json`.", ""]
    if s["unknown_answers"]:
        lines += [f"{s['unknown_answers']} stored answer(s) belong to questions no longer in study.json; they are "
                  "in answers.csv (family `unknown`) and in no number.", ""]
    return "\n".join(lines)


def write_report(folder: str | Path, out: str | Path | None = None, exclude_flagged: bool = False) -> dict[str, Any]:
    """Write answers.csv, summary.json, the plots and report.md; returns the summary."""
    from .plots import write_plots

    study = Study.load(folder)
    rows = collect(study)
    if not rows:
        raise StudyError(f"{study.folder} has no answers yet: let raters answer (`refsd study serve {study.folder}`)")
    out = Path(out) if out else study.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "answers.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    summary = summarize(study, rows, exclude_flagged)
    plots = write_plots(summary, rows, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(summary, plots), encoding="utf-8")
    summary["files"] = {"csv": str(out / "answers.csv"), "summary": str(out / "summary.json"),
                        "report": str(out / "report.md"), **{k: str(out / v) for k, v in plots.items()}}
    return summary

"""``refsd study``: a perception study of a run's output, with your own raters, on your own machine.

::

    refsd study create OUT/manifest.jsonl -o study/ [--images PHOTOS/] [--raters 5] [--attention-checks 3]
    refsd study serve study/ [--host 127.0.0.1] [--port 8765]    # raters open the printed link(s)
    refsd study report study/ [--exclude-flagged]               # -> study/report/report.md, answers.csv, plots
    refsd study raters study/ --add 2                           # more rater links for a --raters study

``create`` cuts every replaced person out of the original photo and the output (psi-A: both on
grey; psi-B: side by side; psi-C and phi: the output) and writes the questions to
``study.json``; ``serve`` runs the rating page (standard library only, no external assets,
answers in ``study/answers.sqlite``); ``report`` computes per question family and per attribute
mean, sd, 95 % CI, n and Krippendorff's ordinal alpha (see :mod:`refsd.study`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

__all__ = ["add_parser", "main"]

DETECT_MODELS = ("lite", "full", "heavy", "none")


def _attributes(text: str) -> list[str]:
    from ..study import PHI_ATTRIBUTES

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in PHI_ATTRIBUTES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown attribute(s) {bad}; choose from {', '.join(PHI_ATTRIBUTES)}")
    return names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("study", help="perception study of a run's output: create, serve, report",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="study_command", metavar="STEP")

    c = s.add_parser("create", help="build a study folder from a run's manifest.jsonl")
    c.add_argument("manifest", type=Path, help="the run's OUT/manifest.jsonl (or OUT/)")
    c.add_argument("-o", "--output", type=Path, required=True, help="the study folder to create")
    c.add_argument("--images", type=Path, default=None,
                   help="the run's input folder, for manifests without 'source' paths (the photos under their "
                   "manifest names)")
    c.add_argument("--attributes", type=_attributes, default=None,
                   help="phi attributes to ask about, comma-separated (default: all: gender, age, skin_tone, "
                   "hair_length, hair_color, body, top, bottom, shoes)")
    c.add_argument("--attention-checks", type=int, default=3, help="attention-check questions (default 3)")
    c.add_argument("--raters", type=int, default=0,
                   help="make N personal rater links (tokens); 0 (default): raters sign in with their name")
    c.add_argument("--seed", type=int, default=0, help="seed of the attention checks and of every rater's order")
    c.add_argument("--title", default="RefSD perception study", help="the title raters see")
    c.add_argument("--detect-model", choices=DETECT_MODELS, default="full",
                   help="person detector for the cut-out masks (default full; none: fitted silhouettes only)")
    c.add_argument("--body", type=Path, default=None, help="the SMPL-X .npz file, for runs fitted with SMPL-X")
    c.add_argument("--skip-missing", action="store_true",
                   help="leave out images whose files are missing instead of stopping")
    c.add_argument("--force", action="store_true", help="replace a study in a non-empty folder (never its answers)")

    v = s.add_parser("serve", help="run the rating web app")
    v.add_argument("study", type=Path, help="the study folder")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    v.add_argument("--verbose", action="store_true", help="log every request")

    r = s.add_parser("report", help="statistics, answers.csv, plots and report.md")
    r.add_argument("study", type=Path, help="the study folder")
    r.add_argument("-o", "--output", type=Path, default=None, help="report folder (default STUDY/report)")
    r.add_argument("--exclude-flagged", action="store_true",
                   help="leave raters who failed an attention check out of the numbers")

    a = s.add_parser("raters", help="list the rater links, or add more (--add N)")
    a.add_argument("study", type=Path, help="the study folder")
    a.add_argument("--add", type=int, default=0, help="add N rater tokens")
    a.add_argument("--url", default="http://127.0.0.1:8765/", help="the address the study is served at")
    p.set_defaults(func=main, _parser=p)
    return p


def _create(args) -> int:
    from ..study import PHI_ATTRIBUTES, create_study

    study = create_study(
        args.manifest, args.output, images=args.images, attributes=args.attributes or PHI_ATTRIBUTES,
        attention_checks=args.attention_checks, raters=args.raters, seed=args.seed, title=args.title,
        detect_model=None if args.detect_model == "none" else args.detect_model, body=args.body,
        skip_missing=args.skip_missing, force=args.force,
        progress=lambda name: print(f"refsd study create: {name}", file=sys.stderr))
    fams: dict[str, int] = {}
    for it in study.items:
        fams[it["family"]] = fams.get(it["family"], 0) + 1
    for note in study.data.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    for sk in study.data.get("skipped", []):
        print(f"skipped {sk['image']}: {sk['reason']}", file=sys.stderr)
    print(json.dumps({"study": str(study.folder), "people": len(study.people), "questions": len(study.items),
                      "families": fams, "raters": len(study.raters), "skipped": len(study.data.get("skipped", []))}))
    print(f"next: refsd study serve {study.folder}", file=sys.stderr)
    return 0


def _links(study, url: str) -> list[str]:
    base = url if url.endswith("/") else url + "/"
    return [f"{r['id']}: {base}?token={r['token']}" for r in study.raters]


def _serve(args) -> int:
    from ..study.server import make_server

    server = make_server(args.study, args.host, args.port, quiet=not args.verbose)
    study = server.study
    counts = server.store.counts()
    print(f"refsd study serve: {study.title!r}, {len(study.items)} questions; {counts['answers']} answers from "
          f"{counts['raters']} rater(s) so far", file=sys.stderr)
    if study.uses_tokens:
        print("Rater links (one per rater, keep them apart):", file=sys.stderr)
        for line in _links(study, server.url):
            print(f"  {line}", file=sys.stderr)
    else:
        print(f"Raters open {server.url} and sign in with their name.", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Listening on {args.host}: reachable from other machines on this network.", file=sys.stderr)
    print(f"Serving on {server.url} (Ctrl-C stops; answers are saved as they come)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _report(args) -> int:
    from ..study.report import write_report

    summary = write_report(args.study, args.output, exclude_flagged=args.exclude_flagged)
    fams = {f: {k: summary["families"][f][k] for k in ("n", "mean", "sd", "ci_low", "ci_high", "alpha")}
            for f in summary["families"]}
    flagged = [r["rater"] for r in summary["raters"] if r["flagged"]]
    print(json.dumps({"report": summary["files"]["report"], "answers": summary["answers"],
                      "raters": len(summary["raters"]), "flagged": flagged, "families": fams}))
    return 0


def _raters(args) -> int:
    from ..study import Study, StudyError

    study = Study.load(args.study)
    if args.add < 0:
        raise StudyError("--add takes a positive number")
    if args.add and not study.uses_tokens and (study.folder / "answers.sqlite").exists():
        raise StudyError("this study signs raters in by name and has answers already; adding tokens would lock them "
                         "out. Build a new study with --raters N instead")
    raters = study.data.setdefault("raters", [])
    known = {r["id"] for r in raters}
    k = len(raters)
    for _ in range(args.add):
        k += 1
        while f"r{k:02d}" in known:
            k += 1
        raters.append({"id": f"r{k:02d}", "token": secrets.token_urlsafe(9)})
    if args.add:
        study.save()
    for line in _links(Study.load(study.folder), args.url) or ["(no rater links: raters sign in with their name)"]:
        print(line)
    return 0


def main(args) -> int:
    from ..errors import RefSDError

    step = getattr(args, "study_command", None)
    if step is None:
        args._parser.print_help()
        return 2
    try:
        return {"create": _create, "serve": _serve, "report": _report, "raters": _raters}[step](args)
    except RefSDError as e:  # StudyError, and a bad body fit or attribute record of the run
        print(f"refsd study {step}: error: {e}", file=sys.stderr)
        return 2

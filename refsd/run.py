"""``refsd run``: a ComfyUI workflow over a folder of images, headless, on one or more servers.

For every image (and its keypoint JSON with the same name) it uploads the files, binds them
into the graph (the ``LoadImage`` and ``RefSDLoadPoseKeypoints`` nodes), gives every seed
input the image's own seed (:func:`refsd.manifest.image_seed`: the same image always gets
the same seed, whatever the order or the server), queues one prompt, follows its progress
over the websocket, downloads what the graph saved and appends one line to
``<output>/manifest.jsonl`` (schema in :mod:`refsd.manifest`).

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

Only ComfyUI's public HTTP/websocket API is used, so the servers can be anywhere.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .comfy_client import ComfyClient, ComfyConnectionError, PromptRejected
from .manifest import Manifest, image_seed, keypoints_for, list_images, output_stem, privacy_error
from .workflow import WorkflowError, is_api_format, is_ui_format, ui_to_api

__all__ = ["RunOptions", "RunError", "load_workflow", "bind_prompt", "run_folder", "add_parser", "main"]

IMAGE_LOADERS = ("LoadImage",)
KEYPOINT_LOADERS = ("RefSDLoadPoseKeypoints",)
SEED_INPUTS = ("seed", "noise_seed")
TRANSIENT_TEXT = ("out of memory", "cuda error", "connection", "timed out", "interrupted")


class RunError(RuntimeError):
    """The run cannot start (bad workflow, no server, output folder in use)."""


@dataclass
class RunOptions:
    workflow: Path
    input_dir: Path
    output_dir: Path
    servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8188"])
    keypoint_dir: Path | None = None
    seed: int = 0
    retries: int = 2
    timeout: float = 1800.0
    overrides: list[str] = field(default_factory=list)
    keep_failed: bool = False
    allow_unfitted: bool = False
    progress: bool = True
    server_wait: float = 30.0


# -- the graph --------------------------------------------------------------------------------
def load_workflow(path: Path, client: ComfyClient) -> dict:
    """An API-format prompt from a UI- or API-format workflow file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunError(f"workflow file {path} does not exist") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"workflow file {path} is not JSON ({e}); pass a workflow saved by ComfyUI") from e
    if is_ui_format(data):
        try:
            return ui_to_api(data, client.object_info())
        except WorkflowError as e:
            raise RunError(f"{path}: {e}") from e
    if is_api_format(data):
        return {k: v for k, v in data.items() if not str(k).startswith("_")}
    raise RunError(
        f"{path} is neither a UI-format workflow ('nodes' and 'links') nor an API-format prompt "
        "({id: {class_type, inputs}}); save it from ComfyUI with Save or Export (API)"
    )


def _parse_override(text: str) -> tuple[str, str, Any]:
    key, sep, value = text.partition("=")
    node, dot, name = key.partition(".")
    if not sep or not dot or not node or not name:
        raise RunError(f"--set {text!r}: expected NODE_ID.INPUT=VALUE, e.g. --set 20.steps=30")
    try:
        val = json.loads(value)
    except json.JSONDecodeError:
        val = value  # a plain string
    return node, name, val


def apply_overrides(prompt: dict, overrides: list[str]) -> dict:
    prompt = copy.deepcopy(prompt)
    for text in overrides:
        node, name, val = _parse_override(text)
        if node not in prompt:
            raise RunError(f"--set {text!r}: the workflow has no node {node} (nodes: {', '.join(sorted(prompt))})")
        prompt[node].setdefault("inputs", {})[name] = val
    return prompt


def _nodes_of(prompt: dict, types: tuple[str, ...]) -> list[str]:
    return sorted((k for k, v in prompt.items() if v.get("class_type") in types), key=_node_key)


def _node_key(k: str) -> tuple:
    return (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))


def bind_prompt(prompt: dict, image_name: str, keypoint_name: str | None, seed: int) -> dict:
    """The workflow with this image, its keypoints and its seed filled in."""
    p = copy.deepcopy(prompt)
    for nid in _nodes_of(p, IMAGE_LOADERS):
        p[nid]["inputs"]["image"] = image_name
    if keypoint_name is not None:
        for nid in _nodes_of(p, KEYPOINT_LOADERS):
            p[nid]["inputs"]["file"] = keypoint_name
    for node in p.values():
        for name in SEED_INPUTS:
            if name in node.get("inputs", {}) and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = int(seed)
    return p


# -- one image --------------------------------------------------------------------------------
@dataclass
class Job:
    key: str  # image path relative to the input folder
    path: Path
    keypoints: Path | None
    attempts: int = 0
    started: float = 0.0


class Transient(Exception):
    """A failure worth retrying (maybe elsewhere)."""


def _check_image(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "the image is empty"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"cannot decode image {path.name}: {e}"
    return None


def _upload_name(key: str, path: Path) -> str:
    """Unique per image: two images called photo.png in different folders never collide."""
    digest = hashlib.blake2b(key.encode(), digest_size=5).hexdigest()
    return f"refsd_run_{digest}_{path.name}"


def _labels(prompt: dict) -> dict[str, str]:
    """A readable, unique file label per output node (from its filename_prefix)."""
    labels: dict[str, str] = {}
    for nid in sorted(prompt, key=_node_key):
        pref = prompt[nid].get("inputs", {}).get("filename_prefix")
        base = Path(str(pref)).name if isinstance(pref, str) and pref.strip() else ""
        base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base) or f"node{nid}"
        if base in labels.values():
            base = f"{base}_{nid}"
        labels[nid] = base
    return labels


def _first_ui(outputs: dict, prompt: dict, class_type: str, key: str) -> Any:
    for nid in sorted(outputs, key=_node_key):
        if prompt.get(nid, {}).get("class_type") == class_type and key in outputs[nid]:
            return outputs[nid][key]
    return None


class _Runner:
    def __init__(self, opts: RunOptions, prompt: dict, manifest: Manifest, needs_keypoints: bool):
        self.opts = opts
        self.prompt = prompt
        self.labels = _labels(prompt)
        self.manifest = manifest
        self.needs_keypoints = needs_keypoints
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.pending = 0
        self.lock = threading.Lock()
        self.alive: set[str] = set()
        self.bar = None
        self.status: dict[str, str] = {}

    # progress ---------------------------------------------------------------------------------
    def _show(self, server: str, text: str) -> None:
        if self.bar is None:
            return
        with self.lock:
            if self.status.get(server) == text:
                return
            self.status[server] = text
            self.bar.set_postfix_str(" | ".join(f"{s.split('//')[-1]}: {t}" for s, t in self.status.items()),
                                     refresh=True)

    def _finish(self, rec: dict) -> None:
        self.manifest.write(rec)
        with self.lock:
            self.pending -= 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.opts.progress:
            print(f"[refsd run] {rec['image']}: {rec['status']}" + (f" ({rec['error']})" if rec.get("error") else ""),
                  file=sys.stderr)

    # one attempt ------------------------------------------------------------------------------
    def _attempt(self, client: ComfyClient, job: Job) -> dict:
        seed = image_seed(self.opts.seed, job.key)
        base = {"image": job.key, "seed": seed, "worker": client.url, "attempts": job.attempts}
        bad = _check_image(job.path)
        if bad:
            return {**base, "status": "error", "error": bad}
        if self.needs_keypoints and job.keypoints is None:
            return {**base, "status": "skipped",
                    "error": f"no keypoint file {Path(job.key).stem}.json (the workflow loads keypoints per image)"}
        try:
            up = client.upload(job.path, name=_upload_name(job.key, job.path))
            image_name = "/".join(x for x in (up.get("subfolder"), up.get("name")) if x) or job.path.name
            kp_name = None
            if job.keypoints is not None and self.needs_keypoints:
                kp_name = client.upload(job.keypoints, name=_upload_name(job.key, job.keypoints)).get("name")
        except ComfyConnectionError as e:
            raise Transient(str(e)) from e
        prompt = bind_prompt(self.prompt, image_name, kp_name, seed)

        def on_progress(msg: dict) -> None:
            d = msg.get("data", {})
            if msg.get("type") == "progress":
                self._show(client.url, f"{Path(job.key).name} node {d.get('node')} {d.get('value')}/{d.get('max')}")
            elif msg.get("type") == "executing" and d.get("node"):
                node = self.prompt.get(str(d.get("node")), {}).get("class_type", d.get("node"))
                self._show(client.url, f"{Path(job.key).name} {node}")

        try:
            result = client.run(prompt, timeout=self.opts.timeout, on_progress=on_progress)
        except PromptRejected as e:
            return {**base, "status": "error", "error": str(e)}
        except (ComfyConnectionError, TimeoutError, OSError) as e:
            raise Transient(f"{type(e).__name__}: {e}") from e
        except Exception as e:  # websocket-client's own exceptions (closed connection, ...)
            if type(e).__module__.startswith("websocket"):
                raise Transient(f"{type(e).__name__}: {e}") from e
            raise
        if result.error is not None:
            msg = f"{result.error.get('node_type')} (node {result.error.get('node_id')}): " \
                  f"{result.error.get('exception_type', '')}: {result.error.get('exception_message', '')}".strip()
            if any(t in msg.lower() for t in TRANSIENT_TEXT):
                raise Transient(msg)
            return {**base, "status": "error", "error": msg}
        outputs = self._download(client, job, result.outputs)
        rec = {
            **base, "status": "ok", "outputs": outputs, "seconds": round(time.monotonic() - job.started, 3),
            "attributes": _first_ui(result.outputs, prompt, "RefSDRenderAvatar", "attributes"),
            "fit": _first_ui(result.outputs, prompt, "RefSDFitBody", "fit"),
        }
        ratios = _first_ui(result.outputs, prompt, "RefSDPrivacyCheck", "leak_ratio")
        passed = _first_ui(result.outputs, prompt, "RefSDPrivacyCheck", "passed")
        # a person the fit skipped (too few keypoints) is not replaced: they would stay in the image
        unfitted = sum(len(f.get("skipped") or []) for f in (rec["fit"] or []))
        leak_failed = None
        if ratios is not None:
            rec["leak_ratio"] = max(float(r) for r in ratios)
            rec["privacy_passed"] = bool(all(passed)) if passed is not None else None
            # with the body fit connected, the check also fails for unfitted people alone: counted once, below
            leak_failed = rec["privacy_passed"] is False and not (unfitted and rec["leak_ratio"] == 0.0)
        failure = privacy_error(False if leak_failed else None, rec["leak_ratio"], unfitted,
                                self.opts.allow_unfitted, "see fit.skipped")
        if failure:
            rec["status"], rec["error"] = "error", failure
            if not self.opts.keep_failed:
                for o in outputs:
                    (self.opts.output_dir / o).unlink(missing_ok=True)
                rec["outputs"] = []
        return rec

    def _download(self, client: ComfyClient, job: Job, outputs: dict) -> list[str]:
        stem = output_stem(job.key)
        folder = self.opts.output_dir / stem
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for nid in sorted(outputs, key=_node_key):
            records = [r for k in ("images", "files") for r in (outputs[nid].get(k) or [])
                       if isinstance(r, dict) and r.get("type", "output") == "output" and r.get("filename")]
            for k, rec in enumerate(records):
                ext = Path(rec["filename"]).suffix or ".bin"
                name = f"{self.labels.get(nid, 'node' + nid)}{'' if len(records) == 1 else f'_{k:02d}'}{ext}"
                try:
                    data = client.download(rec)
                except ComfyConnectionError as e:
                    raise Transient(str(e)) from e
                tmp = folder / f".{name}.part"
                tmp.write_bytes(data)
                os.replace(tmp, folder / name)
                written.append(f"{stem}/{name}")
        return written

    # the worker loop --------------------------------------------------------------------------
    def worker(self, url: str) -> None:
        client = ComfyClient(url, timeout=60.0)
        while True:
            with self.lock:
                if self.pending <= 0:
                    return
            try:
                job = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            job.attempts += 1
            job.started = job.started or time.monotonic()
            try:
                rec = self._attempt(client, job)
            except Transient as e:
                if job.attempts <= self.opts.retries:
                    self._show(url, f"retrying {Path(job.key).name}: {e}")
                    self.jobs.put(job)
                else:
                    self._finish({"image": job.key, "status": "error", "worker": url, "attempts": job.attempts,
                                  "seed": image_seed(self.opts.seed, job.key),
                                  "error": f"failed {job.attempts} times, last: {e}"})
                if not self._wait_server(client):
                    self._retire(url)
                    return
                continue
            except Exception as e:  # anything unexpected: record it, keep going
                rec = {"image": job.key, "status": "error", "worker": url, "attempts": job.attempts,
                       "seed": image_seed(self.opts.seed, job.key), "error": f"{type(e).__name__}: {e}"}
            self._finish(rec)

    def _wait_server(self, client: ComfyClient) -> bool:
        deadline = time.monotonic() + self.opts.server_wait
        while time.monotonic() < deadline:
            if client.is_ready():
                return True
            with self.lock:
                if self.pending <= 0:
                    return False  # nothing left to wait for
            time.sleep(0.5)
        return False

    def _retire(self, url: str) -> None:
        with self.lock:
            self.alive.discard(url)
            last = not self.alive
        print(f"[refsd run] server {url} is unreachable; it gets no more images", file=sys.stderr)
        if last:  # nobody left: record what is still queued
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                self._finish({"image": job.key, "status": "error", "attempts": job.attempts,
                              "seed": image_seed(self.opts.seed, job.key),
                              "error": "no ComfyUI server reachable; run again to resume"})


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


def run_folder(opts: RunOptions) -> dict[str, int]:
    """Run the workflow over the folder. Returns the manifest summary (``ok``/``error``/``skipped``)."""
    if not opts.servers:
        raise RunError("no ComfyUI server given (--server http://HOST:PORT)")
    images = list_images(opts.input_dir)
    lock = _lock_output(opts.output_dir)
    try:
        live = [u.rstrip("/") for u in dict.fromkeys(opts.servers) if ComfyClient(u, timeout=10).is_ready()]
        for u in opts.servers:
            if u.rstrip("/") not in live:
                print(f"[refsd run] server {u} does not answer /system_stats; skipping it", file=sys.stderr)
        if not live:
            raise RunError(f"no ComfyUI server answers at {', '.join(opts.servers)}; start one or fix --server")
        prompt = apply_overrides(load_workflow(opts.workflow, ComfyClient(live[0])), opts.overrides)
        if not _nodes_of(prompt, IMAGE_LOADERS):
            raise RunError(f"{opts.workflow} has no LoadImage node to feed the images into")
        needs_kp = bool(_nodes_of(prompt, KEYPOINT_LOADERS))
        manifest = Manifest(opts.output_dir / "manifest.jsonl", opts.output_dir)
        keys = [p.relative_to(opts.input_dir).as_posix() for p in images]
        manifest.compact()  # one line per image from here on
        runner = _Runner(opts, prompt, manifest, needs_kp)
        todo = [Job(k, p, keypoints_for(p, opts.input_dir, opts.keypoint_dir))
                for k, p in zip(keys, images, strict=True) if not manifest.is_done(k)]
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
    )
    try:
        summary = run_folder(opts)
    except (RunError, FileNotFoundError) as e:
        print(f"refsd run: {e}", file=sys.stderr)
        return 2
    print(f"refsd run: {summary['ok']} ok, {summary['error']} failed, {summary['skipped']} skipped; "
          f"manifest {opts.output_dir / 'manifest.jsonl'}", file=sys.stderr)
    return 1 if summary["error"] else 0

"""``refsd run``'s work queue: server worker threads that run one image at a time.

Each server gets a worker thread that takes the next image off the queue, uploads it and its
keypoints, queues the bound prompt, follows its progress over the websocket, downloads what
the graph saved (written atomically, deterministic names ``<output>/<image stem>/<label>.png``)
and records the result in the manifest. An image without a keypoint JSON (``--people auto``), or
every image (``--people detect``), gets the graph with RefSD Detect People in place of the
keypoint loaders (:func:`refsd.comfyapi.binding.use_detector`); the detector's scores go into
the record. Transient failures (server gone, connection reset,
timeout, out of memory) are put back on the queue, to be retried on another server when
there is one; a server that stays unreachable is dropped. A failed privacy check or an
unfitted person makes the image an error and its outputs are deleted (unless
``--keep-failed`` / ``--allow-unfitted``).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .binding import (
    RunOptions,
    _node_key,
    _upload_name,
    bind_prompt,
    detect_error_hint,
    detections_of,
    people_source_for,
)
from .client import ComfyClient, ComfyConnectionError, PromptRejected
from .manifest import Manifest, image_seed, output_stem, privacy_error

__all__ = ["Job", "Transient"]

TRANSIENT_TEXT = ("out of memory", "cuda error", "connection", "timed out", "interrupted")


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

    from ..errors import RefSDError
    from ..pipeline.video import VIDEO_SUFFIXES, video_info

    if path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            return None if video_info(path)["width"] > 0 else "the video has no picture"
        except RefSDError as e:
            return str(e)

    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "the image is empty"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"cannot decode image {path.name}: {e}"
    return None


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


def video_summary(track_ids: list, attributes: list | None) -> dict:
    """``{"frames", "tracks": {id: {"frames", "attributes", "first", "last", "missing"}}, "gaps"}`` from
    RefSD Track People's ids per frame and person and RefSD Render Avatar's attributes per frame (one per
    fitted, i.e. tracked, person); ``gaps``: per track the frames it was missing between two sightings
    (a person hidden there, or missed and left unreplaced), as ``refsd pseudonymize`` records them."""
    from ..keypoints.track import record_sighting

    tracks: dict[str, dict] = {}
    for f, row in enumerate(track_ids):
        drawn = (attributes or [])[f] if attributes and f < len(attributes) else []
        for k, tid in enumerate([t for t in row if t is not None]):
            record_sighting(tracks, str(tid), f, drawn[k] if k < len(drawn) else None)
    gaps = {k: t["missing"] for k, t in tracks.items() if t["missing"]}
    return {"frames": len(track_ids), "tracks": tracks, "gaps": gaps}


def _max_leak(prompt: dict) -> float:
    """The Privacy Check's ``max_leak`` in the graph (0 when it is not a plain number)."""
    values = [n.get("inputs", {}).get("max_leak") for n in prompt.values() if n.get("class_type") == "RefSDPrivacyCheck"]
    return min((float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)), default=0.0)


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
        base = {"image": job.key, "seed": seed, "worker": client.url, "attempts": job.attempts,
                "source": str(job.path.resolve())}
        bad = _check_image(job.path)
        if bad:
            return {**base, "status": "error", "error": bad}
        source = people_source_for(self.prompt, self.opts.people, job.keypoints is not None)
        detect = self.needs_keypoints and source == "detect"  # the keypoint loaders become detectors
        base["people_source"] = source
        if source == "file" and job.keypoints is not None:
            base["keypoints"] = str(Path(job.keypoints).resolve())
        if self.needs_keypoints and job.keypoints is None and not detect:
            return {**base, "status": "skipped",
                    "error": f"no keypoint file {Path(job.key).stem}.json (the workflow loads keypoints per image; "
                    "--people auto detects the people instead)"}
        try:
            up = client.upload(job.path, name=_upload_name(job.key, job.path))
            image_name = "/".join(x for x in (up.get("subfolder"), up.get("name")) if x) or job.path.name
            kp_name = None
            if job.keypoints is not None and self.needs_keypoints and not detect:
                kp_name = client.upload(job.keypoints, name=_upload_name(job.key, job.keypoints)).get("name")
        except ComfyConnectionError as e:
            raise Transient(str(e)) from e
        prompt = bind_prompt(self.prompt, image_name, kp_name, seed,
                             detect=self.opts.detect_inputs() if detect else None)

        def on_progress(msg: dict) -> None:
            d = msg.get("data", {})
            if msg.get("type") == "progress":
                self._show(client.url, f"{Path(job.key).name} node {d.get('node')} {d.get('value')}/{d.get('max')}")
            elif msg.get("type") == "executing" and d.get("node"):
                node = prompt.get(str(d.get("node")), {}).get("class_type", d.get("node"))
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
            hint = detect_error_hint(result.error)
            if not hint and any(t in msg.lower() for t in TRANSIENT_TEXT):
                raise Transient(msg)
            return {**base, "status": "error", "error": hint + msg}
        outputs = self._download(client, job, result.outputs)
        rec = {
            **base, "status": "ok", "outputs": outputs, "seconds": round(time.monotonic() - job.started, 3),
            "attributes": _first_ui(result.outputs, prompt, "RefSDRenderAvatar", "attributes"),
            "fit": _first_ui(result.outputs, prompt, "RefSDFitBody", "fit"),
            "detections": detections_of(result.outputs, prompt),
            "identity": _first_ui(result.outputs, prompt, "RefSDPrivacyCheck", "identity"),
        }
        tracks = _first_ui(result.outputs, prompt, "RefSDTrackPeople", "track_ids")
        if tracks is not None:  # a video graph: the frames and each track's frames and look
            rec["video"] = video_summary(tracks, rec["attributes"])
        source_ui = _first_ui(result.outputs, prompt, "RefSDRenderAvatar", "attribute_source")
        if source_ui and isinstance(source_ui[0], dict) and source_ui[0].get("distribution"):
            rec["distribution"] = source_ui[0]["distribution"]
        ratios = _first_ui(result.outputs, prompt, "RefSDPrivacyCheck", "leak_ratio")
        passed = _first_ui(result.outputs, prompt, "RefSDPrivacyCheck", "passed")
        # a person the fit skipped (too few keypoints) is not replaced: they would stay in the image
        unfitted = sum(len(f.get("skipped") or []) for f in (rec["fit"] or []))
        leak_failed = None
        if ratios is not None:
            rec["leak_ratio"] = max(float(r) for r in ratios)
            rec["privacy_passed"] = bool(all(passed)) if passed is not None else None
            # the check also fails for unfitted people (body fit connected) or a recognisable face (identity):
            # each is reported once, below; the pixel check failed only when a leak ratio is over max_leak
            leak_failed = rec["privacy_passed"] is False and rec["leak_ratio"] > _max_leak(prompt)
        failure = privacy_error(False if leak_failed else None, rec["leak_ratio"], unfitted,
                                self.opts.allow_unfitted, "see fit.skipped", rec["identity"])
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

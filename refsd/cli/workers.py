"""One image of ``refsd pseudonymize``, and the loops that run it: in this process or in Ray Data actors.

:func:`process_one` runs the pipeline on one work item and returns its manifest record and
output files; :func:`run_local` and :func:`run_ray` map it over the items and hand each
result to the driver (:mod:`refsd.cli.pseudonymize`), which writes the files and the manifest.

With ``--ray`` the same per-image function runs in Ray Data actors (the models load once
per actor; one GPU per actor when the cluster has GPUs, else ``--ray-cpus-per-worker``
CPUs); the driver writes the outputs and the manifest, so the results are the same files
as a single-process run with the same seed and the same ``--threads`` (torch's CPU kernels
add up in a thread-dependent order, so the thread count is part of bit-exactness; on GPUs,
the same GPU model and software). The input (and ``--keypoints``) folder must be
readable at the same path on every Ray node. A video is one task of an actor, which runs
:func:`refsd.cli.video.process_video` as the single process does (same files, record and
per-chunk resume) and writes into the output folder itself: on a cluster that folder must be
shared at the same path (a node without it records the video as an error).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..comfyapi import output_stem, privacy_error
from ..errors import RefSDError

__all__ = ["OUTPUT_NAME", "process_one", "run_local", "run_ray"]

OUTPUT_NAME = "pseudonymized.png"  # as `refsd run` names refsd_full's output: <stem>/<label>.png


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def process_one(pipe, item: dict, options: dict, worker: str) -> tuple[dict, dict[str, bytes]]:
    """Run the pipeline on one work item ``{"image": key, "path", "keypoints" (None: detect),
    "people" ("file"/"detect"), "seed", "attempts"}``. Returns the manifest record and the output
    files (name relative to the output folder -> bytes); never raises for a per-image problem."""
    from PIL import Image

    from ..pipeline import to_uint8

    t0 = time.perf_counter()
    key = item["image"]
    people = item.get("people") or ("file" if item.get("keypoints") else "detect")
    rec: dict[str, Any] = {"image": key, "seed": item["seed"], "attempts": item.get("attempts", 1), "worker": worker,
                           "people_source": people}
    try:
        res = pipe(item["path"], item.get("keypoints"), seed=item["seed"], people=people)
    except Exception as e:  # per-image failure: recorded, not fatal
        rec.update(status="error", error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 3))
        return rec, {}
    stem = output_stem(key)
    rec.update(
        attributes=[res.attributes_dicts()], fit=res.fit_summary(), leak_ratio=res.leak_ratio,
        privacy_passed=res.privacy_passed, timings={k: round(v, 4) for k, v in res.timings.items()},
        notes=list(res.notes), people_source=res.people_source, source=str(Path(item["path"]).resolve()),
        keypoints=str(Path(item["keypoints"]).resolve()) if item.get("keypoints") and people == "file" else None,
        identity=[res.identity.to_dict()] if res.identity is not None else None,
        distribution=options.get("distribution"),
        detections=[res.detections] if res.detections is not None else None,  # per image (as refsd run), per person
    )
    which = "; ".join(f"person {i}: {why}" for i, why in res.unfitted)
    pixel_ok = res.leak_ratio <= options.get("max_leak", 0.0)
    error = privacy_error(None if options.get("keep_failed") or pixel_ok else False, res.leak_ratio,
                          len(res.unfitted), bool(options.get("allow_unfitted")), which,
                          None if options.get("keep_failed") else rec["identity"])
    if error:
        rec.update(status="error", error=error, seconds=round(time.perf_counter() - t0, 3))
        return rec, {}
    files = {f"{stem}/{OUTPUT_NAME}": _png(res.pil())}
    if options.get("save_extras"):
        files[f"{stem}/region.png"] = _png(Image.fromarray(to_uint8(res.region[..., None].expand(-1, -1, 3))))
        files[f"{stem}/body_fit.json"] = res.fit.to_json(indent=1).encode()
    rec.update(status="ok" if res.privacy_passed else "error", outputs=sorted(files),
               seconds=round(time.perf_counter() - t0, 3))
    if not res.privacy_passed:  # only with --keep-failed: the outputs are written, the image is an error
        why = privacy_error(False if not pixel_ok else None, res.leak_ratio, 0, True, "", rec["identity"])
        rec["error"] = f"{why} (outputs kept: --keep-failed)"
    return rec, files


def run_local(config: dict, items: list[dict], options: dict, on_result: Callable[[dict, dict], None],
              progress: Callable[[int], None] | None = None, threads: int | None = None) -> None:
    """Run every item in this process (the models load once)."""
    import torch

    from ..pipeline import RefSDPipeline

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        pipe = RefSDPipeline.from_config(config)
        pipe.warm_up()
        worker = f"local:{os.getpid()}"
        for item in items:
            if item.get("video"):
                from .video import process_video

                rec, files = process_video(pipe, item, options, worker), {}
            else:
                rec, files = process_one(pipe, item, options, worker)
            on_result(rec, files)
            if progress is not None:
                progress(1)
    finally:
        torch.set_num_threads(before)  # callers in the same process keep their setting


class _RayWorker:
    """A Ray Data actor: builds the pipeline once, then maps batches of work items."""

    def __init__(self, config: dict, options: dict, threads: int | None = None):
        import torch

        from ..pipeline import RefSDPipeline

        if threads:
            torch.set_num_threads(int(threads))
        cfg = dict(config)
        if cfg.get("device") is None:
            cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe = RefSDPipeline.from_config(cfg)
        self.pipe.warm_up()
        self.options = options
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()[:8]
        except Exception:  # not inside Ray (direct use)
            node = "local"
        self.worker = f"ray:{node}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        records, blobs = [], []
        for payload in batch["item"]:
            item = json.loads(str(payload))
            if item.get("video"):
                rec, files = self._video(item), {}
            else:
                rec, files = process_one(self.pipe, item, self.options, self.worker)
            records.append(json.dumps(rec))
            blobs.append(json.dumps({k: base64.b64encode(v).decode("ascii") for k, v in files.items()}))
        return {"record": np.array(records, dtype=object), "files": np.array(blobs, dtype=object)}

    def _video(self, item: dict) -> dict:
        """One video, written by this actor into the (shared) output folder, as in a local run."""
        from .video import process_video

        out = Path(self.options["output_dir"])
        if not out.is_dir():
            return {"image": item["image"], "seed": item["seed"], "attempts": item.get("attempts", 1),
                    "worker": self.worker, "status": "error",
                    "error": f"the output folder {out} is not on this Ray node ({self.worker}): videos on Ray "
                    "write their frames there, so it must be shared at the same path on every node"}
        return process_video(self.pipe, item, self.options, self.worker)


def run_ray(config: dict, items: list[dict], options: dict, on_result: Callable[[dict, dict], None],
            address: str | None = "local", workers: int | None = None, cpus_per_worker: float = 1.0,
            progress: Callable[[int], None] | None = None, threads: int | None = None) -> None:
    """Map :func:`process_one` over the items with Ray Data actors; results come back to this
    process (which writes files and manifest). Uses a running Ray session if there is one,
    else connects to ``address`` (``"local"``/None: a new local instance, or RAY_ADDRESS)."""
    try:
        import ray
    except ImportError as e:
        raise RefSDError("--ray needs Ray Data: pip install 'refsd[ray]'") from e
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the CLI has its own progress bar
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address in (None, "local"):
            ray.init(**kw)
        else:
            ray.init(address=address, **kw)
        started = True
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        use_gpu = gpus > 0 and str(config.get("device") or "cuda").startswith("cuda")
        if use_gpu:
            n = workers or gpus
            remote = {"num_gpus": 1, "num_cpus": cpus_per_worker}
        else:
            n = workers or max(1, int(res.get("CPU", 1) // max(cpus_per_worker, 1e-6)))
            remote = {"num_gpus": 0, "num_cpus": cpus_per_worker}
            config = dict(config, device=config.get("device") or "cpu")
        n = max(1, min(n, len(items)))
        ds = ray.data.from_items([{"item": json.dumps(it)} for it in items])
        if threads is None and not use_gpu:
            threads = max(1, int(cpus_per_worker))
        kwargs = dict(fn_constructor_kwargs={"config": config, "options": options, "threads": threads},
                      batch_size=1, batch_format="numpy", **remote)
        kwargs["compute"] = ray.data.ActorPoolStrategy(size=n)
        out = ds.map_batches(_RayWorker, **kwargs)
        try:
            for row in out.iter_rows():
                rec = json.loads(row["record"])
                files = {k: base64.b64decode(v) for k, v in json.loads(row["files"]).items()}
                on_result(rec, files)
                if progress is not None:
                    progress(1)
        except RefSDError:
            raise
        except Exception as e:  # an actor failed to start (model loading) or the cluster went away
            raise RefSDError(f"the Ray run stopped: {type(e).__name__}: {e}; finished images are in the manifest, "
                             "run the same command again to resume") from e
    finally:
        if started:
            ray.shutdown()

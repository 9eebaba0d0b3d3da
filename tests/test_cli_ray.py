"""``refsd pseudonymize --ray`` on a local Ray instance (2 CPU workers) gives the same files
and records as the single-process run with the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refsd.cli import main as cli

pytestmark = pytest.mark.slow  # documentation only: runs in CI (~30-60 s with Ray's start-up)

ray = pytest.importorskip("ray")

#: Fields that name where/when an image ran; everything else must match.
RUN_FIELDS = {"worker", "seconds", "finished", "timings"}


def _records(out: Path) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_ray_run_matches_the_single_process_run(dataset, tmp_path, tiny_models, anny_env, capsys):
    cn = tiny_models["controlnets"]
    # bit-exact needs the same torch thread count in both runs (CPU kernels sum in a thread-dependent order)
    common = [str(dataset), "--seed", "3", "--crop-size", "64x128", "--no-progress", "--steps", "2", "--threads", "1",
              "--model", str(tiny_models["model"]), "--controlnet", f"depth={cn['depth']}",
              "--controlnet", f"openpose={cn['openpose']}", "--device", "cpu"]
    single, distributed = tmp_path / "single", tmp_path / "ray"
    assert cli(["pseudonymize", *common, "-o", str(single)]) == 1  # broken.png is an error in both
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert cli(["pseudonymize", *common, "-o", str(distributed), "--ray", "--ray-workers", "2"]) == 1
    finally:
        ray.shutdown()
    capsys.readouterr()
    a, b = _records(single), _records(distributed)
    assert sorted(a) == sorted(b) == ["a.png", "broken.png", "c.png", "nokp.png", "notes.txt", "sub/b.jpg"]
    workers = set()
    for key in a:
        ra, rb = a[key], b[key]
        assert {k: v for k, v in ra.items() if k not in RUN_FIELDS} == {
            k: v for k, v in rb.items() if k not in RUN_FIELDS}, key
        for name in ra["outputs"]:
            assert (single / name).read_bytes() == (distributed / name).read_bytes(), name
        if rb["status"] in ("ok", "error") and rb["worker"]:
            workers.add(rb["worker"])
    assert all(w.startswith("ray:") for w in workers) and len(workers) >= 1
    assert sum(r["status"] == "ok" for r in b.values()) == 4  # nokp.png: no keypoint file, people detected
    assert b["nokp.png"]["people_source"] == "detect" and b["a.png"]["people_source"] == "file"

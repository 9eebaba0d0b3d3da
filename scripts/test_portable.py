"""Run the numeric tests under every SIMD level this CPU offers and with 1 and 2 threads.

torch picks its CPU kernels at start-up (``ATEN_CPU_CAPABILITY``: ``default`` = scalar,
``avx2``, ``avx512``); reductions and convolutions sum in a different order on each, so the
last bits of float32 results differ between machines. A test that only passes on one kernel
set fails on another machine of the same kind. This runs the tests that do not need the
ComfyUI server (``-m "not comfyui and not slow"``, override with ``--marker``) once per
(capability, threads) pair, checks that torch really ran with that capability (it falls back
silently when the CPU lacks it), and prints a table.

    .venv/bin/python scripts/test_portable.py [--marker EXPR] [--threads 1 2] [pytest args...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: CPU flags torch needs for each capability (aten/src/ATen/native/DispatchStub.cpp).
NEEDS = {"default": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def cpu_name() -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        return m.group(1).strip() if m else "unknown CPU"
    except OSError:
        return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--marker", default="not comfyui and not slow", help="pytest -m expression (the numeric tests)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--capabilities", nargs="+", default=None, help="default: every one this CPU has")
    args, rest = ap.parse_known_args(argv)
    flags = cpu_flags()
    caps = args.capabilities or [c for c, need in NEEDS.items() if need <= flags]
    print(f"{cpu_name()}; torch capabilities to test: {', '.join(caps)}; threads: {args.threads}", flush=True)
    rows, failed = [], False
    for cap in caps:
        for n in args.threads:
            env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
            env["REFSD_EXPECT_CPU_CAPABILITY"] = cap  # tests/conftest.py fails the run if torch ignored it
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", args.marker, *rest]
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            seconds = time.monotonic() - start
            out = proc.stdout + proc.stderr
            summary = next((ln for ln in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed|error)", ln)), "")
            probe = subprocess.run(
                [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability().lower(), "
                 "torch.get_num_threads())"], env=env, capture_output=True, text=True,
            ).stdout.split()
            ran = "/".join(probe) if probe else "?"  # the pytest run itself exits early on a mismatch
            ok = proc.returncode == 0
            failed |= not ok
            rows.append((cap, n, ran, f"{seconds:.0f} s", summary.strip("= ").strip()))
            print(f"{cap:8s} {n} thread(s): torch ran {ran}, {seconds:.0f} s: {summary.strip('= ').strip()}", flush=True)
            if not ok:
                print("\n".join(ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))), flush=True)
    print("\n| ATEN_CPU_CAPABILITY | threads | torch reported | time | result |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

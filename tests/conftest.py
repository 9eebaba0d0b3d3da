"""Test harness: a real ComfyUI server with this pack, and random-weight test models.

* ``comfy_server`` (session): ComfyUI's ``main.py --cpu`` on 127.0.0.1 and a free port,
  with its own base directory, this pack linked into ``custom_nodes/``, and the random
  test models linked into ``models/``. Stopped at teardown, also when tests fail.
* ``comfy``: a :class:`refsd.comfyapi.client.ComfyClient` for that server.
* ``random_models``: an SD1.5-shaped random checkpoint and a matching ControlNet, built
  once into ``$REFSD_CACHE_DIR/test-models`` (git-ignored) and reused between runs.

``COMFYUI_PATH`` selects the ComfyUI tree (default: the pinned runtime in .cache/comfyui).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SAMPLE_VIDEO, model_links, write_sample_video

from refsd.comfyapi import PACK_ROOT, ComfyClient, ComfyServer, find_comfyui

# session fixtures anny_cache_dir, anny_model, smplx_dir, smplx_model; tiny diffusers models
pytest_plugins = ["_body_fixtures", "_diffusers_fixtures"]

CACHE_DIR = Path(os.environ.get("REFSD_CACHE_DIR") or PACK_ROOT / ".cache")


def pytest_report_header(config):
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    return f"torch CPU capability: {cap.lower()}, threads: {torch.get_num_threads()}"


def pytest_sessionstart(session):
    """``REFSD_EXPECT_CPU_CAPABILITY`` (set by scripts/test_portable.py): stop at once when torch
    did not take ``ATEN_CPU_CAPABILITY`` (it silently falls back when the CPU lacks it)."""
    want = os.environ.get("REFSD_EXPECT_CPU_CAPABILITY")
    if want:
        import torch

        got = torch.backends.cpu.get_cpu_capability().lower()
        if got != want.lower():
            pytest.exit(f"torch runs with CPU capability {got!r}, not {want!r}: this CPU lacks it", returncode=3)


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    return find_comfyui()


@pytest.fixture(scope="session")
def random_models(comfyui_path) -> dict[str, Path]:
    out = CACHE_DIR / "test-models"
    env = dict(os.environ, COMFYUI_PATH=str(comfyui_path))
    subprocess.run(
        [sys.executable, str(PACK_ROOT / "scripts" / "make_random_models.py"), str(out)], check=True, env=env
    )
    info = json.loads((out / "models.json").read_text())
    return {"checkpoint": out / info["checkpoint"], "controlnet": out / info["controlnet"]}


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, comfyui_path, random_models, anny_cache_dir):
    base = tmp_path_factory.mktemp("comfyui-base")
    server = ComfyServer(base, comfyui_path, model_links=model_links(anny_cache_dir, random_models))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        # Keep the server log next to the test run for post-mortems.
        log_copy = CACHE_DIR / "last-comfyui-test-server.log"
        try:
            log_copy.parent.mkdir(parents=True, exist_ok=True)
            log_copy.write_text(server.log_text())
        except OSError:
            pass


@pytest.fixture(scope="session")
def sample_inputs(comfy_server) -> tuple[str, str]:
    """The sample photo and its hand-annotated keypoints, copied into the server's input folder, and
    ``people.mp4`` (the video graphs' default input): :func:`helpers.write_sample_video`."""
    for name in ("camera.png", "camera.json"):
        shutil.copy(PACK_ROOT / "samples" / name, comfy_server.input_dir / name)
    write_sample_video(comfy_server.input_dir / SAMPLE_VIDEO)
    return "camera.png", "camera.json"





@pytest.fixture
def comfy(comfy_server) -> ComfyClient:
    return comfy_server.client()

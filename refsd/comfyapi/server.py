"""Start and stop a real ComfyUI server in a subprocess (for the tests and the demo).

Nothing here imports ComfyUI: the server runs ``main.py`` of the ComfyUI tree named
by ``COMFYUI_PATH`` (or an explicit path) with the given Python, on 127.0.0.1 and a
free port, with its own base directory in which this pack is linked as a custom node.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .client import ComfyClient, ComfyConnectionError

__all__ = ["ComfyServer", "find_comfyui", "free_port", "PACK_ROOT", "PACK_LINK_NAME"]

PACK_ROOT = Path(__file__).resolve().parents[2]  # refsd/comfyapi/server.py -> the pack
PACK_LINK_NAME = "ComfyUI-RefSD"


def find_comfyui(path: str | os.PathLike | None = None) -> Path:
    """Locate ComfyUI: the argument, else ``$COMFYUI_PATH``, else the repo's ``.cache/comfyui``."""
    candidates = [path, os.environ.get("COMFYUI_PATH"), PACK_ROOT / ".cache" / "comfyui"]
    for c in candidates:
        if c and (Path(c) / "main.py").is_file():
            return Path(c).resolve()
    raise FileNotFoundError(
        "ComfyUI not found: set COMFYUI_PATH to a ComfyUI checkout (the folder holding main.py), "
        "or run `make setup` to install the pinned 0.3.75 runtime into .cache/comfyui."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI server process with its own base directory.

    Use as a context manager; it is stopped on exit, also when the body raised.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike,
        comfyui_path: str | os.PathLike | None = None,
        port: int | None = None,
        python: str = sys.executable,
        extra_args: list[str] | None = None,
        link_pack: bool = True,
        startup_timeout: float = 180.0,
        model_links: dict[str, str | os.PathLike] | None = None,
    ):
        self.base_dir = Path(base_dir).resolve()
        self.comfyui_path = find_comfyui(comfyui_path)
        self.port = port or free_port()
        self.python = python
        self.extra_args = extra_args or []
        self.link_pack = link_pack
        self.startup_timeout = startup_timeout
        # files or folders linked into models/: {"anny": anny_cache, "checkpoints/sd15.safetensors": path}
        self.model_links = {k: Path(v).resolve() for k, v in (model_links or {}).items()}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self.url = f"http://127.0.0.1:{self.port}"

    # -- folders -----------------------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    def _prepare(self) -> None:
        for sub in ("custom_nodes", "input", "output", "temp", "models/checkpoints", "models/controlnet", "user/default"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.link_pack:
            link = self.base_dir / "custom_nodes" / PACK_LINK_NAME
            if not link.exists():
                link.symlink_to(PACK_ROOT, target_is_directory=True)
        for rel, target in self.model_links.items():
            dest = self.models_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() and not dest.is_symlink():
                dest.symlink_to(target, target_is_directory=target.is_dir())
        settings = self.base_dir / "user" / "default" / "comfy.settings.json"
        if not settings.exists():
            # Skip the frontend's first-run template dialog.
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> ComfyServer:
        self._prepare()
        cmd = [
            self.python, "main.py",
            "--cpu",
            "--listen", "127.0.0.1",
            "--port", str(self.port),
            "--base-directory", str(self.base_dir),
            "--database-url", "sqlite:///:memory:",
            "--disable-auto-launch",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=self.comfyui_path, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            ComfyClient(self.url).wait_ready(self.startup_timeout, alive=lambda: self.proc.poll() is None)
        except ComfyConnectionError as e:
            self.stop()
            raise ComfyConnectionError(f"{e}\n--- last lines of {self.log_path} ---\n{self.log_tail()}") from e
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and ComfyClient(self.url).is_ready()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
        self.proc = None

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def pack_import_seconds(self) -> float | None:
        """Seconds ComfyUI reported for importing this pack ("Import times for custom nodes")."""
        m = re.search(r"^\s*([0-9.]+) seconds(?: \(IMPORT FAILED\))?: .*" + re.escape(PACK_LINK_NAME) + r"\s*$",
                      self.log_text(), re.M)
        return float(m.group(1)) if m else None

    def client(self) -> ComfyClient:
        return ComfyClient(self.url)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log_text(), re.M):
                return True
            time.sleep(0.1)
        return False

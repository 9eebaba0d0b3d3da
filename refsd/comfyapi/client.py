"""A small synchronous client for a running ComfyUI server (HTTP + websocket).

Used by the tests, the demo and ``refsd run``. It talks to ComfyUI over its public
API only (``/prompt``, ``/ws``, ``/history``, ``/view``, ``/upload/image``), so it
works against any ComfyUI, local or remote, and never imports ComfyUI itself.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ComfyClient", "PromptRejected", "PromptResult", "ComfyConnectionError"]


class ComfyConnectionError(RuntimeError):
    """The server could not be reached or answered something unexpected."""


class PromptRejected(RuntimeError):
    """``/prompt`` refused the graph (HTTP 400): validation failed before execution."""

    def __init__(self, status: int, body: dict):
        self.status = status
        self.body = body
        self.error = body.get("error", {}) if isinstance(body, dict) else {}
        self.node_errors = body.get("node_errors", {}) if isinstance(body, dict) else {}
        msg = self.error.get("message") if isinstance(self.error, dict) else str(self.error)
        super().__init__(f"ComfyUI refused the prompt ({status}): {msg}; node_errors={json.dumps(self.node_errors)[:2000]}")


@dataclass
class PromptResult:
    """What a finished prompt produced."""

    prompt_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None  # the execution_error message data, if any
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def images(self) -> list[dict]:
        """All image records (filename, subfolder, type) across output nodes."""
        out = []
        for node_out in self.outputs.values():
            out.extend(node_out.get("images", []) or [])
        return out


class ComfyClient:
    def __init__(self, url: str = "http://127.0.0.1:8188", client_id: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout

    # -- plain HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (http URL chosen by the user)
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ComfyConnectionError(f"cannot reach ComfyUI at {self.url}: {e}") from e

    def get_json(self, path: str) -> Any:
        status, data = self._request("GET", path)
        if status != 200:
            raise ComfyConnectionError(f"GET {path} answered {status}: {data[:500]!r}")
        return json.loads(data)

    def is_ready(self) -> bool:
        try:
            status, _ = self._request("GET", "/system_stats")
        except ComfyConnectionError:
            return False
        return status == 200

    def wait_ready(self, timeout: float = 120.0, alive: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            if alive is not None and not alive():
                raise ComfyConnectionError("ComfyUI exited before it answered /system_stats")
            time.sleep(0.25)
        raise ComfyConnectionError(f"ComfyUI at {self.url} did not answer /system_stats within {timeout:.0f} s")

    def object_info(self, node_class: str | None = None) -> dict:
        return self.get_json("/object_info" + (f"/{urllib.parse.quote(node_class)}" if node_class else ""))

    # -- prompts -------------------------------------------------------------------------------
    def queue_prompt(self, prompt: dict, extra_data: dict | None = None, strict: bool = True) -> str:
        """Queue an API-format prompt and return its id.

        ComfyUI answers 400 only when *no* output node validates; when some outputs fail
        validation it still queues the rest and lists the failures in ``node_errors`` with a
        200. With ``strict`` (default) that partial acceptance also raises
        :class:`PromptRejected` (and the queued remainder is removed from the queue), so a
        headless run never silently loses an output.
        """
        payload = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, data = self._request(
            "POST", "/prompt", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        try:
            body = json.loads(data) if data else {}
        except json.JSONDecodeError:
            body = {"error": {"message": data[:500].decode(errors="replace")}}
        if status != 200:
            raise PromptRejected(status, body)
        if strict and body.get("node_errors"):
            self._request(
                "POST", "/queue", json.dumps({"delete": [body["prompt_id"]]}).encode(),
                {"Content-Type": "application/json"},
            )
            body.setdefault("error", {"message": "some output nodes failed validation; ComfyUI queued only the rest"})
            raise PromptRejected(status, body)
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def run(
        self,
        prompt: dict,
        timeout: float = 600.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> PromptResult:
        """Queue ``prompt``, follow the websocket until it finishes, and return its outputs.

        Raises :class:`PromptRejected` if validation refuses the graph; an error during
        execution is returned in ``PromptResult.error`` (the server stays up).
        """
        import websocket  # websocket-client; imported here so `import refsd` stays cheap

        ws_url = self.url.replace("http://", "ws://").replace("https://", "wss://") + f"/ws?clientId={self.client_id}"
        ws = websocket.create_connection(ws_url, timeout=timeout)
        t0 = time.monotonic()
        error: dict | None = None
        try:
            prompt_id = self.queue_prompt(prompt)
            deadline = t0 + timeout
            while True:
                ws.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException as e:
                    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s") from e
                if not isinstance(raw, str):
                    continue  # binary preview frames
                msg = json.loads(raw)
                mtype, data = msg.get("type"), msg.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if on_progress is not None and mtype in ("progress", "executing", "executed"):
                    on_progress(msg)
                if mtype == "execution_error":
                    error = data
                    break
                if mtype == "execution_interrupted":
                    error = {"exception_message": "interrupted", **data}
                    break
                if mtype == "execution_success":
                    break
                if mtype == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        finally:
            ws.close()
        hist = self.history(prompt_id)
        # /history can lag the websocket by a moment
        for _ in range(40):
            if hist.get("status", {}).get("completed") is not None or hist.get("outputs"):
                break
            time.sleep(0.05)
            hist = self.history(prompt_id)
        if error is None:
            for m in hist.get("status", {}).get("messages", []):
                if m and m[0] == "execution_error":
                    error = m[1]
        return PromptResult(prompt_id, hist.get("outputs", {}), hist.get("status", {}), error, time.monotonic() - t0)

    # -- files -----------------------------------------------------------------------------------
    def upload(
        self, path: str | Path, subfolder: str = "", overwrite: bool = True, kind: str = "input", name: str | None = None
    ) -> dict:
        """Upload a file into the server's input folder (``/upload/image`` accepts any file), as ``name``
        (default: the file's own name)."""
        path = Path(path)
        boundary = uuid.uuid4().hex
        parts = []
        fields = {"overwrite": "true" if overwrite else "false", "subfolder": subfolder, "type": kind}
        for k, v in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name or path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        parts.append(path.read_bytes())
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        status, data = self._request(
            "POST", "/upload/image", b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        if status != 200:
            raise ComfyConnectionError(f"upload of {path.name} answered {status}: {data[:300]!r}")
        return json.loads(data)

    def download(self, record: dict) -> bytes:
        q = urllib.parse.urlencode(
            {"filename": record["filename"], "subfolder": record.get("subfolder", ""), "type": record.get("type", "output")}
        )
        status, data = self._request("GET", f"/view?{q}")
        if status != 200:
            raise ComfyConnectionError(f"/view {record} answered {status}")
        return data

"""Helpers shared by the tests (importable as `helpers`; tests/ is on sys.path)."""

from __future__ import annotations

import pytest

from refsd.comfy_client import ComfyClient, PromptResult


def run_ok(client: ComfyClient, prompt: dict, timeout: float = 600) -> PromptResult:
    """Run a prompt and fail the test with ComfyUI's own error text if it did not succeed."""
    result = client.run(prompt, timeout=timeout)
    if result.error is not None:
        err = result.error
        pytest.fail(
            f"prompt failed in node {err.get('node_id')} ({err.get('node_type')}): "
            f"{err.get('exception_type')}: {err.get('exception_message')}\n"
            + "".join(err.get("traceback", [])[-6:])
        )
    return result

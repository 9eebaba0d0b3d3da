"""Regenerate the UI-format workflows in workflows/ from their API twins in workflows/api/.

Starts a real ComfyUI server (to read /object_info: which inputs are widgets, in which
order), converts each API prompt with refsd.workflow.api_to_ui, and writes
workflows/<name>.json. Run it after editing an API workflow; the tests check that the
two stay equivalent.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refsd.comfy_server import ComfyServer  # noqa: E402
from refsd.workflow import api_to_ui  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as td, ComfyServer(td) as server:
        info = server.client().object_info()
        for api_file in sorted((ROOT / "workflows" / "api").glob("*.json")):
            prompt = json.loads(api_file.read_text())
            ui = api_to_ui(prompt, info)
            out = ROOT / "workflows" / api_file.name
            out.write_text(json.dumps(ui, indent=1) + "\n")
            print(f"wrote {out.relative_to(ROOT)} ({len(ui['nodes'])} nodes, {len(ui['links'])} links)")


if __name__ == "__main__":
    main()

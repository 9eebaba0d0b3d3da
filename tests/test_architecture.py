"""The layout rules of ARCHITECTURE.md, checked on the source (no extra dependency):

* each stage's package imports only the stages before it (LAYERS, data-flow order);
* the library never imports ComfyUI;
* no module in ``refsd/`` or ``nodes/`` grows past MAX_LINES;
* every module says what it holds (a module docstring).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "refsd"

#: Units of ``refsd/`` in the order a unit may import from (each imports only units listed before it).
#: ``refsd`` is the package root (``__version__``); ``testing`` is test support and may import any stage.
LAYERS = (
    "errors",
    "keypoints",
    "detect",
    "body",
    "fit",
    "people",
    "render",
    "composite",
    "refine",
    "evaluate",
    "pipeline",
    "comfyapi",
    "study",
    "cli",
)
OUTSIDE = {"testing": set(LAYERS)}
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "execution"}
MAX_LINES = 420  # "about 400": a module that needs more is two modules


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "refsd"


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in a library file (relative ones resolved)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
    me = _unit(".".join(parts))
    if me == "refsd":
        allowed = set(LAYERS)
    elif me in OUTSIDE:
        allowed = OUTSIDE[me] | {me}
    else:
        allowed = set(LAYERS[: LAYERS.index(me) + 1])
    bad = []
    for line, target in _imports(path, root):
        top = target.split(".")[0]
        if top in COMFY_MODULES:
            bad.append(f"line {line}: imports {target} (ComfyUI stays in nodes/)")
        if top != "refsd":
            continue
        unit = _unit(target)
        if unit != "refsd" and unit not in allowed:
            bad.append(f"line {line}: {me} imports {target}, a later stage ({' < '.join(LAYERS)})")
    return bad


LIB_FILES = sorted(LIB.rglob("*.py"))


def test_layers_cover_every_unit():
    units = {p.relative_to(LIB).parts[0].removesuffix(".py") for p in LIB_FILES} - {"__init__"}
    assert units <= set(LAYERS) | set(OUTSIDE), f"add {sorted(units - set(LAYERS) - set(OUTSIDE))} to LAYERS"


@pytest.mark.parametrize("path", LIB_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_run_down_the_pipeline(path):
    bad = _violations(path)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "path", sorted([*LIB_FILES, *(ROOT / "nodes").glob("*.py")]), ids=lambda p: str(p.relative_to(ROOT))
)
def test_modules_are_small_and_documented(path):
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{lines} lines: split it along its seams (ARCHITECTURE.md)"
    if path.name != "__init__.py" or lines > 5:
        assert ast.get_docstring(ast.parse(text)), "say in a module docstring what this module holds"


def test_the_checker_sees_a_violation(tmp_path):
    """The rule is not vacuous: an upward import and a ComfyUI import are both reported."""
    probe = tmp_path / "refsd" / "keypoints" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text('"""probe"""\nfrom ..render import Camera\nimport comfy.utils\nfrom ..errors import RefSDError\n')
    bad = _violations(probe, tmp_path)
    assert len(bad) == 2 and "refsd.render" in bad[0] and "comfy.utils" in bad[1], bad


def test_top_level_names_are_lazy_and_real():
    """``refsd.BodyFit`` & co. resolve to the stage's own objects, and ``import refsd`` loads no torch."""
    import subprocess
    import sys

    code = (
        "import sys, refsd; assert 'torch' not in sys.modules, 'import refsd loaded torch'; "
        "import refsd.fit, refsd.pipeline, refsd.people; "
        "assert refsd.BodyFit is refsd.fit.BodyFit and refsd.RefSDPipeline is refsd.pipeline.RefSDPipeline; "
        "assert refsd.PersonAttributes is refsd.people.PersonAttributes; "
        "[getattr(refsd, n) for n in refsd.__all__]; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

"""Anny model cache: where it lives, its first-use build (with progress) and loading.

The first construction of :class:`refsd.body.anny_backend.AnnyBody` builds Anny's model
data (~70-100 s, ~2.3 GB RAM peak, ~820 MB of intermediate files) and keeps only the compact
~51 MB safetensors file (:func:`anny_cache_file`), in :func:`resolve_anny_cache_dir`
(explicit ``cache_dir`` > ``$ANNY_CACHE_DIR`` > ``$REFSD_CACHE_DIR/anny`` >
``~/.cache/refsd/anny``). Later constructions load that file (well under a second).
:func:`ensure_anny_cache` runs the build once per process and folder, reporting progress
through ``progress(fraction, message)`` (or a tqdm bar), and cleans up leftovers of
interrupted builds.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .anny_rig import ANNY_RIG, ANNY_TOPOLOGY
from .base import BodyModelError

__all__ = [
    "ProgressFn",
    "resolve_anny_cache_dir",
    "anny_cache_file",
    "ensure_anny_cache",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]

_BUILD_LOCK = threading.Lock()
#: Expected duration of a cache build on 2 CPU cores, for the progress estimate.
_EXPECTED_BUILD_S = 90.0
#: Log messages of Anny's builders -> the least fraction of the build done when they appear.
_STAGES = (
    ("build_compact_model_data_", "No cached", 0.01, "building Anny model data"),
    ("Loading macrodetails", "", 0.02, "loading Anny blend shapes"),
    ("load_data_", "Saved", 0.90, "rigging"),
    ("build_model_data_", "Saved", 0.95, "compacting phenotype blend shapes"),
    ("build_compact_model_data_", "Saved", 0.99, "saving"),
)


def resolve_anny_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the Anny cache lives: ``cache_dir`` if given, else ``$ANNY_CACHE_DIR``, else
    ``$REFSD_CACHE_DIR/anny``, else ``~/.cache/refsd/anny``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get("ANNY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    refsd = os.environ.get("REFSD_CACHE_DIR")
    if refsd:
        return Path(refsd).expanduser() / "anny"
    return Path.home() / ".cache" / "refsd" / "anny"


def _anny_versions() -> tuple[str, int]:
    import anny
    from anny.models.model_data import CURRENT_DATA_VERSION

    return str(anny.__version__), int(CURRENT_DATA_VERSION)


def anny_cache_file(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the compact Anny model file RefSD keeps (it may not exist yet)."""
    version, data_version = _anny_versions()
    safe = re.sub(r"[^0-9A-Za-z.+-]", "_", version)
    return resolve_anny_cache_dir(cache_dir) / f"refsd-anny-{safe}-d{data_version}-{ANNY_TOPOLOGY}.safetensors"


class _StageHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.floor = 0.0
        self.message = "building Anny model data"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log record must not break the build
            return
        for needle, prefix, frac, msg in _STAGES:
            if needle in text and text.startswith(prefix) and frac > self.floor:
                self.floor, self.message = frac, msg


def _build_into(staging: Path) -> Path:
    """Build the compact model data with Anny's own cache builder, redirected (through
    Anny's public ``set_anny_cache_path``) to ``staging``. Returns the compact file."""
    import anny
    from anny.paths import get_anny_cache_path, set_anny_cache_path

    previous = get_anny_cache_path()
    set_anny_cache_path(staging)
    try:
        anny.Anny(
            rig=ANNY_RIG,
            topology=ANNY_TOPOLOGY,
            local_changes="none",
            facial_actions="none",
            phenotypes="default",
            skinning_method="lbs",
        )
    finally:
        set_anny_cache_path(previous)
    found = sorted(staging.glob("v*/build_compact_model_data_*.safetensors"))
    if len(found) != 1:
        raise BodyModelError(
            f"Anny's cache build in {staging} produced {len(found)} compact model files, expected 1. "
            "Delete that folder and retry; if it persists, reinstall anny (pip install -U anny)."
        )
    return found[0]


def ensure_anny_cache(
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Make sure the compact Anny model file exists (building it if needed) and return it.

    The build runs Anny's own builder in a private staging folder inside the cache dir;
    only the compact file (~51 MB) is kept (moved into place atomically), the ~820 MB of
    intermediates are deleted, and so are compact files of older anny versions.

    Args:
        cache_dir: see :func:`resolve_anny_cache_dir`.
        progress: optional ``progress(fraction, message)`` called from the calling thread
            about once a second during a build (fraction in 0..1, time-based estimate).
            Without it a tqdm bar is shown on stderr.
    """
    target = anny_cache_file(cache_dir)
    if target.is_file():
        return target
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise BodyModelError(
            f"Cannot write the Anny cache folder {folder} ({e}). Pass a writable cache_dir, or set "
            "ANNY_CACHE_DIR (or REFSD_CACHE_DIR) to a writable folder."
        ) from e
    free = shutil.disk_usage(folder).free
    if free < 1_000_000_000:
        raise BodyModelError(
            f"Only {free / 1e9:.2f} GB free in {folder}; building the Anny cache needs about 1 GB temporarily "
            "(51 MB kept). Free some space or point ANNY_CACHE_DIR / cache_dir elsewhere."
        )

    with _BUILD_LOCK:
        if target.is_file():  # built by another thread meanwhile
            return target
        _remove_stale_builds(folder)
        staging = Path(tempfile.mkdtemp(prefix=".anny-build-", dir=folder))
        handler = _StageHandler()
        anny_logger = logging.getLogger("anny")
        old_level = anny_logger.level
        anny_logger.addHandler(handler)
        if anny_logger.getEffectiveLevel() > logging.INFO:
            anny_logger.setLevel(logging.INFO)
        result: dict[str, object] = {}

        def work() -> None:
            try:
                built = _build_into(staging)
                tmp = folder / f".{target.name}.{uuid.uuid4().hex}.part"
                shutil.move(str(built), str(tmp))
                os.replace(tmp, target)
                result["ok"] = True
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                result["error"] = e
            finally:
                shutil.rmtree(staging, ignore_errors=True)

        bar = None
        report = progress
        if report is None:
            try:
                from tqdm import tqdm

                bar = tqdm(total=100, desc="Anny cache (first use only)", unit="%", leave=False)

                def report(frac: float, msg: str) -> None:
                    bar.n = int(round(frac * 100))
                    bar.set_postfix_str(msg, refresh=False)
                    bar.refresh()

            except Exception:  # noqa: BLE001 - no tqdm: no bar
                report = None
        logger.info("Building the Anny model cache in %s (first use only, ~1-2 min)", folder)
        start = time.monotonic()
        worker = threading.Thread(target=work, name="refsd-anny-cache-build", daemon=True)
        worker.start()
        try:
            if report is not None:
                report(0.0, handler.message)
            while worker.is_alive():
                worker.join(timeout=1.0)
                if report is not None and worker.is_alive():
                    est = min(0.95, (time.monotonic() - start) / _EXPECTED_BUILD_S)
                    report(max(handler.floor, est), handler.message)
        finally:
            anny_logger.removeHandler(handler)
            anny_logger.setLevel(old_level)
            if bar is not None:
                bar.close()
        if "error" in result:
            err = result["error"]
            if isinstance(err, BodyModelError):
                raise err
            raise BodyModelError(
                f"Building the Anny model cache in {folder} failed: {type(err).__name__}: {err}. "
                "Check free disk space and memory (~2.5 GB RAM), or reinstall anny (pip install -U anny)."
            ) from err  # type: ignore[misc]
        if report is not None:
            report(1.0, "done")
        logger.info("Anny cache built in %.1f s: %s", time.monotonic() - start, target)
        # Drop compact files of other anny versions (same naming scheme only).
        for old in folder.glob(f"refsd-anny-*-{ANNY_TOPOLOGY}.safetensors"):
            if old != target:
                try:
                    old.unlink()
                except OSError:
                    pass
        return target


#: Leftovers of builds interrupted by a killed process are removed after this many seconds.
_STALE_BUILD_S = 6 * 3600


def _remove_stale_builds(folder: Path) -> None:
    """Delete staging folders / partial files that an interrupted build left behind."""
    now = time.time()
    for path in list(folder.glob(".anny-build-*")) + list(folder.glob(".refsd-anny-*.part")):
        try:
            if now - path.stat().st_mtime < _STALE_BUILD_S:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            pass


def _load_model_data(path: Path):
    from anny.models.model_data import ModelData

    return ModelData.load_safetensors(path)

"""Loading Stable Diffusion 1.5 and its ControlNets from local files, with diffusers.

What :class:`refsd.refine.refiner.DiffusersRefiner` loads, checked before anything is read:
the model and ControlNet path checks (:func:`check_model_path`, :func:`check_controlnet_path`),
single-file vs folder loading (:func:`load_controlnet`, :func:`load_pipeline`), the refusal of
pickle formats and :class:`DiffusionModelError`, which names the expected layout.

Loading (never from a hub: every load passes ``local_files_only=True`` and works with
``HF_HUB_OFFLINE=1``, which is set for the process when diffusers is first imported here):

* a **diffusers folder** for SD1.5: ``model_index.json``, ``unet/``, ``vae/``,
  ``text_encoder/`` (``config.json`` + ``*.safetensors`` each), ``tokenizer/``
  (``vocab.json`` + ``merges.txt``), ``scheduler/`` (``scheduler_config.json``);
* a **single-file** ``.safetensors`` checkpoint (e.g. ``v1-5-pruned-emaonly.safetensors``)
  together with a local config folder (the same folder layout, weights not needed);
* each **ControlNet** as a diffusers folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``) or a single ``.safetensors`` file with a local
  folder holding its ``config.json``.

Pickle formats (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are refused with the fix.
diffusers and transformers are imported only inside the functions here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..errors import RefSDError

__all__ = [
    "DiffusionModelError",
    "CONTROL_MAPS",
    "check_model_path",
    "check_controlnet_path",
    "load_controlnet",
    "load_pipeline",
]

#: ControlNet name -> the render pass it is conditioned on (:class:`refsd.render.passes.RenderPasses`).
CONTROL_MAPS = {"depth": "depth", "openpose": "pose", "canny": "edges", "normal": "normal"}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")

PIPELINE_LAYOUT = (
    "a diffusers Stable Diffusion 1.5 folder: model_index.json, unet/ (config.json + "
    "diffusion_pytorch_model.safetensors), vae/ (config.json + diffusion_pytorch_model.safetensors), "
    "text_encoder/ (config.json + model.safetensors), tokenizer/ (vocab.json + merges.txt), "
    "scheduler/ (scheduler_config.json); or a single-file .safetensors checkpoint together with such a "
    "folder as its local config (weights not needed there)"
)
CONTROLNET_LAYOUT = (
    "a diffusers ControlNet folder (config.json + diffusion_pytorch_model.safetensors), or a single .safetensors "
    "file together with a local folder holding its config.json"
)


class DiffusionModelError(RefSDError):
    """A model path is missing, in the wrong format, or does not load."""


class _DropMessages(logging.Filter):
    """Drops diffusers' warnings that are wrong for RefSD's use (one prompt and one set of
    control maps per crop is exactly what RefSD passes)."""

    PATTERNS = ("conditionings will be fixed across the prompts",)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p in msg for p in self.PATTERNS)


def _import_diffusers():
    """Import diffusers offline (HF_HUB_OFFLINE=1 unless the user set it) and quietly."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import diffusers
    except ImportError as e:
        raise DiffusionModelError(
            "diffusion refinement needs diffusers and transformers: pip install 'refsd[diffusers]' "
            f"(or choose the 'none' refiner for render-only output). ({e})"
        ) from e
    for name in ("diffusers.pipelines.controlnet.pipeline_controlnet_img2img",
                 "diffusers.pipelines.controlnet.pipeline_controlnet_inpaint"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in log.filters):
            log.addFilter(_DropMessages())
    return diffusers


def _dtype_kw(dtype) -> dict:
    """diffusers >= 0.36 names the load dtype ``dtype`` (``torch_dtype`` is deprecated there)."""
    if dtype is None:
        return {}
    from diffusers.utils import deprecation_utils

    new = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype" if new else "torch_dtype": dtype}


@contextlib.contextmanager
def _quiet_loading():
    """No per-component progress bars while loading (the CLI has its own)."""
    from diffusers.utils import logging as dlog

    was = dlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    try:
        tlog = importlib.import_module("transformers.utils.logging")
        t_was = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()
    except (ImportError, AttributeError):
        tlog, t_was = None, False
    try:
        yield
    finally:
        if was:
            dlog.enable_progress_bar()
        if tlog is not None and t_was:
            tlog.enable_progress_bar()


def _refuse_pickle(path: Path, what: str) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise DiffusionModelError(
            f"{what} {path} is a pickle-based {path.suffix} file, which RefSD never loads (it can run code). Use the "
            f"model's .safetensors version (or convert it once with a trusted tool) and pass that instead."
        )


def _has_weights(folder: Path, what: str) -> None:
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.ckpt")):
        raise DiffusionModelError(
            f"{what} {folder} has only pickle weights (.bin/.ckpt); RefSD loads .safetensors only. Save the model "
            "with save_pretrained(..., safe_serialization=True) or use its safetensors release."
        )
    raise DiffusionModelError(f"{what} {folder} has no .safetensors weights; expected {PIPELINE_LAYOUT}.")


def _check_config_folder(folder: Path, what: str, weights: bool) -> None:
    if not folder.is_dir():
        raise DiffusionModelError(f"{what} {folder} is not a folder; expected {PIPELINE_LAYOUT}.")
    missing = [n for n in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                           "scheduler/scheduler_config.json") if not (folder / n).is_file()]
    tok = folder / "tokenizer"
    if not ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()) and not (tok / "tokenizer.json").is_file():
        missing.append("tokenizer/vocab.json + tokenizer/merges.txt")
    if missing:
        raise DiffusionModelError(f"{what} {folder} lacks {', '.join(missing)}; expected {PIPELINE_LAYOUT}.")
    if weights:
        for sub in ("unet", "vae", "text_encoder"):
            _has_weights(folder / sub, f"{what} part")


def check_model_path(model: str | Path, config: str | Path | None = None) -> tuple[str, Path, Path | None]:
    """Validate a Stable Diffusion model path. Returns ``("folder", path, None)`` or
    ``("single_file", checkpoint, config_folder)``; raises :class:`DiffusionModelError`
    naming what was expected."""
    path = Path(model).expanduser()
    if not path.exists():
        raise DiffusionModelError(f"Stable Diffusion model {path} does not exist; expected {PIPELINE_LAYOUT}.")
    if path.is_dir():
        _check_config_folder(path, "Stable Diffusion folder", weights=True)
        return "folder", path, None
    _refuse_pickle(path, "Stable Diffusion checkpoint")
    if path.suffix.lower() != ".safetensors":
        raise DiffusionModelError(f"Stable Diffusion model {path} is neither a folder nor a .safetensors file; "
                                  f"expected {PIPELINE_LAYOUT}.")
    if config is None:
        raise DiffusionModelError(
            f"the single-file checkpoint {path} needs a local config folder (RefSD never fetches configs from a hub): "
            "pass config=/path/to/folder (CLI: --model-config) with model_index.json, unet/config.json, "
            "vae/config.json, text_encoder/config.json, tokenizer/ and scheduler/ of an SD1.5 diffusers folder."
        )
    cfg = Path(config).expanduser()
    _check_config_folder(cfg, "config folder of the checkpoint", weights=False)
    return "single_file", path, cfg


def check_controlnet_path(path: str | Path, config: str | Path | None = None) -> tuple[str, Path, Path | None]:
    """Validate a ControlNet path (folder, or single file + config folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DiffusionModelError(f"ControlNet {p} does not exist; expected {CONTROLNET_LAYOUT}.")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise DiffusionModelError(f"ControlNet folder {p} has no config.json; expected {CONTROLNET_LAYOUT}.")
        if not any(p.glob("*.safetensors")):
            if any(p.glob("*.bin")):
                raise DiffusionModelError(
                    f"ControlNet folder {p} has only pickle weights (.bin); RefSD loads .safetensors only "
                    "(diffusion_pytorch_model.safetensors)."
                )
            raise DiffusionModelError(f"ControlNet folder {p} has no diffusion_pytorch_model.safetensors; "
                                      f"expected {CONTROLNET_LAYOUT}.")
        return "folder", p, None
    _refuse_pickle(p, "ControlNet")
    if p.suffix.lower() != ".safetensors":
        raise DiffusionModelError(f"ControlNet {p} is neither a folder nor a .safetensors file; expected {CONTROLNET_LAYOUT}.")
    if config is None:
        raise DiffusionModelError(
            f"the single-file ControlNet {p} needs a local folder with its config.json (CLI: --controlnet-config "
            "NAME=FOLDER); RefSD never fetches configs from a hub."
        )
    cfg = Path(config).expanduser()
    if not (cfg / "config.json").is_file():
        raise DiffusionModelError(f"ControlNet config folder {cfg} has no config.json; expected {CONTROLNET_LAYOUT}.")
    return "single_file", p, cfg


def _wrap(what: str, path: Path, layout: str, fn: Callable):
    try:
        return fn()
    except DiffusionModelError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiffusionModelError(f"loading {what} {path} failed ({type(e).__name__}: {e}); expected {layout}.") from e


def load_controlnet(path: str | Path, config: str | Path | None = None, dtype: torch.dtype | None = None):
    """A ``ControlNetModel`` from a local folder or a single ``.safetensors`` file + config folder."""
    kind, p, cfg = check_controlnet_path(path, config)
    diffusers = _import_diffusers()
    cls = diffusers.ControlNetModel
    kw = _dtype_kw(dtype)
    with _quiet_loading():
        if kind == "folder":
            return _wrap("ControlNet", p, CONTROLNET_LAYOUT, lambda: cls.from_pretrained(
                str(p), local_files_only=True, use_safetensors=True, **kw))
        return _wrap("ControlNet", p, CONTROLNET_LAYOUT, lambda: cls.from_single_file(
            str(p), config=str(cfg), local_files_only=True, **kw))


def load_pipeline(
    model: str | Path,
    controlnets: Mapping[str, str | Path],
    *,
    config: str | Path | None = None,
    controlnet_configs: Mapping[str, str | Path] | None = None,
    dtype: torch.dtype | None = None,
):
    """``StableDiffusionControlNetImg2ImgPipeline`` from local files only (see the module doc).

    ``controlnets`` maps control names (:data:`CONTROL_MAPS`) to paths, in the order the
    MultiControlNet uses them.
    """
    if not controlnets:
        raise DiffusionModelError("give at least one ControlNet, e.g. {'depth': ..., 'openpose': ...} or {'canny': ...}")
    for name in controlnets:
        if name not in CONTROL_MAPS:
            raise DiffusionModelError(f"unknown control {name!r}; use one of {', '.join(CONTROL_MAPS)}")
    kind, path, cfg = check_model_path(model, config)
    cn_cfgs = dict(controlnet_configs or {})
    nets = [load_controlnet(p, cn_cfgs.get(n), dtype) for n, p in controlnets.items()]
    diffusers = _import_diffusers()
    cn = nets[0] if len(nets) == 1 else diffusers.MultiControlNetModel(nets)
    cls = diffusers.StableDiffusionControlNetImg2ImgPipeline
    common = dict(controlnet=cn, local_files_only=True, safety_checker=None, feature_extractor=None,
                  requires_safety_checker=False, **_dtype_kw(dtype))
    with _quiet_loading():
        if kind == "folder":
            return _wrap("Stable Diffusion folder", path, PIPELINE_LAYOUT,
                         lambda: cls.from_pretrained(str(path), use_safetensors=True, **common))
        return _wrap("Stable Diffusion checkpoint", path, PIPELINE_LAYOUT,
                     lambda: cls.from_single_file(str(path), config=str(cfg), **common))

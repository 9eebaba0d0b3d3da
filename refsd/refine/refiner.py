"""Diffusion refinement of person crops with diffusers (Stable Diffusion 1.5 + ControlNets).

The refiner takes the per-person crops of the avatar composited on the cleaned photo and
their conditioning maps (depth, OpenPose, Canny edges, normals, rendered by
:mod:`refsd.render`), and runs ``StableDiffusionControlNetImg2ImgPipeline`` (or the inpaint
variant) with one ControlNet or a ``MultiControlNetModel``, the attribute prompt of each
person, and a per-crop seed; :meth:`DiffusersRefiner.inpaint_background` regenerates the
removed region with SD inpainting. The models come from local files
(:mod:`refsd.refine.loading`).

Memory options (constructor flags of :class:`DiffusersRefiner`): ``attention_slicing``
(compute attention in slices: less memory, a little slower), ``vae_tiling`` /
``vae_slicing`` (decode in tiles / one image at a time), ``cpu_offload`` (keep each model
on the CPU until it runs; needs ``accelerate`` and CUDA; the biggest saving, slower), and
``batch_size`` (crops per diffusion call). A CUDA out-of-memory error during a batch halves
the batch and retries (:func:`run_in_batches`); the retry is reported in the notes returned
with the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from .loading import CONTROL_MAPS, DiffusionModelError, _import_diffusers, load_pipeline

__all__ = [
    "BACKGROUND_NEGATIVE",
    "BACKGROUND_PROMPT",
    "DEFAULT_CONTROL_SCALES",
    "SCHEDULERS",
    "DiffusersRefiner",
    "run_in_batches",
    "img2img_steps",
]

#: Conditioning strength per ControlNet (the refsd_full workflow's: depth 0.8, OpenPose 1.0).
DEFAULT_CONTROL_SCALES = {"depth": 0.8, "openpose": 1.0, "canny": 0.8, "normal": 0.8}
SCHEDULERS = ("dpmpp_2m_karras", "ddim", "euler", "unipc", "default")

#: The prompts of the SD inpainting of the removed region (as in the refsd_sd_removal graph).
BACKGROUND_PROMPT = "empty scene, background only, natural continuation of the surroundings, photo, high quality"
BACKGROUND_NEGATIVE = "person, people, human, man, woman, body, face, silhouette, shadow of a person, blurry, artifacts"


def img2img_steps(steps: int, strength: float) -> int:
    """``num_inference_steps`` for diffusers' img2img so that exactly ``steps`` denoising steps
    run at ``strength`` (ComfyUI's KSampler semantics: 20 steps at denoise 0.6 run 20 steps)."""
    if not 0.0 < strength <= 1.0:
        raise DiffusionModelError(f"denoise is {strength}; use a value in (0, 1] (0.6 keeps the avatar's layout)")
    if steps < 1:
        raise DiffusionModelError(f"steps is {steps}; use at least 1")
    n = max(steps, math.ceil(steps / strength - 1e-9))
    while min(int(n * strength), n) < steps:
        n += 1
    return n


def run_in_batches(fn: Callable[[int, int], list], n: int, batch_size: int, notes: list[str] | None = None,
                   is_oom: Callable[[BaseException], bool] | None = None) -> tuple[list, int]:
    """Call ``fn(start, stop)`` over ``range(n)`` in batches; on an out-of-memory error halve the
    batch and retry (down to 1, then re-raise), appending what happened to ``notes``.
    Returns ``(concatenated results, final batch size)``."""
    is_oom = is_oom or (lambda e: isinstance(e, torch.cuda.OutOfMemoryError))
    out: list = []
    bs = max(1, int(batch_size))
    i = 0
    while i < n:
        j = min(n, i + bs)
        try:
            out.extend(fn(i, j))
        except Exception as e:
            if not is_oom(e) or j - i == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            new = max(1, (j - i + 1) // 2)
            if notes is not None:
                notes.append(f"out of memory refining {j - i} crops at once; retried with batches of {new}")
            bs = new
            continue
        i = j
    return out, bs


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _make_scheduler(pipe, name: str):
    d = _import_diffusers()
    cfg = pipe.scheduler.config
    if name == "default":
        return pipe.scheduler
    if name == "dpmpp_2m_karras":  # ComfyUI's dpmpp_2m + karras (the refsd_full workflow)
        return d.DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                                          use_karras_sigmas=True)
    if name == "ddim":
        return d.DDIMScheduler.from_config(cfg)
    if name == "euler":
        return d.EulerDiscreteScheduler.from_config(cfg)
    if name == "unipc":
        return d.UniPCMultistepScheduler.from_config(cfg)
    raise DiffusionModelError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")


class DiffusersRefiner:
    """Refine person crops with SD1.5 + ControlNets on diffusers (img2img or inpaint).

    Args:
        model: a diffusers SD1.5 folder or a single-file ``.safetensors`` checkpoint.
        controlnets: control name (``depth``, ``openpose``, ``canny``, ``normal``) -> ControlNet
            path, e.g. ``{"depth": ..., "openpose": ...}`` (the refsd_full workflow) or
            ``{"canny": ...}``.
        config: the local config folder of a single-file checkpoint.
        controlnet_configs: control name -> folder with ``config.json``, for single-file ControlNets.
        device, dtype: default CUDA + float16 when CUDA is available, else CPU + float32.
        scheduler: ``dpmpp_2m_karras`` (default, ComfyUI's dpmpp_2m/karras), ``ddim``, ``euler``,
            ``unipc``, or ``default`` (the model folder's own).
        control_scales: control name -> conditioning strength (:data:`DEFAULT_CONTROL_SCALES`).
        inpaint: use ``StableDiffusionControlNetInpaintPipeline`` with the avatar's mask (only
            the person is re-generated) instead of img2img on the whole crop.
        batch_size: crops per diffusion call (halved on CUDA out-of-memory).
        attention_slicing, vae_tiling, vae_slicing, cpu_offload: memory options (module doc).
        pipe: an already built ControlNet img2img pipeline (then ``model`` is not loaded and
            ``controlnets`` may list just the names, in the pipeline's ControlNet order).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        controlnets: Mapping[str, str | Path] | Sequence[str] = (),
        *,
        config: str | Path | None = None,
        controlnet_configs: Mapping[str, str | Path] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        scheduler: str = "dpmpp_2m_karras",
        control_scales: Mapping[str, float] | None = None,
        inpaint: bool = False,
        batch_size: int = 4,
        attention_slicing: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        cpu_offload: bool = False,
        pipe=None,
    ):
        self.device = torch.device(device) if device is not None else _default_device()
        if isinstance(dtype, str):
            dtype = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
                     "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}.get(dtype, dtype)
            if isinstance(dtype, str):
                raise DiffusionModelError(f"unknown dtype {dtype!r}; use float16, bfloat16 or float32")
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        names = list(controlnets.keys()) if isinstance(controlnets, Mapping) else list(controlnets)
        for n in names:
            if n not in CONTROL_MAPS:
                raise DiffusionModelError(f"unknown control {n!r}; use one of {', '.join(CONTROL_MAPS)}")
        if not names:
            raise DiffusionModelError("give at least one ControlNet, e.g. depth + openpose, or canny")
        self.controls = tuple(names)
        scales = dict(DEFAULT_CONTROL_SCALES)
        scales.update(control_scales or {})
        self.control_scales = [float(scales[n]) for n in self.controls]
        self.inpaint = bool(inpaint)
        self.batch_size = max(1, int(batch_size))
        if pipe is None:
            if model is None or not isinstance(controlnets, Mapping):
                raise DiffusionModelError("give model=<path> and controlnets={name: path} (or a built pipe=...)")
            pipe = load_pipeline(model, controlnets, config=config, controlnet_configs=controlnet_configs,
                                 dtype=None if self.dtype == torch.float32 else self.dtype)
        pipe.scheduler = _make_scheduler(pipe, scheduler)
        pipe.set_progress_bar_config(disable=True)
        if attention_slicing:
            pipe.enable_attention_slicing()
        if vae_tiling:
            pipe.vae.enable_tiling()
        if vae_slicing:
            pipe.vae.enable_slicing()
        self.cpu_offload = bool(cpu_offload)
        if self.cpu_offload:
            if self.device.type != "cuda":
                raise DiffusionModelError("cpu_offload needs a CUDA device (it moves models to the GPU when they run)")
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.inpaint:
            d = _import_diffusers()
            pipe = d.StableDiffusionControlNetInpaintPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe

    def _inpaint_pipe(self):
        """SD inpainting with the refiner's own UNet / VAE / text encoder (no ControlNet): the
        legacy 4-channel mode, the same as ComfyUI's SetLatentNoiseMask + KSampler (known latents
        re-noised and put back after every step, so only the masked area is generated)."""
        if getattr(self, "_bg_pipe", None) is None:
            import inspect

            d = _import_diffusers()
            cls = d.StableDiffusionInpaintPipeline
            params = set(inspect.signature(cls.__init__).parameters)
            comps = {k: v for k, v in self.pipe.components.items() if k in params}
            comps.setdefault("safety_checker", None)
            comps.setdefault("feature_extractor", None)
            comps["requires_safety_checker"] = False
            self._bg_pipe = cls(**comps)
            self._bg_pipe.set_progress_bar_config(disable=True)
        return self._bg_pipe

    def inpaint_background(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        *,
        prompt: str = BACKGROUND_PROMPT,
        negative: str = BACKGROUND_NEGATIVE,
        steps: int = 20,
        strength: float = 0.9,
        guidance: float = 6.0,
        max_side: int = 768,
    ) -> torch.Tensor:
        """Regenerate the removed region of ``image`` ``(H, W, 3)`` (the classical fill, 0..1)
        where ``mask`` ``(H, W)`` is set, with SD inpainting on the region's bounding box (plus
        1/4 context, scaled to at most ``max_side`` and to multiples of 8). Returns ``(H, W, 3)``
        on ``image``'s device: the generated pixels inside the mask, ``image`` outside. The input
        holds no pixel of the removed people (the classical fill replaced them), so neither can
        the output."""
        m = mask.detach().float().cpu() > 0.5
        if not bool(m.any()):
            return image
        H, W = m.shape
        ys, xs = torch.nonzero(m, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        cy, cx = (y1 - y0) // 4 + 8, (x1 - x0) // 4 + 8
        y0, y1, x0, x1 = max(0, y0 - cy), min(H, y1 + cy), max(0, x0 - cx), min(W, x1 + cx)
        h, w = y1 - y0, x1 - x0
        scale = min(1.0, max_side / max(h, w))
        th, tw = max(64, round(h * scale / 8) * 8), max(64, round(w * scale / 8) * 8)
        crop = image.detach().float().cpu()[y0:y1, x0:x1].permute(2, 0, 1)[None]
        mcrop = m[y0:y1, x0:x1].float()[None, None]
        inp = torch.nn.functional.interpolate(crop, size=(th, tw), mode="bilinear", align_corners=False)
        # the mask grows by the resampling's reach, so the generated area covers the region
        mk = torch.nn.functional.max_pool2d(
            torch.nn.functional.interpolate(mcrop, size=(th, tw), mode="bilinear", align_corners=False), 3, 1, 1)
        gen = torch.Generator("cpu").manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)
        out = self._inpaint_pipe()(
            prompt=[prompt], negative_prompt=[negative], image=inp.clamp(0, 1), mask_image=(mk > 0).float(),
            strength=float(strength), num_inference_steps=img2img_steps(steps, strength), guidance_scale=float(guidance),
            generator=[gen], output_type="pt", height=th, width=tw,
        ).images.float().cpu()
        out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)
        back = torch.nn.functional.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        result = image.detach().float().cpu().clone()
        region = m[y0:y1, x0:x1]
        result[y0:y1, x0:x1][region] = back[region]
        return result.to(image.device)

    @property
    def map_names(self) -> tuple[str, ...]:
        """The render passes (:class:`~refsd.render.passes.RenderPasses` attributes) the ControlNets need."""
        return tuple(CONTROL_MAPS[n] for n in self.controls)

    def describe(self) -> dict:
        return {"backend": "diffusers", "controls": list(self.controls), "scales": self.control_scales,
                "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "scheduler": type(self.pipe.scheduler).__name__, "inpaint": self.inpaint}

    def refine(
        self,
        images: torch.Tensor,
        controls: Mapping[str, torch.Tensor],
        masks: torch.Tensor | None,
        prompts: Sequence[str],
        negatives: Sequence[str],
        seeds: Sequence[int],
        *,
        steps: int = 20,
        strength: float = 0.6,
        guidance: float = 6.0,
    ) -> tuple[torch.Tensor, list[str]]:
        """Refine ``images (N, h, w, 3)`` (0..1) with their control maps (control name ->
        ``(N, h, w, 3)``), one prompt, negative prompt and seed per crop. Returns the refined
        crops ``(N, h, w, 3)`` float32 on the CPU and notes (out-of-memory retries)."""
        n = images.shape[0]
        if not (len(prompts) == len(negatives) == len(seeds) == n):
            raise DiffusionModelError(f"{n} crops but {len(prompts)} prompts, {len(negatives)} negatives, "
                                      f"{len(seeds)} seeds; give one of each per crop")
        h, w = images.shape[1:3]
        if h % 8 or w % 8:
            raise DiffusionModelError(f"crop size {w}x{h} is not a multiple of 8")
        missing = [c for c in self.controls if c not in controls]
        if missing:
            raise DiffusionModelError(f"no control map for {', '.join(missing)}")
        num_steps = img2img_steps(steps, strength)
        notes: list[str] = []

        def chw(x: torch.Tensor) -> torch.Tensor:
            return x.detach().float().cpu().permute(0, 3, 1, 2).contiguous()

        img = chw(images)
        ctrl = [chw(controls[c]) for c in self.controls]
        msk = masks.detach().float().cpu()[:, None] if masks is not None else torch.ones(n, 1, h, w)

        def run(i: int, j: int) -> list[torch.Tensor]:
            gens = [torch.Generator("cpu").manual_seed(int(s) & 0xFFFFFFFFFFFFFFFF) for s in seeds[i:j]]
            control = [c[i:j] for c in ctrl]
            kw = dict(
                prompt=list(prompts[i:j]), negative_prompt=list(negatives[i:j]), image=img[i:j],
                control_image=control[0] if len(control) == 1 else control,
                strength=float(strength), num_inference_steps=num_steps, guidance_scale=float(guidance),
                generator=gens, output_type="pt", height=h, width=w,
                controlnet_conditioning_scale=self.control_scales[0] if len(control) == 1 else self.control_scales,
            )
            if self.inpaint:
                kw["mask_image"] = msk[i:j]
            out = self.pipe(**kw).images.float().cpu()
            if not bool(torch.isfinite(out).all()):  # e.g. an fp16 overflow in the VAE
                notes.append("the diffusion output had NaN/inf pixels (set to 0); try --dtype float32 or bfloat16")
                out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
            return list(out.permute(0, 2, 3, 1).clamp(0, 1))

        results, self.batch_size = run_in_batches(run, n, self.batch_size, notes)
        return torch.stack(results), notes

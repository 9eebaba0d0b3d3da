"""The whole chain as a library call: :class:`RefSDPipeline` ((detect) -> fit -> attributes ->
render -> remove people -> crops -> refine -> paste -> composite, see :mod:`refsd.pipeline`),
with its settings, batching of the crops of several images into the refiner, and
:meth:`RefSDPipeline.from_config` for a flat JSON-safe config.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..people import AttributeDistribution, PersonAttributes
from ..refine import crop_prompts
from .detection import check_detect_options, find_people
from .io import PipelineError, load_image, to_uint8
from .result import STAGES, PipelineResult, _Prepared, person_seed

__all__ = ["RefSDPipeline"]


class RefSDPipeline:
    """Pseudonymize people in photos (see :mod:`refsd.pipeline`).

    Args:
        body: ``"anny"`` (default), the path of an SMPL-X ``.npz`` file, or a
            :class:`~refsd.fit.handle.BodyModelSpec`.
        refiner: None / ``"none"`` (render-only: the avatars composited on the cleaned photo),
            or a refiner such as :class:`refsd.refine.refiner.DiffusersRefiner`.
        attributes: an :class:`~refsd.people.distribution.AttributeDistribution` (default: RefSD's
            defaults), its dict form, or one :class:`~refsd.people.spec.PersonAttributes` for everyone.
        gender: the Anny starting body for the fit (neutral, female, male).
        anny_cache_dir: where the Anny cache lives (default: ANNY_CACHE_DIR, REFSD_CACHE_DIR/anny, ~/.cache/refsd/anny).
        device: where fitting, rendering and compositing run (default CUDA when available).
        crop_size: ``(width, height)`` of the per-person crops (multiples of 64; default 512 x 768).
        context: context around each person in the crop (fraction of their size).
        denoise, steps, guidance: diffusion strength (0.6 keeps the avatar's layout), denoising
            steps actually run (ComfyUI's KSampler semantics), classifier-free guidance.
        margin: growth of each person's region (fraction of their height).
        reach: how far each silhouette may first extend over adjacent person-coloured pixels
            (coats, hair; fraction of height, 0 = off; :func:`refsd.composite.extend_to_person`).
        feather, match_color: compositing (pixels of inward feathering; colour matching 0..1).
        fov_deg, coords, hand_order, min_confidence: keypoint fitting options (RefSD Fit Body's).
        keep_size, draw_hands, draw_face: avatar rendering options (RefSD Render Avatar's).
        max_leak: the largest leak ratio that passes the privacy check.
        identity_check, face_threshold: also compare every face of the photo with the output
            (:func:`refsd.evaluate.check_identity`, RefSD's face models from ``detect_dirs``); a face
            at or above ``face_threshold`` (SFace cosine; 0.363) fails the privacy check.
        extra_positive, extra_negative: text added to every person's prompt.
        sd_removal, removal_denoise: with a refiner, regenerate the removed region with the
            refiner's SD model (inpainting on the classical fill, ``removal_denoise`` strength)
            before the people are refined; False keeps the classical fill only.
        detector: a :class:`refsd.detect.PersonDetector` for images without keypoints (calls with
            ``keypoints=None`` or ``people="detect"``); its union person mask joins the region.
        detect: True builds that detector on first use, on ``device`` (``detect_model``,
            ``tile_scale``, model files from ``detect_dirs`` or the default folders). Without a
            detector, an image without keypoints is a :class:`PipelineError`.
        detect_model, min_score, max_people, min_presence, tile_scale: the detector's landmark
            model (lite, full, heavy) and settings (:class:`refsd.detect.PersonDetector`).
    """

    def __init__(
        self,
        body: Any = "anny",
        *,
        refiner: Any = None,
        attributes: AttributeDistribution | PersonAttributes | Mapping | None = None,
        gender: str = "neutral",
        anny_cache_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        crop_size: tuple[int, int] = (512, 768),
        context: float = 0.15,
        denoise: float = 0.6,
        steps: int = 20,
        guidance: float = 6.0,
        margin: float = 0.06,
        reach: float = 0.25,
        feather: float = 1.5,
        match_color: float = 0.5,
        fov_deg: float | None = None,
        coords: str = "auto",
        hand_order: str = "left_first",
        min_confidence: float = 0.3,
        keep_size: bool = True,
        draw_hands: bool = True,
        draw_face: bool = True,
        max_leak: float = 0.0,
        identity_check: bool = True,
        face_threshold: float = 0.363,
        extra_positive: str = "",
        extra_negative: str = "",
        sd_removal: bool = True,
        removal_denoise: float = 0.9,
        detector: Any = None,
        detect: bool = False,
        detect_model: str = "full",
        min_score: float = 0.5,
        max_people: int = 8,
        min_presence: float = 0.5,
        tile_scale: float | None = 0.5,
        detect_dirs: Sequence[str | Path] | None = None,
    ):
        from ..composite.crop import _check_size
        from ..fit.handle import BodyModelSpec

        if isinstance(body, BodyModelSpec):
            self.body = body
        elif str(body).lower() == "anny":
            self.body = BodyModelSpec("anny", gender=gender, cache_dir=str(anny_cache_dir) if anny_cache_dir else None)
        elif str(body).lower().endswith((".npz", ".pkl")):
            self.body = BodyModelSpec("smplx", gender=gender, file=str(body))
        else:
            raise PipelineError(f"unknown body model {body!r}; use 'anny' or the path of an SMPL-X .npz file")
        if refiner == "none":
            refiner = None
        self.refiner = refiner
        if attributes is None:
            attributes = AttributeDistribution()
        elif isinstance(attributes, Mapping):
            attributes = AttributeDistribution.from_dict(attributes)
        if not isinstance(attributes, (AttributeDistribution, PersonAttributes)):
            raise PipelineError("attributes must be an AttributeDistribution, its dict, or a PersonAttributes")
        self.attributes = attributes
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        w, h = (int(crop_size[0]), int(crop_size[1]))
        _check_size(w, h)
        self.crop_size = (w, h)
        self.context = float(context)
        if not 0.0 < float(denoise) <= 1.0:
            raise PipelineError(f"denoise is {denoise}; use a value in (0, 1] (0.6 keeps the avatar's layout)")
        self.denoise, self.steps, self.guidance = float(denoise), int(steps), float(guidance)
        self.margin, self.feather, self.match_color = float(margin), float(feather), float(match_color)
        self.sd_removal = bool(sd_removal)
        if not 0.0 < float(removal_denoise) <= 1.0:
            raise PipelineError(f"removal_denoise is {removal_denoise}; use a value in (0, 1] (0.9: ComfyUI graphs' default)")
        self.removal_denoise = float(removal_denoise)
        self.reach = float(reach)
        self.fit_options = dict(coords=coords, hand_order=hand_order, min_confidence=float(min_confidence),
                                fov_deg=fov_deg)
        self.render_options = dict(keep_size=bool(keep_size), draw_hands=bool(draw_hands), draw_face=bool(draw_face))
        self.max_leak = float(max_leak)
        self.identity_check, self.face_threshold = bool(identity_check), float(face_threshold)
        self._faces = None
        self.extra_positive, self.extra_negative = extra_positive, extra_negative
        check_detect_options(detect_model, min_score, max_people, min_presence)
        self.detector = detector
        self.detect = bool(detect) or detector is not None
        self.detect_model, self.tile_scale = str(detect_model), tile_scale
        self.detect_dirs = [Path(d) for d in detect_dirs] if detect_dirs else None
        self.detect_options = dict(min_score=float(min_score), max_people=int(max_people),
                                   min_presence=float(min_presence))

    # ------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _source(self, seed: int):
        from ..render.avatar import AttributeSource

        if isinstance(self.attributes, PersonAttributes):
            return AttributeSource(fixed=self.attributes)
        return AttributeSource(distribution=self.attributes, seed=int(seed))

    def detector_of(self):
        """The person detector (built on first use with ``detect=True``)."""
        if self.detector is None:
            if not self.detect:
                raise PipelineError("no keypoints for this image and no person detector: pass keypoints, or build "
                                    "the pipeline with detect=True (or detector=refsd.detect.PersonDetector(...))")
            from ..detect import PersonDetector

            self.detector = PersonDetector(self.detect_model, self.detect_dirs, device=self.device,
                                           tile_scale=self.tile_scale)
        return self.detector

    def face_analyzer(self):
        """RefSD's face models for the identity check (loaded on first use, on ``device``)."""
        if self._faces is None:
            from ..detect import FaceAnalyzer

            self._faces = FaceAnalyzer(model_dirs=self.detect_dirs, device=self.device)
        return self._faces

    def _identity(self, prep: _Prepared, out: torch.Tensor):
        from ..evaluate import as_frame, check_identity

        H, W = prep.image.shape[:2]
        people = as_frame(prep.pose_keypoint, (W, H), self.fit_options["min_confidence"]).people
        return check_identity(prep.image, out, people, analyzer=self.face_analyzer(), threshold=self.face_threshold)

    def warm_up(self) -> None:
        """Build the body model and its fitter now (the Anny cache on first use), not on the first image."""
        self.body.fitter(self.device, torch.float32)

    def fit_options_for(self, found) -> dict:
        """The fit's keypoint options for people found by ``found.source`` (the detector's frame: photo
        pixels, no hands)."""
        if found.source == "detect":
            return dict(self.fit_options, coords="pixels", hand_order="left_first")
        return self.fit_options

    def _prepare(self, index: int, image: Any, keypoints: Any, seed: int, people: str = "auto") -> _Prepared:
        from ..fit.api import fit_pose_keypoint

        timings: dict[str, float] = {}
        img = load_image(image)
        found = find_people(self.detector_of, img, keypoints, people, self.detect_options)
        timings["detect"] = found.seconds
        H, W = img.shape[:2]
        t0 = time.perf_counter()
        fitter = self.body.fitter(self.device, torch.float32)
        fit = fit_pose_keypoint(fitter, found.pose_keypoint, [(W, H)], **self.fit_options_for(found))[0]
        self._sync()
        timings["fit"] = time.perf_counter() - t0
        return self._build(index, img, found, fit, seed, timings)

    def _build(self, index: int, img: torch.Tensor, found, fit, seed: int, timings: dict, memory=None) -> _Prepared:
        """Everything after the fit: render, person region, removal, composite, and the crops to refine.
        ``memory``: a video's :class:`~refsd.composite.temporal.BackgroundMemory` (fill from earlier frames)."""
        from ..composite import composite, crop_batch, crop_mask_batch, people_crop_boxes, region_masks, remove_people
        from ..render.avatar import render_avatars

        model = self.body.model(self.device, torch.float32)
        t1 = time.perf_counter()
        passes, people = render_avatars(model, [fit], self._source(seed), **self.render_options)
        p, people = passes[0], people[0]
        self._sync()
        t2 = time.perf_counter()
        timings["render"] = t2 - t1
        # the detector's person mask joins the region and guides each person's growth (coats, hair)
        region, per = region_masks(model, fit, self.margin, (p.alpha, found.segmentation), image=img, reach=self.reach)
        dev_img = img.to(self.device)
        region_d = region.to(self.device)
        if memory is None:
            background, unseen = remove_people(dev_img, region_d), region_d
        else:  # a video: what earlier frames saw fills the hole; only the never-seen rest is new
            background, unseen, _info = memory.fill(dev_img, region_d)
        if (self.refiner is not None and self.sd_removal and fit.num_people and hasattr(self.refiner, "inpaint_background")
                and bool((unseen > 0.5).any())):
            # regenerate the removed region with SD inpainting (refsd_full's graph does the same)
            background = self.refiner.inpaint_background(
                background, unseen, int(seed), steps=self.steps, strength=self.removal_denoise, guidance=self.guidance)
        if memory is not None:
            memory.remember(dev_img, region_d, background)
        self._sync()
        t3 = time.perf_counter()
        timings["remove"] = t3 - t2
        comp = composite(background, p.rgb, p.alpha, region_d, self.feather, self.match_color, original=dev_img)
        prep = _Prepared(index=index, seed=int(seed), image=img, fit=fit, people=people, passes=p, region=region,
                         per=per, background=background, composite=comp, timings=timings,
                         people_source=found.source, detections=found.detections,
                         pose_keypoint=found.pose_keypoint)
        prep.notes += list(fit.warnings)
        if found.source == "detect" and not found.detections:
            prep.notes.append("the person detector found nobody (min_score {min_score}, min_presence {min_presence}): "
                              "the image is unchanged".format(**self.detect_options))
        if self.refiner is not None and fit.num_people:
            from ..refine import CONTROL_MAPS

            w, h = self.crop_size
            boxes = people_crop_boxes([fit.num_people], per, w, h, self.context)
            prep.boxes = boxes
            prep.crops = crop_batch(comp[None], boxes, "border")
            prep.maps = {c: crop_batch(getattr(p, CONTROL_MAPS[c])[None], boxes) for c in self.refiner.controls}
            prep.masks = crop_mask_batch(p.alpha[None], boxes)
            prep.prompts = crop_prompts([people], boxes, self.extra_positive, self.extra_negative)
            prep.seeds = [person_seed(seed, fit.people[b.person_index].keypoint_index, fit.people[b.person_index].track_id)
                          for b in boxes]
        self._sync()
        timings["composite"] = time.perf_counter() - t3
        return prep

    def _finish(self, prep: _Prepared, refined: torch.Tensor | None) -> PipelineResult:
        from ..composite import leak_ratio, no_survivors, paste_crops

        t0 = time.perf_counter()
        p = prep.passes
        out = prep.composite
        if refined is not None and prep.boxes:
            out = paste_crops(out[None].cpu(), refined, prep.boxes, p.alpha[None].cpu())[0]
        out = torch.from_numpy(to_uint8(out)).float() / 255  # what is saved: uint8 levels
        # region pixels that equal the photo by chance (after rounding to 8 bits) are nudged by 3/255:
        # no pixel of the original people survives, by construction (as RefSD Paste People's `original`)
        out = no_survivors(out, prep.image, prep.region)
        background = prep.background.cpu()
        leak = leak_ratio(prep.image, out, prep.region, background=background)
        timings = dict(prep.timings)
        timings["composite"] = timings.get("composite", 0.0) + time.perf_counter() - t0
        timings.setdefault("refine", 0.0)
        t1 = time.perf_counter()
        identity = self._identity(prep, out) if self.identity_check else None
        timings["identity"] = time.perf_counter() - t1
        return PipelineResult(
            image=out, seed=prep.seed, people=prep.people, fit=prep.fit, region=prep.region, person_masks=prep.per,
            background=background, avatar=p.rgb.cpu(), avatar_mask=p.alpha.cpu(), leak_ratio=leak,
            privacy_passed=leak <= self.max_leak and (identity is None or identity.passed), crop_boxes=prep.boxes, prompts=prep.prompts,
            timings={k: timings[k] for k in STAGES}, notes=prep.notes,
            people_source=prep.people_source, detections=prep.detections, identity=identity,
        )

    # ------------------------------------------------------------------
    def __call__(self, image: Any, keypoints: Any = None, seed: int = 0, people: str = "auto") -> PipelineResult:
        """Pseudonymize one image. ``image``: path, PIL image, array or ``(H, W, 3)`` tensor;
        ``keypoints``: a POSE_KEYPOINT JSON path or the parsed data (one frame), or None to
        detect the people (needs ``detect=True`` or a ``detector``). ``people``: "auto" (the
        keypoints when given, else detect), "file" (keypoints required) or "detect" (always
        detect, ignoring ``keypoints``); :mod:`refsd.pipeline.detection`."""
        res = self.batch([image], [keypoints], [seed], return_exceptions=False, people=people)
        return res[0]

    def batch(
        self, images: Sequence[Any], keypoints: Sequence[Any] | None = None, seeds: Sequence[int] | int = 0,
        return_exceptions: bool = False, people: str = "auto",
    ) -> list[PipelineResult | Exception]:
        """Pseudonymize several images; the people's crops of all images are refined together
        (in the refiner's batches). ``keypoints``: one per image (None entries, or None for all:
        detect), ``seeds``: one per image, or one for all; ``people`` as in :meth:`__call__`. With
        ``return_exceptions`` a failing image gives its exception in the list instead of raising.

        The per-crop noise comes from per-crop generators, so an image's result does not depend
        on which other images share its batch (up to the last bits of batched floating-point
        arithmetic on some hardware; run one image per call where bit-exact repeatability
        across batch layouts matters)."""
        if keypoints is None:
            keypoints = [None] * len(images)
        if len(images) != len(keypoints):
            raise PipelineError(f"{len(images)} images but {len(keypoints)} keypoint sets; give one per image")
        if isinstance(seeds, int):
            seeds = [seeds] * len(images)
        if len(seeds) != len(images):
            raise PipelineError(f"{len(images)} images but {len(seeds)} seeds")
        results: list[Any] = [None] * len(images)
        prepared: list[_Prepared] = []
        for i, (im, kp, s) in enumerate(zip(images, keypoints, seeds, strict=True)):
            try:
                prepared.append(self._prepare(i, im, kp, s, people))
            except Exception as e:
                if not return_exceptions:
                    raise
                results[i] = e
        return self._refine_and_finish(prepared, results, return_exceptions)

    def _refine_and_finish(self, prepared: list[_Prepared], results: list, return_exceptions: bool) -> list:
        """The crops of every prepared image refined together, then each image finished into ``results``
        (by ``index``)."""
        refined: dict[int, torch.Tensor] = {}
        todo = [p for p in prepared if p.boxes]
        if self.refiner is not None and todo:
            t0 = time.perf_counter()
            crops = torch.cat([p.crops for p in todo])
            maps = {c: torch.cat([p.maps[c] for p in todo]) for c in self.refiner.controls}
            masks = torch.cat([p.masks for p in todo])
            prompts = [x for p in todo for x in p.prompts]
            seeds_all = [x for p in todo for x in p.seeds]
            try:
                out, notes = self.refiner.refine(
                    crops, maps, masks, [a for a, _ in prompts], [b for _, b in prompts], seeds_all,
                    steps=self.steps, strength=self.denoise, guidance=self.guidance)
            except Exception as e:
                if not return_exceptions:
                    raise
                for p in todo:
                    results[p.index] = e
                prepared = [p for p in prepared if not p.boxes]
                todo = []
                out, notes = None, []
            self._sync()
            dt = time.perf_counter() - t0
            n_all = max(1, sum(len(p.boxes) for p in todo))
            start = 0
            for p in todo:
                k = len(p.boxes)
                refined[p.index] = out[start:start + k]
                start += k
                p.timings["refine"] = dt * k / n_all  # shared batch: split by crops
                p.notes += notes
        for p in prepared:
            try:
                results[p.index] = self._finish(p, refined.get(p.index))
            except Exception as e:
                if not return_exceptions:
                    raise
                results[p.index] = e
        return results

    def describe(self) -> dict:
        """The settings, JSON-safe (for manifests and benchmarks)."""
        att = self.attributes.to_dict()
        return {
            "body": self.body.label, "device": str(self.device), "crop_size": list(self.crop_size),
            "context": self.context, "denoise": self.denoise, "steps": self.steps, "guidance": self.guidance,
            "identity_check": self.identity_check, "face_threshold": self.face_threshold,
            "margin": self.margin, "reach": self.reach, "feather": self.feather, "match_color": self.match_color,
            "sd_removal": self.sd_removal, "removal_denoise": self.removal_denoise,
            "fit": self.fit_options, "render": self.render_options, "attributes": att,
            "refiner": self.refiner.describe() if self.refiner is not None else {"backend": "none"},
            "detect": ({"model": self.detect_model, "tile_scale": self.tile_scale, **self.detect_options}
                       if self.detect else None),
        }

    # ------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RefSDPipeline:
        """Build a pipeline (and its refiner) from a flat JSON-safe dict, e.g. in a Ray worker.

        Keys: ``refiner`` ("none" | "diffusers"), ``model``, ``model_config``, ``controlnets``
        ({name: path}), ``controlnet_configs``, ``dtype``, ``scheduler``, ``inpaint``,
        ``batch_size``, ``attention_slicing``, ``vae_tiling``, ``vae_slicing``, ``cpu_offload``,
        ``control_scales``, ``crop_width``, ``crop_height`` and every :class:`RefSDPipeline`
        keyword (``attributes`` as the distribution's dict, or ``{"fixed_person": {...}}``; ``detect``,
        ``detect_model``, ``min_score``, ... for the person detector, built in the worker).
        """
        from .config import pipeline_from_config

        return pipeline_from_config(cls, config)

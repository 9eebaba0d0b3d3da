"""RefSD as a library call: fit -> attributes -> render -> remove people -> crops -> refine -> paste -> composite.

>>> from refsd.pipeline import RefSDPipeline                                    # doctest: +SKIP
>>> from refsd.refine import DiffusersRefiner                                       # doctest: +SKIP
>>> refiner = DiffusersRefiner("models/sd15", {"depth": "models/cn-depth",      # doctest: +SKIP
...                            "openpose": "models/cn-openpose"})
>>> pipe = RefSDPipeline(refiner=refiner)                                       # doctest: +SKIP
>>> result = pipe("photo.png", "photo.json", seed=1)                            # doctest: +SKIP
>>> result.pil().save("photo_refsd.png"); result.leak_ratio                     # doctest: +SKIP
>>> RefSDPipeline(detect=True)("photo.png")     # no keypoints: find the people  # doctest: +SKIP

Without keypoints (``keypoints=None``, or ``people="detect"``) the people are found by the
person detector (:class:`refsd.detect.PersonDetector`, built on first use with ``detect=True``
or given as ``detector``); its union person mask joins the person region, and the result
records ``people_source`` and the detector's per-person ``detections`` (:mod:`~refsd.pipeline.detection`).
The stages are the same functions the ComfyUI nodes call (the ``refsd_full`` graph):
:func:`refsd.fit.api.fit_pose_keypoint`, :func:`refsd.render.avatar.render_avatars`,
:func:`refsd.composite.stages.region_masks`, :func:`refsd.composite.remove_people`,
:func:`refsd.composite.composite`, :func:`refsd.composite.stages.people_crop_boxes` /
:func:`refsd.composite.stages.crop_batch`, the refiner (none, or :class:`refsd.refine.refiner.DiffusersRefiner`:
img2img from the avatar composited on the cleaned photo, depth + OpenPose ControlNets, the
person's attribute prompt, denoise 0.6), :func:`refsd.composite.stages.paste_crops` limited to the
avatars' mask, and the privacy check :func:`refsd.composite.leak_ratio`.

Guarantees: the output has the input's size; pixels outside the grown person region are
the input's, bit for bit; inside it no pixel equals the input (chance matches of the new
content are nudged by 3/255, :func:`refsd.composite.no_survivors`), so the leak ratio is 0;
the same inputs, seed, settings and torch thread count give the same output.
Seeds: the people's attributes are drawn from ``(seed, person)``
(:class:`~refsd.people.distribution.AttributeDistribution`), each crop's diffusion noise from a CPU
generator seeded with :func:`person_seed` ``(seed, person)``.

The package holds :mod:`~refsd.pipeline.core` (:class:`RefSDPipeline`),
:mod:`~refsd.pipeline.result` (:class:`PipelineResult`, :data:`STAGES`, :func:`person_seed`)
and :mod:`~refsd.pipeline.io` (:func:`load_image`, :func:`to_uint8`, :class:`PipelineError`)
and :mod:`~refsd.pipeline.detection` (:data:`PEOPLE_MODES`, :func:`people_source`).
Importing it is cheap: the body model is built on first use, and diffusers is imported only
inside the functions of :mod:`refsd.refine.loading` and :mod:`refsd.refine.refiner`.
"""

from __future__ import annotations

from .core import RefSDPipeline
from .detection import PEOPLE_MODES, people_source
from .io import PipelineError, load_image, to_uint8
from .result import STAGES, PipelineResult, person_seed

__all__ = ["PEOPLE_MODES", "PipelineError", "PipelineResult", "RefSDPipeline", "person_seed", "people_source",
           "load_image", "to_uint8", "STAGES"]

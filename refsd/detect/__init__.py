"""Stage 1, find the people without keypoint files: an offline person detector in torch.

MediaPipe's BlazePose (Apache-2.0; the ``.tflite`` files are fetched at set-up by
``refsd models fetch``, never downloaded at run time) executed by RefSD's own TFLite
interpreter in torch, on the caller's device. Modules, in import order:
:mod:`~refsd.detect.files` (the pinned model files, where they are looked for, the fetcher),
:mod:`~refsd.detect.tflite_ops` / :mod:`~refsd.detect.tflite` (the TFLite graph executor),
:mod:`~refsd.detect.decode` (anchors, box decoding, weighted NMS, rotated crops, heatmap
refinement, masks back onto the photo) and :mod:`~refsd.detect.blazepose`
(:class:`PersonDetector`: photo -> :class:`Detections`, i.e. a keypoint frame in OpenPose
COCO-18 + feet with real confidences, one person mask each and their union).

>>> from refsd.detect import PersonDetector                         # doctest: +SKIP
>>> dets = PersonDetector("full")(image)       # (H, W, 3) 0..1, any size, gray or RGBA too
>>> frame, masks = dets.frame(), dets.masks()  # FrameKeypoints, (P, H, W)
"""

from __future__ import annotations

from .blazepose import (
    COCO18_FROM_BLAZEPOSE,
    FOOT6_FROM_BLAZEPOSE,
    DetectedPerson,
    DetectError,
    Detections,
    PersonDetector,
    as_rgb_image,
    detect_people,
)
from .files import (
    COMFYUI_MODELS_SUBDIR,
    FETCH_COMMAND,
    LANDMARK_VARIANTS,
    MODEL_FILES,
    DetectFetchError,
    DetectModelCorrupt,
    DetectModelsMissing,
    ModelFile,
    default_detect_dirs,
    fetch_detect_models,
    find_model_file,
    find_model_files,
    variant_keys,
)
from .tflite import TFLiteModel, TFLiteModelError

__all__ = [
    "COCO18_FROM_BLAZEPOSE",
    "COMFYUI_MODELS_SUBDIR",
    "FETCH_COMMAND",
    "FOOT6_FROM_BLAZEPOSE",
    "LANDMARK_VARIANTS",
    "MODEL_FILES",
    "DetectError",
    "DetectFetchError",
    "DetectModelCorrupt",
    "DetectModelsMissing",
    "DetectedPerson",
    "Detections",
    "ModelFile",
    "PersonDetector",
    "TFLiteModel",
    "TFLiteModelError",
    "as_rgb_image",
    "default_detect_dirs",
    "detect_people",
    "fetch_detect_models",
    "find_model_file",
    "find_model_files",
    "variant_keys",
]

"""Stage 1, find the people without keypoint files: offline person and face detectors in torch.

MediaPipe's BlazePose (Apache-2.0) executed by RefSD's own TFLite interpreter, and OpenCV
Zoo's YuNet face detector and SFace face embedder (Apache-2.0 / MIT) executed by RefSD's own
ONNX interpreter, both in plain torch on the caller's device (no TensorFlow, no OpenCV, no
onnxruntime; the files are fetched at set-up by ``refsd models fetch``, never downloaded at
run time). Modules, in import order:
:mod:`~refsd.detect.files` / :mod:`~refsd.detect.fetch` (the pinned model files, where they
are looked for; the set-up-time fetcher), :mod:`~refsd.detect.tflite_ops` /
:mod:`~refsd.detect.tflite` (the TFLite graph executor), :mod:`~refsd.detect.onnx_proto` /
:mod:`~refsd.detect.onnx_ops` / :mod:`~refsd.detect.onnx` (the ONNX reader and graph
executor), :mod:`~refsd.detect.decode` (anchors, box decoding, weighted NMS, rotated crops,
heatmap refinement, masks back onto the photo), :mod:`~refsd.detect.blazepose`
(:class:`PersonDetector`: photo -> :class:`Detections`, i.e. a keypoint frame in OpenPose
COCO-18 + feet with real confidences, one person mask each and their union),
:mod:`~refsd.detect.facemath` / :mod:`~refsd.detect.faces` (:class:`FaceAnalyzer`: faces with
5 landmarks, ArcFace alignment, 128-d identity features and their cosine similarity, as
OpenCV's ``FaceDetectorYN`` / ``FaceRecognizerSF``).

>>> from refsd.detect import PersonDetector, FaceAnalyzer            # doctest: +SKIP
>>> dets = PersonDetector("full")(image)       # (H, W, 3) 0..1, any size, gray or RGBA too
>>> frame, masks = dets.frame(), dets.masks()  # FrameKeypoints, (P, H, W)
>>> fa = FaceAnalyzer()
>>> faces = fa.detect(image)                   # [Face(box, landmarks (5, 2), score)]
>>> emb = fa.embed(image, faces)               # (N, 128), L2-normalised
>>> fa.similarity(emb, emb) >= SFACE_COSINE_THRESHOLD  # same identity
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
from .faces import SFACE_COSINE_THRESHOLD, SFACE_L2_THRESHOLD, Face, FaceAnalyzer, FaceError
from .fetch import fetch_detect_models
from .files import (
    COMFYUI_MODELS_SUBDIR,
    FACE_KEYS,
    FETCH_COMMAND,
    LANDMARK_VARIANTS,
    MODEL_FILES,
    DetectFetchError,
    DetectModelCorrupt,
    DetectModelsMissing,
    ModelFile,
    default_detect_dirs,
    find_model_file,
    find_model_files,
    variant_keys,
)
from .onnx import ONNXModel, ONNXModelError
from .tflite import TFLiteModel, TFLiteModelError

__all__ = [
    "COCO18_FROM_BLAZEPOSE",
    "COMFYUI_MODELS_SUBDIR",
    "FACE_KEYS",
    "FETCH_COMMAND",
    "FOOT6_FROM_BLAZEPOSE",
    "LANDMARK_VARIANTS",
    "MODEL_FILES",
    "SFACE_COSINE_THRESHOLD",
    "SFACE_L2_THRESHOLD",
    "DetectError",
    "DetectFetchError",
    "DetectModelCorrupt",
    "DetectModelsMissing",
    "DetectedPerson",
    "Detections",
    "Face",
    "FaceAnalyzer",
    "FaceError",
    "ModelFile",
    "ONNXModel",
    "ONNXModelError",
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

"""Faces and face identity: OpenCV Zoo's YuNet detector and SFace embedder, run in torch.

:class:`FaceAnalyzer` finds faces (box, 5 landmarks, score) with YuNet
(``face_detection_yunet_2023mar_int8bq.onnx``), aligns each to the 112 x 112 ArcFace template
and embeds it with SFace (``face_recognition_sface_2021dec_int8bq.onnx``) into a 128-d,
L2-normalised feature; two faces show the same identity when the cosine of their features
is at least :data:`SFACE_COSINE_THRESHOLD` (OpenCV's 0.363, ``FaceRecognizerSF.match``
with ``FR_COSINE``). The pipeline is OpenCV 4's ``FaceDetectorYN`` / ``FaceRecognizerSF``
(:mod:`refsd.detect.facemath` holds the arithmetic), without OpenCV: the networks run through
:class:`refsd.detect.onnx.ONNXModel` on the caller's device; the files come from
:func:`refsd.detect.files.find_model_files` (fetched at set-up by ``refsd models fetch``).

Photos of any size: a photo whose long side exceeds ``max_side`` is downscaled (antialiased
bilinear) for detection, one below ``min_side`` is upscaled, and the results are mapped back
to the photo's pixels (pixel centres at integer coordinates, as OpenCV's warp reads them).
Alignment reads only the pixels around each face, so photos of any size embed in bounded
memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RefSDError
from . import facemath
from .blazepose import as_rgb_image
from .files import FACE_KEYS, find_model_files
from .onnx import ONNXModel

__all__ = ["Face", "FaceAnalyzer", "FaceError", "SFACE_COSINE_THRESHOLD", "SFACE_L2_THRESHOLD",
           "DEFAULT_SCORE_THRESHOLD", "landmarks_array"]

#: SFace: cosine >= this -> same identity (OpenCV's FaceRecognizerSF sample, FR_COSINE)
SFACE_COSINE_THRESHOLD = 0.363
#: SFace: L2 distance of the normalised features <= this -> same identity (FR_NORM_L2)
SFACE_L2_THRESHOLD = 1.128
#: YuNet score for a face (see :class:`FaceAnalyzer`)
DEFAULT_SCORE_THRESHOLD = 0.7
#: SFace forward passes take at most this many faces at once
EMBED_BATCH = 16
#: a photo downscaled for detection is converted to float this many pixels at a time
BAND_PIXELS = 1 << 21


class FaceError(RefSDError):
    """The face models cannot run on this input (bad image, bad landmarks, bad argument)."""


@dataclass
class Face:
    """One face found in a photo (photo pixels, ``x`` right, ``y`` down).

    Attributes:
        box: ``(x0, y0, x1, y1)``.
        landmarks: ``(5, 2)`` float32: right eye, left eye, nose tip, right and left mouth corner
            (the person's right / left: the right eye is on the image's left in a frontal face).
        score: YuNet's score, sqrt(class score x objectness), 0..1.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float


_MODELS: dict[tuple[str, str], ONNXModel] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: Path, device) -> ONNXModel:
    key = (str(path), str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = ONNXModel(path, device=device)
        return _MODELS[key]


def _raw_image(image):
    """The caller's image as a (H, W[, C]) tensor or array, not converted (so crops stay cheap)."""
    raw = image if isinstance(image, torch.Tensor) else np.asarray(image)
    if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (1, 3, 4)):
        raise FaceError(f"the face models need one image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                        f"got {tuple(raw.shape)}. Pass one image of a batch at a time.")
    if raw.shape[0] < 1 or raw.shape[1] < 1:
        raise FaceError(f"the image is empty ({raw.shape[1]} x {raw.shape[0]} pixels)")
    return raw


def landmarks_array(landmarks) -> np.ndarray:
    """``(N, 5, 2)`` float32 from a tensor / array ``(N, 5, 2)`` or ``(5, 2)`` (or ``(N, 10)``), a
    :class:`Face` or a sequence of faces."""
    if isinstance(landmarks, Face):
        landmarks = [landmarks]
    if isinstance(landmarks, (list, tuple)) and landmarks and all(isinstance(f, Face) for f in landmarks):
        landmarks = [f.landmarks for f in landmarks]
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().numpy()
    arr = np.asarray(landmarks, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 5, 2), np.float32)
    if arr.shape == (5, 2):
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape[1] == 10:
        arr = arr.reshape(-1, 5, 2)
    if arr.ndim != 3 or arr.shape[1:] != (5, 2):
        raise FaceError(f"landmarks must be (N, 5, 2) (right eye, left eye, nose, right / left mouth corner); "
                        f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise FaceError("landmarks hold NaN or infinite values")
    return arr


class FaceAnalyzer:
    """YuNet + SFace in torch: ``detect(image) -> [Face]``, ``embed(image, landmarks) -> (N, 128)``.

    Args:
        model_dirs: folders holding the two ``.onnx`` files (default:
            :func:`refsd.detect.files.default_detect_dirs`); missing files raise
            :class:`refsd.detect.files.DetectModelsMissing` naming them and the fetch command.
        device: torch device of the networks (default CPU).
        score_threshold: YuNet score for a face (:data:`DEFAULT_SCORE_THRESHOLD`, 0.7, below
            OpenCV's usual 0.9: the test photos' real faces score 0.89-0.94, and 0.9 misses
            the side-lit cameraman of samples/camera.png (0.894); faceless screenshots and
            3D-viewer renders reach 0.53. Lower it for profile, tiny or blurred faces.)
        nms_threshold: boxes overlapping a better one by more than this IoU are dropped (0.3).
        top_k: candidates kept before NMS (5000, OpenCV's default).
        max_side: photos whose long side is larger are downscaled to it for detection
            (default 1280: faces down to ~10 px at that scale are found; None: never).
        min_side: photos whose long side is smaller are upscaled to it for detection (a tight
            crop of one face; default 0: never).
    """

    def __init__(self, model_dirs: Sequence[Path] | None = None, device=None, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 nms_threshold: float = 0.3, top_k: int = 5000, max_side: int | None = 1280, min_side: int = 0):
        self._check(score_threshold, nms_threshold, top_k, max_side, min_side)
        self.device = torch.device(device or "cpu")
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), int(top_k)
        self.max_side, self.min_side = max_side, int(min_side)
        paths = find_model_files(FACE_KEYS, model_dirs)  # one error naming every missing file
        self.detector = _load(paths[FACE_KEYS[0]], self.device)
        self.embedder = _load(paths[FACE_KEYS[1]], self.device)

    @staticmethod
    def _check(score_threshold, nms_threshold, top_k, max_side, min_side) -> None:
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
            raise FaceError(f"thresholds are 0..1; got score_threshold={score_threshold}, nms_threshold={nms_threshold}")
        if top_k < 1 or (max_side is not None and max_side < facemath.DIVISOR) or min_side < 0:
            raise FaceError(f"need top_k >= 1, max_side >= {facemath.DIVISOR} (or None), min_side >= 0; got "
                            f"{top_k}, {max_side}, {min_side}")
        if max_side is not None and min_side > max_side:
            raise FaceError(f"min_side {min_side} is larger than max_side {max_side}")

    def detection_size(self, width: int, height: int, max_side: int | None = None,
                       min_side: int | None = None) -> tuple[int, int]:
        """``(width, height)`` at which YuNet sees a ``width`` x ``height`` photo (before padding)."""
        max_side = self.max_side if max_side is None else max_side
        min_side = self.min_side if min_side is None else min_side
        side = max(width, height)
        scale = (max_side / side if max_side and side > max_side else min_side / side if side < min_side else 1.0)
        if scale == 1.0:
            return width, height
        return max(1, round(width * scale)), max(1, round(height * scale))

    @torch.inference_mode()
    def detection_image(self, image, max_side: int | None = None, min_side: int | None = None) -> torch.Tensor:
        """``(h, w, 3)`` float32 0..1 RGB on the device: the photo as YuNet sees it (before the
        padding to a multiple of 32). Downscaling is antialiased bilinear, done separably: each
        band of rows is resized horizontally first, so a huge photo is never converted to float
        at once."""
        raw = _raw_image(image)
        h, w = raw.shape[:2]
        dw, dh = self.detection_size(w, h, max_side, min_side)
        if (dw, dh) == (w, h):
            return as_rgb_image(raw, self.device)
        if dw > w or dh > h:
            x = as_rgb_image(raw, self.device).permute(2, 0, 1)[None]
            return F.interpolate(x, size=(dh, dw), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        band = max(1, BAND_PIXELS // w)
        x = torch.empty(1, 3, h, dw, device=self.device)
        for y in range(0, h, band):
            t = as_rgb_image(raw[y : y + band], self.device).permute(2, 0, 1)[None]
            x[:, :, y : y + band] = F.interpolate(t, size=(t.shape[2], dw), mode="bilinear", align_corners=False,
                                                  antialias=True)
        x = F.interpolate(x, size=(dh, dw), mode="bilinear", align_corners=False, antialias=True)
        return x[0].permute(1, 2, 0)

    @torch.inference_mode()
    def detect(self, image, *, score_threshold: float | None = None, max_side: int | None = None,
               min_side: int | None = None, max_faces: int | None = None) -> list[Face]:
        """The faces in ``image`` ((H, W[, 1 | 3 | 4]) float 0..1 or uint8, torch or numpy), best
        score first, at most ``max_faces``. Keyword arguments override the analyzer's settings."""
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        self._check(thr, self.nms_threshold, self.top_k, self.max_side if max_side is None else max_side,
                    self.min_side if min_side is None else min_side)
        raw = _raw_image(image)
        h, w = raw.shape[:2]
        img = self.detection_image(raw, max_side, min_side)
        dh, dw = img.shape[:2]
        pad_h, pad_w = -(-dh // facemath.DIVISOR) * facemath.DIVISOR, -(-dw // facemath.DIVISOR) * facemath.DIVISOR
        bgr = F.pad(img.permute(2, 0, 1)[None, [2, 1, 0]] * 255.0, (0, pad_w - dw, 0, pad_h - dh))
        del img
        outputs = self.detector(bgr)
        boxes, marks, scores = facemath.decode_yunet(outputs, 0, pad_h, pad_w, thr)
        if len(scores) > 1:  # OpenCV runs NMS only when there is more than one candidate
            keep = facemath.nms_opencv(boxes, scores, thr, self.nms_threshold, self.top_k)
            boxes, marks, scores = boxes[keep], marks[keep], scores[keep]
        sx, sy = dw / w, dh / h  # detection px -> photo px, pixel centres at integers
        faces = []
        for b, m, s in zip(boxes, marks, scores, strict=True):
            x0, y0 = (b[0] + 0.5) / sx - 0.5, (b[1] + 0.5) / sy - 0.5
            lm = ((m.astype(np.float64) + 0.5) / np.array([sx, sy]) - 0.5).astype(np.float32)
            faces.append(Face(box=(float(x0), float(y0), float(x0 + b[2] / sx), float(y0 + b[3] / sy)),
                              landmarks=lm, score=float(s)))
        return faces[:max_faces] if max_faces is not None else faces

    @torch.inference_mode()
    def align(self, image, landmarks) -> torch.Tensor:
        """``(N, 112, 112, 3)`` float32 0..1 RGB: each face warped onto the ArcFace template
        (OpenCV's ``FaceRecognizerSF.alignCrop``). ``landmarks``: ``(N, 5, 2)`` photo px (any
        source: another photo of the same size works), a Face or a list of faces."""
        raw = _raw_image(image)
        lm = landmarks_array(landmarks)
        size = facemath.ALIGNED_SIZE
        if not len(lm):
            return torch.zeros(0, size, size, 3, device=self.device)
        m = facemath.similarity_transforms(lm)
        bad = np.flatnonzero(~np.isfinite(m).all(axis=(1, 2)))
        if len(bad):
            raise FaceError(f"landmarks of face(s) {bad.tolist()} are degenerate (all at one point): no alignment")
        inv = facemath.invert_affine(m)
        h, w = raw.shape[:2]
        out = []
        for n, (x0, y0, x1, y1) in enumerate(facemath.source_footprint(inv, size)):
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if x0 >= x1 or y0 >= y1:  # the face lies wholly outside the photo: OpenCV's border value
                out.append(torch.zeros(size, size, 3, device=self.device))
                continue
            crop = as_rgb_image(raw[y0:y1, x0:x1], self.device)
            out.append(facemath.warp_affine(crop, inv[n], (x0, y0), size).clamp(0, 1))
        return torch.stack(out)

    @torch.inference_mode()
    def embed_aligned(self, aligned) -> torch.Tensor:
        """``(N, 112, 112, 3)`` RGB crops (float 0..1 or uint8) -> ``(N, 128)`` L2-normalised float32."""
        t = aligned if isinstance(aligned, torch.Tensor) else torch.as_tensor(np.asarray(aligned))
        if t.ndim != 4 or tuple(t.shape[1:]) != (facemath.ALIGNED_SIZE, facemath.ALIGNED_SIZE, 3):
            raise FaceError(f"aligned faces must be (N, 112, 112, 3); got {tuple(t.shape)}")
        scale = 1.0 if t.dtype == torch.uint8 else 255.0
        feats = []
        for i in range(0, len(t), EMBED_BATCH):
            x = t[i : i + EMBED_BATCH].to(self.device, torch.float32).permute(0, 3, 1, 2) * scale
            feats.append(self.embedder(x)["fc1"].float())
        if not feats:
            return torch.zeros(0, 128, device=self.device)
        return F.normalize(torch.cat(feats), dim=1)

    def embed(self, image, landmarks) -> torch.Tensor:
        """``(N, 128)`` L2-normalised SFace features of the faces at ``landmarks`` (see :meth:`align`)."""
        return self.embed_aligned(self.align(image, landmarks))

    @staticmethod
    def similarity(a, b) -> torch.Tensor:
        """Cosine matrix ``(Na, Nb)`` of two feature sets (``(N, 128)`` or one ``(128,)``), each
        L2-normalised first (``FaceRecognizerSF.match`` with ``FR_COSINE``)."""
        ta, tb = (torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).float() for v in (a, b))
        ta, tb = (t[None] if t.ndim == 1 else t for t in (ta, tb))
        if ta.ndim != 2 or tb.ndim != 2 or ta.shape[1] != tb.shape[1]:
            raise FaceError(f"features must be (N, D) with the same D; got {tuple(ta.shape)} and {tuple(tb.shape)}")
        return F.normalize(ta, dim=1) @ F.normalize(tb.to(ta.device), dim=1).T

    @staticmethod
    def same_identity(similarity, threshold: float = SFACE_COSINE_THRESHOLD):
        """``similarity >= threshold`` (a tensor of booleans, or one bool for a number)."""
        return similarity >= threshold

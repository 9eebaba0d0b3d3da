"""The arithmetic of OpenCV's face pipeline, without OpenCV: YuNet's decoding and NMS, SFace's
5-point similarity alignment and the bilinear warp.

Each function follows OpenCV 4.x (``modules/objdetect/src/face_detect.cpp``,
``face_recognize.cpp``, ``modules/dnn/src/nms.inl.hpp``):

* :func:`decode_yunet`: per stride 8 / 16 / 32, score = sqrt(clamp(cls) * clamp(obj)), box
  centre (c + b0, r + b1) * s, size exp(b2, b3) * s, landmarks (k + (c, r)) * s, in float32;
  candidates below the score threshold are dropped.
* :func:`nms_opencv`: ``cv::dnn::NMSBoxes`` on the boxes truncated to integers (``Rect2i``),
  stable sort by score, ``top_k`` before suppression, keep when IoU <= threshold.
* :func:`similarity_transforms`: ``getSimilarityTransformMatrix`` (Umeyama with OpenCV's
  hard-coded template mean), landmarks -> the 112 x 112 ArcFace template.
* :func:`warp_affine`: ``cv::warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)``: output pixel (u, v)
  samples the source at M^-1 (u, v), pixel centres at integer coordinates, taps outside the
  image read 0. OpenCV quantizes positions to 1/32 px and 8-bit results to integers; this is
  exact bilinear interpolation in float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["STRIDES", "DIVISOR", "ALIGNED_SIZE", "TEMPLATE", "decode_yunet", "nms_opencv",
           "similarity_transforms", "invert_affine", "warp_affine", "source_footprint"]

STRIDES = (8, 16, 32)
DIVISOR = 32
ALIGNED_SIZE = 112
#: the ArcFace 5-point template (right eye, left eye, nose tip, right / left mouth corner)
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                     [70.7299, 92.2041]], np.float32)
#: OpenCV's hard-coded mean of TEMPLATE (the true mean, rounded)
_TEMPLATE_MEAN = np.array([56.0262, 71.9008], np.float32)
_FLT_MIN = float(np.finfo(np.float32).tiny)


def decode_yunet(outputs: dict[str, torch.Tensor], item: int, pad_h: int, pad_w: int, score_threshold: float):
    """Batch item ``item`` of YuNet's 12 outputs -> ``(boxes (K, 4) x, y, w, h; landmarks (K, 5, 2);
    scores (K,))`` float32 numpy, in the padded input's pixels, every candidate with
    score >= ``score_threshold``, in OpenCV's order (stride 8 first, row-major)."""
    boxes, marks, scores = [], [], []
    for s in STRIDES:
        rows, cols = pad_h // s, pad_w // s
        cls, obj = outputs[f"cls_{s}"][item, :, 0], outputs[f"obj_{s}"][item, :, 0]
        bbox, kps = outputs[f"bbox_{s}"][item], outputs[f"kps_{s}"][item]
        if cls.numel() != rows * cols:
            raise ValueError(f"YuNet stride {s}: {cls.numel()} cells for a {pad_w} x {pad_h} input")
        score = torch.sqrt(cls.clamp(0, 1) * obj.clamp(0, 1))
        keep = torch.nonzero(score >= score_threshold).reshape(-1)
        if not len(keep):
            continue
        r = torch.div(keep, cols, rounding_mode="floor").to(torch.float32)
        c = (keep % cols).to(torch.float32)
        b, k = bbox[keep].float(), kps[keep].float().reshape(-1, 5, 2)
        cx, cy = (c + b[:, 0]) * s, (r + b[:, 1]) * s
        w, h = torch.exp(b[:, 2]) * s, torch.exp(b[:, 3]) * s
        boxes.append(torch.stack([cx - w / 2, cy - h / 2, w, h], 1))
        marks.append((k + torch.stack([c, r], 1)[:, None, :]) * s)
        scores.append(score[keep].float())
    if not scores:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32)
    return (torch.cat(boxes).cpu().numpy(), torch.cat(marks).cpu().numpy(), torch.cat(scores).cpu().numpy())


def nms_opencv(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
               top_k: int) -> np.ndarray:
    """Indices kept by ``cv::dnn::NMSBoxes(Rect2i(int(x), int(y), int(w), int(h)), ...)``, best first."""
    rect = np.trunc(boxes.astype(np.float64))  # C++ int(): toward zero
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    x0, y0, w, h = rect.T
    x1, y1, area = x0 + w, y0 + h, w * h
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.array(kept)
            iw = np.minimum(x1[i], x1[k]) - np.maximum(x0[i], x0[k])
            ih = np.minimum(y1[i], y1[k]) - np.maximum(y0[i], y0[k])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            union = area[i] + area[k] - inter
            both = area[i] + area[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = np.where(both <= 0, 1.0, 1.0 - (1.0 - inter / np.where(union == 0, 1, union)))
            if (overlap.astype(np.float32) > np.float32(nms_threshold)).any():
                continue
        kept.append(int(i))
    return np.array(kept, np.int64)


def similarity_transforms(points) -> np.ndarray:
    """``(N, 5, 2)`` landmarks (photo px) -> ``(N, 2, 3)`` float64 matrices mapping them onto
    :data:`TEMPLATE` (OpenCV's ``getSimilarityTransformMatrix``, float32 demeaning, float64
    accumulation). Degenerate landmarks (all at one point) give NaN."""
    src = np.asarray(points, np.float32).reshape(-1, 5, 2)
    out = np.full((len(src), 2, 3), np.nan)
    dst_demean = TEMPLATE - _TEMPLATE_MEAN
    for n, p in enumerate(src):
        mean = (p[0] + p[1] + p[2] + p[3] + p[4]) / np.float32(5)
        demean = p - mean
        a = (dst_demean[:, :, None] * demean[:, None, :]).astype(np.float64).sum(0) / 5  # A[i][j] = <dst_i, src_j>
        if not np.isfinite(a).all():
            continue
        d = np.array([1.0, -1.0 if np.linalg.det(a) < 0 else 1.0])
        u, s, vt = np.linalg.svd(a)
        rank = int((s > s.max() * 2 * _FLT_MIN).sum())
        if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
            t = u @ vt
        elif rank == 1:
            t = u @ np.diag([d[0], -1.0]) @ vt
        else:
            t = u @ np.diag(d) @ vt
        var = (demean.astype(np.float32) ** 2).astype(np.float64).sum(0) / 5
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = 1.0 / var.sum() * float(s @ d)
        if not math.isfinite(scale) or scale == 0:
            continue
        ts = t @ mean.astype(np.float64)
        out[n, :, 2] = _TEMPLATE_MEAN.astype(np.float64) - scale * ts
        out[n, :, :2] = t * scale
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    """``cv::invertAffineTransform`` for ``(N, 2, 3)`` matrices."""
    a, b = m[:, :, :2], m[:, :, 2:]
    inv = np.linalg.inv(a)
    return np.concatenate([inv, -inv @ b], axis=2)


def source_footprint(inv: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """``(N, 4)`` integer ``x0, y0, x1, y1`` (end exclusive, not clipped) of the source pixels that
    an ``size`` x ``size`` warp by ``inv`` (output -> source) reads: its bilinear taps."""
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], np.float64)
    xy = np.einsum("nij,kj->nki", inv, corners)
    lo, hi = np.floor(xy.min(1)), np.floor(xy.max(1)) + 2
    return np.concatenate([lo, hi], 1).astype(np.int64)


def warp_affine(crop: torch.Tensor, inv: np.ndarray, origin: tuple[int, int], size: int = ALIGNED_SIZE) -> torch.Tensor:
    """``(h, w, C)`` float ``crop`` of the photo whose top-left pixel is photo pixel ``origin``
    (x, y), warped by ``inv`` (2 x 3, output px -> photo px) to ``(size, size, C)``: bilinear,
    taps outside the crop read 0 (the crop holds every tap inside the photo)."""
    h, w = crop.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64)), -1)
    src = grid @ inv[:, :2].T + inv[:, 2]
    src -= np.array(origin, np.float64)
    norm = (2 * src + 1) / np.array([w, h], np.float64) - 1  # align_corners=False: pixel i at (2i + 1) / n - 1
    g = torch.from_numpy(norm.astype(np.float32)).to(crop.device)[None]
    x = crop.permute(2, 0, 1)[None].to(torch.float32)
    out = F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0)

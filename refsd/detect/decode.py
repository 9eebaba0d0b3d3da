"""The maths of MediaPipe's BlazePose graph around the two networks, in torch.

Everything here is MediaPipe's own decoding (``pose_detection_cpu.pbtxt``,
``pose_detection_to_roi.pbtxt``, ``pose_landmark_by_roi_cpu.pbtxt``), done in **pixels** of the
photo so that rotated crops of non-square photos stay exact:

* :func:`ssd_anchors`: the detector's 2254 fixed-size anchors (strides 8, 16, 32, 32, 32);
* :func:`letterbox`: the photo scaled into the detector's square input, padded evenly;
* :func:`decode_detections`: raw SSD output -> boxes, 4 keypoints and sigmoid scores;
* :func:`weighted_nms`: MediaPipe's weighted non-maximum suppression (IoU 0.3);
* :func:`detection_rois`: the rotated square region of interest of each person (hip centre,
  hip -> scale-point vector turned upright, size x 1.25);
* :func:`roi_to_image` / :func:`crop_rois`: the affine map of a ROI and the 256 x 256 crops;
* :func:`refine_from_heatmap`: the landmark model's heatmap refinement (7 x 7 window);
* :func:`roi_mask_to_image`: a ROI's person mask warped back onto the photo.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: ``pose_detection_cpu.pbtxt``: SsdAnchorsCalculator options.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
DETECTOR_SIZE = 224
#: TensorsToDetectionsCalculator: box + 4 keypoints of 2 values; scores clipped to +-100 before the sigmoid.
NUM_DETECTOR_KEYPOINTS = 4
SCORE_CLIP = 100.0
#: NonMaxSuppressionCalculator: weighted, IoU.
NMS_IOU = 0.3
#: AlignmentPointsRectsCalculator (hip centre -> full-body scale point, turned to 90 deg) and
#: RectTransformationCalculator (x 1.25, square on the long side).
ROI_TARGET_ANGLE = math.pi / 2
ROI_SCALE = 1.25
#: RefineLandmarksFromHeatmapCalculator.
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5


def ssd_anchors(size: int = DETECTOR_SIZE, strides=ANCHOR_STRIDES, device=None) -> torch.Tensor:
    """``(N, 2)`` anchor centres ``x, y`` in 0..1 of the detector input (fixed size 1 x 1).

    Layers of the same stride share one feature map; each layer puts 2 anchors on every cell
    (aspect ratio 1 and the interpolated scale; the sizes do not matter with a fixed anchor size).
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = math.ceil(size / strides[i])
        ys, xs = torch.meshgrid(torch.arange(fm), torch.arange(fm), indexing="ij")
        c = torch.stack([(xs + 0.5) / fm, (ys + 0.5) / fm], dim=-1).reshape(-1, 1, 2)
        centres.append(c.expand(-1, per_cell, 2).reshape(-1, 2))
        i = j
    return torch.cat(centres).to(device=device, dtype=torch.float32)


def letterbox(image: torch.Tensor, size: int = DETECTOR_SIZE) -> tuple[torch.Tensor, tuple[float, float, int, int]]:
    """Scale ``(H, W, 3)`` into a ``size`` square keeping its aspect ratio, padding evenly with 0.

    Returns ``(1, size, size, 3)`` and ``(scale_x, scale_y, pad_x, pad_y)``: an input pixel ``u``
    maps back to the photo at ``(u - pad) / scale``. Downscaling is antialiased (an 8K photo keeps its detail).
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = image.permute(2, 0, 1).unsqueeze(0)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    px, py = (size - nw) // 2, (size - nh) // 2
    x = F.pad(x, (px, size - nw - px, py, size - nh - py))
    return x.permute(0, 2, 3, 1), (nw / w, nh / h, px, py)


def tile_starts(length: int, side: int) -> list[int]:
    """Starts of half-overlapping tiles of ``side`` covering ``0..length`` (the last one flush
    with the end)."""
    if side >= length:
        return [0]
    n = math.ceil((length - side) / (side / 2)) + 1
    return sorted({round(i * (length - side) / (n - 1)) for i in range(n)})


def decode_detections(raw_boxes: torch.Tensor, raw_scores: torch.Tensor, anchors: torch.Tensor, size: int = DETECTOR_SIZE):
    """SSD output ``(N, 12)``, ``(N, 1)`` -> boxes ``(N, 4)`` ``x0, y0, x1, y1``, keypoints
    ``(N, 4, 2)`` (both in detector-input pixels) and scores ``(N,)`` in 0..1."""
    ax, ay = anchors[:, 0] * size, anchors[:, 1] * size
    cx, cy = raw_boxes[:, 0] + ax, raw_boxes[:, 1] + ay
    w, h = raw_boxes[:, 2], raw_boxes[:, 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    kp = raw_boxes[:, 4 : 4 + 2 * NUM_DETECTOR_KEYPOINTS].reshape(-1, NUM_DETECTOR_KEYPOINTS, 2)
    kp = kp + torch.stack([ax, ay], dim=-1)[:, None, :]
    scores = torch.sigmoid(raw_scores[:, 0].clamp(-SCORE_CLIP, SCORE_CLIP))
    return boxes, kp, scores


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of one box ``(4,)`` against ``(M, 4)``."""
    ix = (torch.minimum(a[2], b[:, 2]) - torch.maximum(a[0], b[:, 0])).clamp(min=0)
    iy = (torch.minimum(a[3], b[:, 3]) - torch.maximum(a[1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    area = lambda t: (t[..., 2] - t[..., 0]).clamp(min=0) * (t[..., 3] - t[..., 1]).clamp(min=0)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def weighted_nms(boxes, keypoints, scores, *, min_score: float, iou: float = NMS_IOU, max_count: int | None = None):
    """MediaPipe's weighted NMS: the best remaining detection takes every detection overlapping
    it by more than ``iou`` and becomes their score-weighted mean (its own score kept).

    Returns lists of boxes ``(4,)``, keypoints ``(4, 2)`` and float scores, best first.
    """
    keep = scores >= min_score
    boxes, keypoints, scores = boxes[keep], keypoints[keep], scores[keep]
    order = torch.argsort(scores, descending=True)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out_b, out_k, out_s = [], [], []
    remaining = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    while bool(remaining.any()) and (max_count is None or len(out_s) < max_count):
        top = int(torch.nonzero(remaining)[0])
        overlap = remaining & (box_iou(boxes[top], boxes) > iou)
        overlap[top] = True
        w = scores[overlap]
        w = w / w.sum()
        out_b.append((boxes[overlap] * w[:, None]).sum(0))
        out_k.append((keypoints[overlap] * w[:, None, None]).sum(0))
        out_s.append(float(scores[top]))
        remaining &= ~overlap
    return out_b, out_k, out_s


def detection_rois(keypoints: torch.Tensor) -> torch.Tensor:
    """``(P, 4, 2)`` detector keypoints in photo pixels -> ``(P, 4)`` ROIs ``cx, cy, size, rotation``.

    The ROI is centred on keypoint 0 (hips), its side is 2 x 1.25 x |kp1 - kp0| and its rotation
    turns the kp0 -> kp1 vector upright (MediaPipe's sign: positive = counter-clockwise on screen).
    """
    c = keypoints[:, 0]
    v = keypoints[:, 1] - c
    size = 2 * v.norm(dim=-1) * ROI_SCALE
    rot = ROI_TARGET_ANGLE - torch.atan2(-v[:, 1], v[:, 0])
    rot = rot - 2 * math.pi * torch.floor((rot + math.pi) / (2 * math.pi))
    return torch.stack([c[:, 0], c[:, 1], size, rot], dim=-1)


def roi_to_image(rois: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Points ``(P, K, 2)`` in ROI units (0..1 across the crop) -> photo pixels ``(P, K, 2)``."""
    cx, cy, s, r = (rois[:, i, None] for i in range(4))
    a, b = (uv[..., 0] - 0.5) * s, (uv[..., 1] - 0.5) * s
    cos, sin = torch.cos(r), torch.sin(r)
    return torch.stack([cx + cos * a - sin * b, cy + sin * a + cos * b], dim=-1)


def _photo_grid(coords: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Photo pixels (continuous, pixel ``i`` spans ``[i, i+1)``) -> grid_sample's -1..1 (align_corners=False)."""
    return torch.stack([2 * coords[..., 0] / w - 1, 2 * coords[..., 1] / h - 1], dim=-1)


def crop_rois(image: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """``(H, W, 3)`` photo -> ``(P, size, size, 3)`` rotated crops (borders replicate, like
    MediaPipe's ImageToTensorCalculator)."""
    h, w = image.shape[:2]
    t = (torch.arange(size, device=image.device, dtype=torch.float32) + 0.5) / size
    v, u = torch.meshgrid(t, t, indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(1, -1, 2).expand(len(rois), -1, -1)
    grid = _photo_grid(roi_to_image(rois, uv), h, w).reshape(len(rois), size, size, 2)
    src = image.permute(2, 0, 1).unsqueeze(0).expand(len(rois), -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)


def refine_from_heatmap(xy: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """MediaPipe's RefineLandmarksFromHeatmap: ``xy (P, K, 2)`` in 0..1 of the crop, ``heatmap
    (P, h, w, K)`` logits. Each point moves to the confidence-weighted mean cell of the 7 x 7
    window around it when the window's best confidence reaches 0.5."""
    p, hh, hw, k = heatmap.shape
    conf = torch.sigmoid(heatmap)
    out = xy.clone()
    off = (HEATMAP_KERNEL - 1) // 2
    col = (xy[..., 0] * hw).floor().long()
    row = (xy[..., 1] * hh).floor().long()
    d = torch.arange(-off, off + 1, device=xy.device)
    cols = col[..., None] + d  # (P, K, 7)
    rows = row[..., None] + d
    inside = (col >= 0) & (col < hw) & (row >= 0) & (row < hh)
    vc = (cols >= 0) & (cols < hw)
    vr = (rows >= 0) & (rows < hh)
    pi = torch.arange(p, device=xy.device)[:, None, None, None]
    ki = torch.arange(k, device=xy.device)[None, :, None, None]
    c = conf[pi, rows.clamp(0, hh - 1)[..., :, None], cols.clamp(0, hw - 1)[..., None, :], ki]  # (P, K, 7, 7)
    c = c * (vr[..., :, None] & vc[..., None, :])
    total = c.sum((-1, -2))
    wc = (c * cols[..., None, :]).sum((-1, -2))
    wr = (c * rows[..., :, None]).sum((-1, -2))
    ok = inside & (c.amax((-1, -2)) >= HEATMAP_MIN_CONFIDENCE) & (total > 0)
    out[..., 0] = torch.where(ok, wc / hw / total.clamp(min=1e-12), xy[..., 0])
    out[..., 1] = torch.where(ok, wr / hh / total.clamp(min=1e-12), xy[..., 1])
    return out


def roi_mask_to_image(mask: torch.Tensor, roi: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A ROI's ``(s, s)`` mask (0..1) -> ``(H, W)`` on the photo, 0 outside the ROI.

    Only the ROI's bounding box is sampled (an 8K photo with a small person stays cheap).
    """
    cx, cy, s, r = (float(v) for v in roi)
    half = 0.5 * s * (abs(math.cos(r)) + abs(math.sin(r)))
    x0, x1 = max(0, math.floor(cx - half)), min(w, math.ceil(cx + half))
    y0, y1 = max(0, math.floor(cy - half)), min(h, math.ceil(cy + half))
    out = torch.zeros(h, w, device=mask.device, dtype=mask.dtype)
    if x1 <= x0 or y1 <= y0:
        return out
    ys = torch.arange(y0, y1, device=mask.device, dtype=torch.float32) + 0.5
    xs = torch.arange(x0, x1, device=mask.device, dtype=torch.float32) + 0.5
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    dx, dy = px - cx, py - cy
    cos, sin = math.cos(r), math.sin(r)
    u = (cos * dx + sin * dy) / s + 0.5  # inverse rotation
    v = (-sin * dx + cos * dy) / s + 0.5
    grid = torch.stack([2 * u - 1, 2 * v - 1], dim=-1)[None]
    vals = F.grid_sample(mask[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out[y0:y1, x0:x1] = vals[0, 0]
    return out

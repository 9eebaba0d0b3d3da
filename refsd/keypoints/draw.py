"""Draw OpenPose skeleton images exactly as the SD1.5 OpenPose ControlNet expects.

Conventions (ControlNet-v1-1 annotator ``draw_bodypose``/``draw_handpose``/``draw_facepose``,
identical in comfyui_controlnet_aux's OpenPose and DWPose preprocessors):

* black canvas, RGB;
* body: COCO-18 keypoints; each of the 17 limbs is a filled ellipse around the segment
  (half-length = segment length / 2, half-width ``stickwidth = 4``) in ``floor(colour * 0.6)``;
  then every visible joint is a filled disc of radius 4 in its full colour, drawn over the limbs;
* hands: 20 bones as 2 px lines in an HSV rainbow (``hsv(i/20, 1, 1)``), then blue (0,0,255)
  discs of radius 4 at each point;
* face: white discs of radius 3, no lines;
* a point is drawn only if it is present (confidence above the threshold, finite);
  hand/face points at pixel row or column 0 are skipped, as the reference code does.

Pure numpy (no OpenCV): ellipses and discs are filled analytically at pixel centres,
which reproduces OpenCV's rasterisation to within the boundary pixels.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

__all__ = ["BODY_COLORS", "LIMB_SEQ", "HAND_EDGES", "HAND_EDGE_COLORS", "draw_pose", "draw_person"]

# COCO-18 joint colours (RGB), index = keypoint index.
BODY_COLORS = np.array(
    [
        [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
        [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
        [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
    ],
    dtype=np.uint8,
)

# Limbs as 0-based COCO-18 pairs; limb i is drawn in floor(BODY_COLORS[i] * 0.6).
LIMB_SEQ = [
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
]
LIMB_COLORS = np.floor(BODY_COLORS[: len(LIMB_SEQ)].astype(np.float64) * 0.6).astype(np.uint8)

HAND_EDGES = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
]
HAND_EDGE_COLORS = np.array(
    [[round(c * 255) for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)] for i in range(len(HAND_EDGES))],
    dtype=np.uint8,
)

STICK_WIDTH = 4
BODY_DOT_RADIUS = 4
HAND_DOT_RADIUS = 4
HAND_LINE_THICKNESS = 2
FACE_DOT_RADIUS = 3


def _fill_disc(canvas: np.ndarray, x: float, y: float, r: int, color) -> None:
    h, w = canvas.shape[:2]
    cx, cy = int(x), int(y)
    x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
    y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r + r
    canvas[y0:y1, x0:x1][inside] = color


def _fill_ellipse(canvas: np.ndarray, p0, p1, half_width: float, color) -> None:
    """Filled ellipse around segment p0-p1 as in ``cv2.ellipse2Poly`` + ``fillConvexPoly``."""
    h, w = canvas.shape[:2]
    mx, my = (p0[0] + p1[0]) / 2.0, (p0[1] + p1[1]) / 2.0
    cx, cy = int(mx), int(my)
    length = math.hypot(p0[0] - p1[0], p0[1] - p1[1])
    a = float(int(length / 2))
    b = float(half_width)
    ang = math.radians(int(math.degrees(math.atan2(p0[1] - p1[1], p0[0] - p1[0]))))
    ext = int(max(a, b)) + 2
    x0, x1 = max(cx - ext, 0), min(cx + ext + 1, w)
    y0, y1 = max(cy - ext, 0), min(cy + ext + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(ang) + dy * math.sin(ang)
    v = -dx * math.sin(ang) + dy * math.cos(ang)
    # +0.5 px tolerance: OpenCV rounds the polygon vertices and fills boundary pixels.
    inside = (u / (a + 0.5)) ** 2 + (v / (b + 0.5)) ** 2 <= 1.0
    canvas[y0:y1, x0:x1][inside] = color


def _draw_line(canvas: np.ndarray, p0, p1, thickness: int, color) -> None:
    h, w = canvas.shape[:2]
    r = thickness / 2.0 + 0.5
    x0, x1 = max(int(min(p0[0], p1[0]) - r) - 1, 0), min(int(max(p0[0], p1[0]) + r) + 2, w)
    y0, y1 = max(int(min(p0[1], p1[1]) - r) - 1, 0), min(int(max(p0[1], p1[1]) + r) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ax, ay = int(p0[0]), int(p0[1])
    bx, by = int(p1[0]), int(p1[1])
    vx, vy = bx - ax, by - ay
    L2 = vx * vx + vy * vy
    t = np.clip(((xx - ax) * vx + (yy - ay) * vy) / L2, 0.0, 1.0) if L2 > 0 else np.zeros_like(xx, dtype=float)
    d2 = (xx - (ax + t * vx)) ** 2 + (yy - (ay + t * vy)) ** 2
    canvas[y0:y1, x0:x1][d2 <= (thickness / 2.0 + 0.5) ** 2] = color


def _visible(pts: np.ndarray | None, threshold: float) -> np.ndarray:
    if pts is None:
        return np.zeros(0, dtype=bool)
    pts = np.asarray(pts, dtype=np.float64)
    ok = np.isfinite(pts[:, 0]) & np.isfinite(pts[:, 1])
    if pts.shape[1] > 2:
        ok &= np.nan_to_num(pts[:, 2], nan=0.0) > threshold
    return ok


def draw_person(
    canvas: np.ndarray,
    body: np.ndarray | None,
    hand_left: np.ndarray | None = None,
    hand_right: np.ndarray | None = None,
    face: np.ndarray | None = None,
    threshold: float = 0.0,
    draw_body: bool = True,
    draw_hands: bool = True,
    draw_face: bool = True,
) -> None:
    """Draw one person's keypoints (pixel coordinates, (N,3) x,y,conf) onto ``canvas`` in place."""
    if draw_body and body is not None:
        ok = _visible(body, threshold)
        for (i, j), color in zip(LIMB_SEQ, LIMB_COLORS, strict=True):
            if ok[i] and ok[j]:
                _fill_ellipse(canvas, body[i, :2], body[j, :2], STICK_WIDTH, color)
        for k in range(min(len(body), 18)):
            if ok[k]:
                _fill_disc(canvas, body[k, 0], body[k, 1], BODY_DOT_RADIUS, BODY_COLORS[k])
    if draw_hands:
        for hand in (hand_left, hand_right):
            if hand is None:
                continue
            ok = _visible(hand, threshold) & (hand[:, 0] >= 1) & (hand[:, 1] >= 1)
            for (i, j), color in zip(HAND_EDGES, HAND_EDGE_COLORS, strict=True):
                if ok[i] and ok[j]:
                    _draw_line(canvas, hand[i, :2], hand[j, :2], HAND_LINE_THICKNESS, color)
            for k in np.nonzero(ok)[0]:
                _fill_disc(canvas, hand[k, 0], hand[k, 1], HAND_DOT_RADIUS, (0, 0, 255))
    if draw_face and face is not None:
        ok = _visible(face, threshold) & (face[:, 0] >= 1) & (face[:, 1] >= 1)
        for k in np.nonzero(ok)[0]:
            _fill_disc(canvas, face[k, 0], face[k, 1], FACE_DOT_RADIUS, (255, 255, 255))


def draw_pose(width: int, height: int, people: list[dict], **kw) -> np.ndarray:
    """Draw several people on a new black ``(height, width, 3)`` uint8 canvas.

    Each person is a dict with ``body`` (18,3) and optional ``hand_left``, ``hand_right``,
    ``face`` arrays in pixel coordinates. Order as comfyui_controlnet_aux: per person,
    body then hands then face.
    """
    canvas = np.zeros((int(height), int(width), 3), dtype=np.uint8)
    for p in people:
        draw_person(canvas, p.get("body"), p.get("hand_left"), p.get("hand_right"), p.get("face"), **kw)
    return canvas

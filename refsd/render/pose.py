"""Pose pass: the OpenPose skeleton image ``pose`` and the ComfyUI ``POSE_KEYPOINT`` of the people.

``pose``, ``CONTROLNET.md`` §1 (OpenPose / DWPose): the projected COCO-18 body (+ hands, + face
when the model has face landmarks) drawn by :func:`refsd.keypoints.draw.draw_pose` (limbs as
ellipses of half-width 4 in 0.6x colour, dots of radius 4, hands, white face dots) at the output
resolution, people far to near. ``pose_keypoint`` is the same points as ComfyUI
``POSE_KEYPOINT`` (see "Keypoints" below). Both come from :func:`_pose_passes`.

Keypoints (``pose`` and ``pose_keypoint``)
------------------------------------------
Points are projected with the render camera; coordinates are this package's continuous pixel
coordinates (pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)``, :mod:`refsd.fit.camera`), so
a dot is drawn on the pixel that contains the projected point, and the ``POSE_KEYPOINT`` values
are the same numbers (what :mod:`refsd.fit` reads back). A point is **dropped** (not drawn;
``0, 0, 0`` in ``POSE_KEYPOINT``), as OpenPose/DWPose would not detect it, when

* the body model does not define it (``kp_valid``),
* it projects outside the image or lies behind the camera,
* **another person** hides it: at its pixel another person's surface is visible and nearer to the
  camera than the point. Self-occlusion does not drop a point (joints lie inside the body, and
  the detectors infer self-occluded limbs, e.g. the far arm of a person seen from the side).
* the Neck is dropped unless both shoulders are kept (DWPose derives it from them).

Kept points have confidence 1. People with no kept point at all are left out of
``POSE_KEYPOINT`` (a detector would not find them); the others keep the fit's order. With
``draw_hands=False`` / ``draw_face=False`` the hands / face are neither drawn nor written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..fit.camera import Camera, RenderError
from ..keypoints import FrameKeypoints, PersonKeypoints, draw_pose, face68_to_face70, to_pose_keypoint
from .fragments import Fragments

__all__: list[str] = []


# ---------------------------------------------------------------------------
# Keypoints: visibility, skeleton image, POSE_KEYPOINT
# ---------------------------------------------------------------------------
def _project_visible(
    pts: torch.Tensor, valid: torch.Tensor, fr: Fragments, camera: Camera, near: float = 1e-3
) -> np.ndarray:
    """``(P, K, 3)`` camera-space points -> ``(P, K, 3)`` float64 x, y, conf (NaN, NaN, 0 dropped).

    Dropped: ``valid`` False, behind the camera, outside the image, or hidden by another person
    (another person's surface is visible at the point's pixel and nearer than the point).
    """
    P, K = int(pts.shape[0]), int(pts.shape[1])
    p = pts.detach().to(torch.float64)
    z = p[..., 2]
    front = z > near
    zs = torch.where(front, z, torch.ones_like(z))
    u = p[..., 0] / zs * camera.fx + camera.cx
    v = p[..., 1] / zs * camera.fy + camera.cy
    ok = front & valid.to(p.device).bool().expand(P, K) & torch.isfinite(u) & torch.isfinite(v)
    ok &= (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    j = torch.where(ok, u, torch.zeros_like(u)).floor().long().clamp_(0, camera.width - 1)
    i = torch.where(ok, v, torch.zeros_like(v)).floor().long().clamp_(0, camera.height - 1)
    flat = (i * camera.width + j).reshape(-1).to(fr.person_idx.device)
    who = fr.person_idx.reshape(-1).index_select(0, flat).view(P, K).to(p.device)
    zb = fr.zbuf.reshape(-1).index_select(0, flat).view(P, K).to(p.device, torch.float64)
    me = torch.arange(P, device=p.device).view(P, 1)
    hidden = (who >= 0) & (who != me) & (zb < z)
    ok &= ~hidden
    out = torch.stack((u, v, torch.ones_like(u)), dim=-1)
    out[~ok] = torch.tensor([float("nan"), float("nan"), 0.0], dtype=torch.float64, device=p.device)
    return out.cpu().numpy()


def _valid(out: Any, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    kv = getattr(out, "kp_valid", None) or {}
    v = kv.get(key)
    if v is None:
        return torch.ones(shape, dtype=torch.bool)
    return torch.as_tensor(v).bool().cpu().reshape(shape)


def _pose_passes(
    out: Any, verts: torch.Tensor, fr: Fragments, camera: Camera, draw_hands: bool, draw_face: bool
) -> tuple[torch.Tensor, list[dict]]:
    P = int(verts.shape[0])
    H, W = camera.height, camera.width
    coco = getattr(out, "coco18", None)
    if not isinstance(coco, torch.Tensor) or coco.shape != (P, 18, 3):
        raise RenderError("out.coco18 must be a (P, 18, 3) tensor of camera-space COCO-18 points (a BodyOutput).")
    body = _project_visible(coco, _valid(out, "coco18", (18,)), fr, camera)
    # Neck only with both shoulders (DWPose derives it from them).
    no_neck = ~(body[:, 2, 2] > 0) | ~(body[:, 5, 2] > 0)
    body[no_neck, 1] = (np.nan, np.nan, 0.0)

    hands = None
    hv = getattr(out, "hands", None)
    if draw_hands and isinstance(hv, torch.Tensor) and hv.shape == (P, 2, 21, 3):
        hands = _project_visible(hv.reshape(P, 42, 3), _valid(out, "hands", (2, 21)).reshape(42), fr, camera)
        hands = hands.reshape(P, 2, 21, 3)
    face = None
    fv = getattr(out, "face", None)
    if draw_face and isinstance(fv, torch.Tensor) and fv.shape == (P, 68, 3):
        face = _project_visible(fv, _valid(out, "face", (68,)), fr, camera)

    people, drawn = [], []
    for p in range(P):
        parts = {
            "body": body[p],
            "hand_left": hands[p, 0] if hands is not None else None,
            "hand_right": hands[p, 1] if hands is not None else None,
            "face": face68_to_face70(face[p], body[p]) if face is not None else None,
        }
        if not any(a is not None and bool((a[:, 2] > 0).any()) for a in parts.values()):
            continue
        people.append(PersonKeypoints(index=p, **parts))
        drawn.append(p)
    # Draw far people first so the nearer skeletons end up on top.
    depth = verts[..., 2].mean(dim=1).tolist()
    order = sorted(range(len(drawn)), key=lambda k: (-depth[drawn[k]], drawn[k]))
    dicts = []
    for k in order:
        pk = people[k]
        dicts.append({"body": pk.body, "hand_left": pk.hand_left, "hand_right": pk.hand_right, "face": pk.face})
    canvas = draw_pose(W, H, dicts)
    pose = torch.from_numpy(canvas).to(torch.float32).div_(255.0)
    frame = FrameKeypoints(people=people, canvas=(W, H), image_size=(W, H))
    return pose, to_pose_keypoint([frame])

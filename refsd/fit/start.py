"""The start of a body fit: each person's keypoint targets and the initial root position.

:func:`person_targets` turns one person's 2D keypoints into pixel targets and confidences in
the keypoint proxy's order (missing or low-confidence keypoints carry zero weight; they are
never treated as (0, 0)); :func:`mask_weights` down-weights keypoints outside the optional
person mask (likely detector mistakes). :func:`init_translation` places the root: depth from
the ratio of 3D to 2D limb/torso lengths (the least foreshortened one, :data:`SCALE_PAIRS`),
x/y by back-projecting the 2D hip/torso centre.
"""

from __future__ import annotations

import torch

from ..keypoints import PersonKeypoints
from .camera import Camera
from .proxy import KeypointProxy

__all__ = ["person_targets", "mask_weights", "SCALE_PAIRS", "init_translation"]


def person_targets(p: PersonKeypoints, proxy: KeypointProxy, min_conf: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,2) pixel targets and (K,) confidences in the proxy's keypoint order (NaN -> 0 weight)."""
    K = proxy.num_keypoints
    obs = torch.zeros(K, 2, dtype=torch.float64)
    conf = torch.zeros(K, dtype=torch.float64)

    def put(name: str, pts):
        if pts is None or name not in proxy.slices:
            return
        sl = proxy.slices[name]
        n = sl.stop - sl.start
        a = torch.as_tensor(pts[:n], dtype=torch.float64)
        ok = torch.isfinite(a[:, 0]) & torch.isfinite(a[:, 1]) & (a[:, 2] >= min_conf)
        obs[sl][ok] = a[ok, :2]
        conf[sl][ok] = a[ok, 2].clamp(0, 1)

    put("body25", p.body25)
    put("hand_left", p.hand_left)
    put("hand_right", p.hand_right)
    put("face", p.face)
    conf = conf * proxy.valid.to(torch.float64)
    return obs, conf


def mask_weights(obs: torch.Tensor, conf: torch.Tensor, mask) -> torch.Tensor:
    """Person-mask term: keypoints that fall outside the (union) person mask are most likely
    detector mistakes (background or another person); their weight is cut to 10%."""
    m = torch.as_tensor(mask, dtype=torch.float64).cpu()
    if m.dim() == 3:
        m = m[0]
    H, W = m.shape
    x = obs[:, 0].floor().long().clamp(0, W - 1)
    y = obs[:, 1].floor().long().clamp(0, H - 1)
    outside = (m[y, x] < 0.5) & (conf > 0)
    return torch.where(outside, conf * 0.1, conf)


#: BODY_25 index pairs for the depth initialisation (torso, shoulders, hips, limbs)
SCALE_PAIRS = ((1, 8), (2, 5), (9, 12), (2, 3), (5, 6), (3, 4), (6, 7), (9, 10), (12, 13), (10, 11), (13, 14))


def init_translation(obs: torch.Tensor, conf: torch.Tensor, cam: Camera, J25: torch.Tensor) -> torch.Tensor:
    """(3,) camera-space root position from limb-length ratios (``J25``: the rest pose's BODY_25
    keypoints, 3D)."""
    ratios = []
    for a, b in SCALE_PAIRS:
        if conf[a] > 0 and conf[b] > 0:
            l2 = float((obs[a] - obs[b]).norm())
            l3 = float((J25[a] - J25[b]).norm())
            if l3 > 0.05 and l2 > 1.0:
                ratios.append(l2 / l3)
    fpx = (cam.fx + cam.fy) / 2
    if ratios:
        ratios.sort()
        r = ratios[-2] if len(ratios) >= 4 else ratios[-1]  # robust max
        z = fpx / r
    else:
        ok = conf[:25] > 0
        pts = obs[:25][ok]
        extent = float((pts.max(0).values - pts.min(0).values).norm()) if len(pts) > 1 else 50.0
        z = fpx * 1.0 / max(extent, 1.0)
    z = float(min(max(z, 0.6), 200.0))
    # 2D centre: mid-hip, else mean of confident body points
    if conf[8] > 0:
        uv = obs[8]
    elif conf[9] > 0 and conf[12] > 0:
        uv = (obs[9] + obs[12]) / 2
    else:
        ok = conf[:25] > 0
        uv = obs[:25][ok].mean(0)
    x = (float(uv[0]) - cam.cx) / cam.fx * z
    y = (float(uv[1]) - cam.cy) / cam.fy * z
    return torch.tensor([x, y, z], dtype=torch.float64)

"""Hand poses from anatomy: a relaxed resting hand, finger angles <-> ``hand_pose``, hand size.

A body model's zero hand pose is its modelling pose: for Anny (and SMPL-X with
``flat_hand_mean=True``) a flat hand with the fingers fully extended and splayed, which no
one holds in a photo. :func:`relaxed_hand_pose` gives the pose a hand takes at rest instead.

Parameterisation (per hand): each finger (thumb, index, middle, ring, pinky) has three
**flexion** angles, one per joint (thumb: CMC, MCP, IP; fingers: MCP, PIP, DIP), positive
towards the palm, and one **spread** angle at its first joint, a rotation about the palm
normal. The axes come from the model's own rest geometry (:func:`hand_axes`): the palm normal
``n`` from the wrist and the index and little-finger knuckles, and for each finger bone ``d``
the flexion axis ``d x n`` (a positive rotation about it moves the bone towards ``n``).
:func:`hand_pose_from_angles` turns angles into the model's axis-angle ``hand_pose``
(SMPL-style local rotations in rest-aligned axes, which both backends use), differentiably,
so a fitter can optimise anatomical angles instead of 90 free numbers.

The relaxed pose (:data:`RELAXED_FLEXION_DEG`, :data:`RELAXED_SPREAD`) follows the clinical
"resting cascade" of the hand: with the wrist neutral the fingers rest in partial flexion
that increases from the index to the little finger, and the fingers lie close together.
The numbers are chosen inside the ranges hand-surgery texts give for the resting hand
(MCP 15-45 deg, PIP 25-60 deg, DIP 10-25 deg, each finger about 5 deg more flexed than its
radial neighbour), at the open end, as for a hand hanging or resting at the side; they are RefSD's own, not taken from any licensed hand model.

Hand size: :data:`HAND_LENGTH_TO_STATURE` is the anthropometric ratio of hand length (wrist
crease to the tip of the middle finger) to standing height, 0.108 (Drillis & Contini, 1966;
Winter, *Biomechanics and Motor Control of Human Movement*). :func:`hand_length_ratio` measures
it on a model output.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "FINGERS",
    "HAND_LENGTH_TO_STATURE",
    "RELAXED_FLEXION_DEG",
    "RELAXED_SPREAD",
    "RELAXED_THUMB_SPREAD",
    "hand_axes",
    "hand_length_ratio",
    "hand_pose_from_angles",
    "palm_normals",
    "relaxed_angles",
]

#: Fingers in OpenPose hand order (points ``1 + 4 f .. 4 + 4 f`` of the 21).
FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

#: Rows of ``hand_pose[:, side]`` (:data:`~refsd.body.base.HAND_JOINT_NAMES`) for each finger's
#: three joints, fingers in :data:`FINGERS` order.
_JOINT_ROWS = ((12, 13, 14), (0, 1, 2), (3, 4, 5), (9, 10, 11), (6, 7, 8))

#: Relaxed flexion per finger and joint (degrees, towards the palm): the resting cascade.
RELAXED_FLEXION_DEG: dict[str, tuple[float, float, float]] = {
    "thumb": (5.0, 10.0, 10.0),
    "index": (15.0, 25.0, 10.0),
    "middle": (20.0, 30.0, 12.0),
    "ring": (25.0, 35.0, 14.0),
    "pinky": (30.0, 40.0, 16.0),
}
#: Fraction of the rest pose's spread (angle of each finger's first bone from the middle
#: finger's, about the palm normal) the relaxed hand keeps: relaxed fingers lie close together,
#: the thumb stays apart from the index (it rests about halfway between spread and adducted).
RELAXED_SPREAD = 0.35
RELAXED_THUMB_SPREAD = 0.7

#: Hand length (wrist to middle fingertip) / stature of an adult (Drillis & Contini 1966).
HAND_LENGTH_TO_STATURE = 0.108


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def palm_normals(hands: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 21, 3)`` hand points (left, right) -> ``(..., 2, 3)`` unit normals pointing out
    of each palm (the side the fingers flex towards).

    In a right-handed frame, for the right hand ``(index knuckle - wrist) x (little knuckle - wrist)``
    points out of the palm; the left hand is its mirror image, so the order flips.
    """
    w, index, pinky = hands[..., 0, :], hands[..., 5, :], hands[..., 17, :]
    a, b = index - w, pinky - w
    left = torch.linalg.cross(b[..., 0, :], a[..., 0, :], dim=-1)
    right = torch.linalg.cross(a[..., 1, :], b[..., 1, :], dim=-1)
    return _unit(torch.stack([left, right], dim=-2))


def hand_axes(rest_hands: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rest-pose hand geometry ``(2, 21, 3)`` (zero hand pose) -> the axes of :func:`hand_pose_from_angles`.

    Returns ``normal (2, 3)``, ``bones (2, 5, 3, 3)`` (unit direction of each finger joint's
    bone, towards the next point), ``flex_axes (2, 5, 3, 3)`` (``bone x normal``, unit) and
    ``rest_spread (2, 5)`` (signed angle of each finger's first bone from the middle finger's,
    about the normal, radians).
    """
    h = rest_hands.to(torch.float64)
    n = palm_normals(h)  # (2, 3)
    pts = h[:, 1:].reshape(2, 5, 4, 3)
    bones = _unit(pts[:, :, 1:] - pts[:, :, :-1])  # (2, 5, 3, 3)
    # project onto the palm plane, so the flexion axis is in it and spread is about n
    nn = n[:, None, None, :]
    planar = _unit(bones - (bones * nn).sum(-1, keepdim=True) * nn)
    flex = _unit(torch.linalg.cross(planar, nn.expand_as(planar), dim=-1))
    first = planar[:, :, 0]  # (2, 5, 3)
    ref = first[:, 2:3].expand_as(first)  # middle finger
    sin = (torch.linalg.cross(ref, first, dim=-1) * n[:, None]).sum(-1)
    cos = (ref * first).sum(-1)
    spread = torch.atan2(sin, cos)
    return {"normal": n, "bones": bones, "flex_axes": flex, "rest_spread": spread}


def relaxed_angles(axes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The relaxed hand as ``(flexion (2, 5, 3), spread (2, 5))`` radians for :func:`hand_pose_from_angles`."""
    flex = torch.tensor([RELAXED_FLEXION_DEG[f] for f in FINGERS], dtype=torch.float64).mul(math.pi / 180)
    flex = flex.expand(2, 5, 3).clone()
    # bring every finger (the thumb too) towards the middle finger: keep RELAXED_SPREAD of its angle
    keep = torch.tensor([RELAXED_THUMB_SPREAD] + [RELAXED_SPREAD] * 4, dtype=torch.float64)
    spread = -(1.0 - keep) * axes["rest_spread"]
    return flex, spread


def _rotvec_to_matrix(v: torch.Tensor) -> torch.Tensor:
    import roma

    return roma.rotvec_to_rotmat(v)


def _matrix_to_rotvec(m: torch.Tensor) -> torch.Tensor:
    import roma

    return roma.rotmat_to_rotvec(m)


def hand_pose_from_angles(axes: dict[str, torch.Tensor], flexion: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Anatomical angles -> axis-angle ``hand_pose`` ``(..., 2, 15, 3)`` in
    :data:`~refsd.body.base.HAND_JOINT_NAMES` order (differentiable).

    ``flexion (..., 2, 5, 3)`` radians per finger and joint (positive: towards the palm);
    ``spread (..., 2, 5)`` radians about the palm normal at each finger's first joint. The first
    joint's rotation is the spread followed by the flexion about the spread bone's flexion axis;
    the others are flexions about their rest axes (local rotations carry the parent's).
    """
    dt = flexion.dtype
    n = axes["normal"].to(dt)  # (2, 3)
    flex_axes = axes["flex_axes"].to(dt)  # (2, 5, 3, 3)
    lead = flexion.shape[:-3]
    n5 = n[:, None, :].expand(2, 5, 3)
    r_spread = _rotvec_to_matrix(spread[..., None] * n5)  # (..., 2, 5, 3, 3)
    # the first bone's flexion axis after the spread: R_spread @ axis (the spread is about n,
    # which keeps the axis in the palm plane and perpendicular to the turned bone)
    a0 = (r_spread @ flex_axes[:, :, 0, :, None])[..., 0]
    r0 = _rotvec_to_matrix(flexion[..., 0, None] * a0) @ r_spread
    rot0 = _matrix_to_rotvec(r0)  # (..., 2, 5, 3)
    rot12 = flexion[..., 1:, None] * flex_axes[:, :, 1:]  # (..., 2, 5, 2, 3)
    per_finger = torch.cat([rot0[..., None, :], rot12], dim=-2)  # (..., 2, 5, 3, 3)
    out = flexion.new_zeros(*lead, 2, 15, 3)
    for f, rows in enumerate(_JOINT_ROWS):
        out[..., list(rows), :] = per_finger[..., f, :, :]
    return out


def hand_length_ratio(hands: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Hand length (wrist to middle fingertip) over stature (the mesh's vertical extent) for a
    rest-pose output: ``hands (B, 2, 21, 3)``, ``vertices (B, V, 3)`` (Y up) -> ``(B, 2)``."""
    length = (hands[:, :, 12] - hands[:, :, 0]).norm(dim=-1)
    y = vertices[..., 1]
    stature = y.max(dim=1).values - y.min(dim=1).values
    return length / stature[:, None]

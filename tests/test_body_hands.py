"""Hands: the relaxed default hand, fingers fitted to hand keypoints, hand size vs the body."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from refsd.body import get_body_model
from refsd.body.hands import (
    HAND_LENGTH_TO_STATURE,
    hand_length_ratio,
    hand_pose_from_angles,
    palm_normals,
    relaxed_angles,
)
from refsd.fit import BodyFit, BodyFitter
from refsd.keypoints import from_array
from refsd.render.scene import fit_output

sys.path.insert(0, str(Path(__file__).parent))
from test_fit import CAM, IMG, kp_array, pose_person  # noqa: E402

TIPS = [4, 8, 12, 16, 20]


def _hands(model, hand_pose=None, shape=None):
    p = model.zero_params(1)
    if hand_pose is not None:
        p["hand_pose"] = hand_pose
    if shape is not None:
        p["shape"] = shape
    with torch.no_grad():
        return model(**p)


def _check_relaxed(model):
    flat = _hands(model)
    relaxed = _hands(model, model.relaxed_hand_pose(1))
    n = palm_normals(flat.hands)[0]  # (2, 3)
    pelvis = flat.pose_joints[0, 0]
    for s in (0, 1):
        h0, h1 = flat.hands[0, s].double(), relaxed.hands[0, s].double()
        # at rest (T- or A-pose) the palms face the body: down and/or towards the midline
        to_body = pelvis.double() - h0[0]
        assert float(n[s].double() @ to_body / to_body.norm()) > 0.3
        # every fingertip moves to the palm side (the flexion sign is right) ...
        along = (h1[TIPS] - h0[TIPS]) @ n[s].double()
        assert bool((along > 0.005).all()), along
        # ... the four fingers clearly (>= 2 cm for an adult hand of ~20 cm), and the hand closes:
        # the largest distance between two fingertips (the splay) shrinks by at least a third
        assert bool((along[1:] > 0.02).all()), along
        span0 = (h0[TIPS][:, None] - h0[TIPS][None]).norm(dim=-1).max()
        span1 = (h1[TIPS][:, None] - h1[TIPS][None]).norm(dim=-1).max()
        assert span1 < 0.67 * span0, (float(span0), float(span1))
        # the wrist and the knuckles stay where they are (only the fingers move)
        assert float((h1[0] - h0[0]).norm()) < 1e-5
    # left and right hands are mirror images (x -> -x)
    mirror = relaxed.hands[0, 1].clone()
    mirror[:, 0] *= -1
    assert torch.allclose(mirror, relaxed.hands[0, 0], atol=2e-3)


def test_anny_relaxed_hand_curls_towards_the_palm_and_closes(anny_model):
    _check_relaxed(anny_model)


def test_smplx_relaxed_hand(smplx_dir):
    # smplx's default (flat_hand_mean=False): zero is the file's mean hand, already relaxed
    mean = get_body_model("smplx", model_dir=smplx_dir)
    assert float(mean.relaxed_hand_pose(1).abs().max()) == 0.0
    # flat_hand_mean=True: zero is the flat hand, so the relaxed hand comes from the angles
    flat = get_body_model("smplx", model_dir=smplx_dir, flat_hand_mean=True)
    assert float(flat.relaxed_hand_pose(1).abs().max()) > 0.1
    _check_relaxed(flat)


def test_angles_round_trip_the_relaxed_pose(anny_model):
    axes = anny_model.hand_axes()
    flex, spread = relaxed_angles(axes)
    pose = hand_pose_from_angles(axes, flex, spread)
    assert pose.shape == (2, 15, 3)
    assert torch.allclose(pose.to(anny_model.dtype), anny_model.relaxed_hand_pose(1)[0])
    # zero angles are the zero (flat) pose
    zero = hand_pose_from_angles(axes, torch.zeros_like(flex), torch.zeros_like(spread))
    assert float(zero.abs().max()) < 1e-12


@pytest.mark.parametrize(
    "shape", [{}, {"gender": 0.0}, {"gender": 1.0}, {"height": 0.0}, {"height": 1.0}, {"age_years": 70}]
)
def test_hand_length_matches_anthropometry(anny_model, shape):
    """Hand length (wrist to middle fingertip) is 10.8 % of stature in adults (Drillis & Contini);
    individual adults spread by about +-10 %, so the model must stay within 15 % of it."""
    out = _hands(anny_model, shape=anny_model.shape_from(1, **shape))
    ratio = hand_length_ratio(out.hands, out.vertices)[0]
    assert bool(((ratio - HAND_LENGTH_TO_STATURE).abs() < 0.15 * HAND_LENGTH_TO_STATURE).all()), ratio


def _project(k: torch.Tensor) -> np.ndarray:
    k = k.double()
    return torch.stack([CAM.fx * k[..., 0] / k[..., 2] + CAM.cx, CAM.fy * k[..., 1] / k[..., 2] + CAM.cy], -1).numpy()


def _posed(model, person):
    p = model.zero_params(1)
    kw = {"dtype": model.dtype}
    p.update(
        global_orient=torch.tensor([person.global_orient], **kw),
        body_pose=torch.tensor([person.body_pose], **kw),
        shape=torch.tensor([person.shape], **kw),
        transl=torch.tensor([person.transl], **kw),
        hand_pose=torch.tensor([person.hand_pose], **kw),
    )
    with torch.no_grad():
        return model(**p)


def test_fingers_follow_hand_keypoints(anny_model):
    """A person with a fist-like left hand and a pointing right hand: with the 2 x 21 hand
    keypoints the fit puts the fingers there; without them it keeps the relaxed hand."""
    m = anny_model
    axes = m.hand_axes()
    flex, spread = relaxed_angles(axes)
    target = flex.clone()
    target[0, 1:] = torch.deg2rad(torch.tensor([60.0, 80.0, 40.0]))  # left fingers curled
    target[1, 2:] = torch.deg2rad(torch.tensor([70.0, 90.0, 30.0]))  # right: middle..pinky curled
    target[1, 1] = 0.0  # right index straight
    p, _, _ = pose_person(m, yaw_deg=20, dist=1.8)
    p["hand_pose"] = hand_pose_from_angles(axes, target, spread)[None].to(m.dtype)
    with torch.no_grad():
        gt = m(**p)
    body25, hands = _project(gt.body25[0]), _project(gt.hands[0])
    size = float(np.ptp(hands[0], axis=0).max())
    assert size > 20  # the hands are big enough in the image to say something

    frame = from_array(kp_array(body25)[None], fmt="body25", image_size=(IMG, IMG))
    fitter = BodyFitter(m)
    plain = fitter.fit_frame(frame, camera=CAM).people[0]
    assert torch.allclose(torch.tensor(plain.hand_pose, dtype=torch.float64), m.relaxed_hand_pose(1)[0].double(), atol=1e-6)
    frame.people[0].hand_left = kp_array(hands[0])
    frame.people[0].hand_right = kp_array(hands[1])
    fitted = fitter.fit_frame(frame, camera=CAM).people[0]

    err_plain = np.linalg.norm(_project(_posed(m, plain).hands[0]) - hands, axis=-1)
    err_fit = np.linalg.norm(_project(_posed(m, fitted).hands[0]) - hands, axis=-1)
    # the fitted fingers land on the keypoints: mean within 3 % of the hand's size, every point
    # within 10 %, and at least 4x closer than the relaxed hand
    assert err_fit.mean() < 0.03 * size and err_fit.max() < 0.10 * size, (err_fit.mean(), err_fit.max(), size)
    assert err_fit.mean() * 4 < err_plain.mean(), (err_fit.mean(), err_plain.mean())
    # the body is not disturbed by the hands
    assert fitted.reproj_error_px < 2.0
    # the curled fingertips are near the palm in 3D too, the straight index is far from it
    out = _posed(m, fitted).hands[0].double()
    palm = out[:, [0, 5, 9, 13, 17]].mean(1)  # (2, 3)
    reach = (out[:, TIPS] - palm[:, None]).norm(dim=-1)  # (2, 5)
    gt_reach = (gt.hands[0].double()[:, TIPS] - gt.hands[0].double()[:, [0, 5, 9, 13, 17]].mean(1)[:, None]).norm(
        dim=-1
    )
    assert bool(((reach - gt_reach).abs() < 0.025).all()), (reach, gt_reach)


def test_fits_without_finger_angles_render_relaxed_hands(anny_model):
    """A BodyFit written before finger angles existed (hand_pose None) renders relaxed hands."""
    m = anny_model
    p, _, uv = pose_person(m, yaw_deg=0)
    fit = BodyFitter(m).fit_frame(from_array(kp_array(uv)[None], fmt="body25", image_size=(IMG, IMG)), camera=CAM)
    data = fit.to_dict()
    for person in data["people"]:
        person["hand_pose"] = None
    old = BodyFit.from_dict(data)
    assert old.people[0].hand_pose is None
    a, b = fit_output(m, fit), fit_output(m, old)
    assert torch.allclose(a.hands, b.hands, atol=1e-5)
    flat = data["people"][0]
    p = m.zero_params(1)
    kw = {"dtype": m.dtype}
    p.update(
        global_orient=torch.tensor([flat["global_orient"]], **kw),
        body_pose=torch.tensor([flat["body_pose"]], **kw),
        shape=torch.tensor([flat["shape"]], **kw),
        transl=torch.tensor([flat["transl"]], **kw),
    )
    with torch.no_grad():
        zero = m(**p)
    # and not the flat modelling hands: the fingertips are centimetres away from those
    assert float((b.hands[0, :, TIPS] - zero.hands[0, :, TIPS]).norm(dim=-1).min()) > 0.01

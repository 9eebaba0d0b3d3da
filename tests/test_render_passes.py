"""Tests for the render passes (refsd.render.passes): ControlNet conventions, occlusion, robustness."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from refsd.body import PART_INDEX, POSE_JOINT_NAMES, BodyOutput
from refsd.fit.result import BodyFit, PersonFit
from refsd.keypoints import COCO18_NAMES, parse_pose_keypoint, validate_pose_keypoint
from refsd.keypoints.draw import BODY_COLORS, BODY_DOT_RADIUS
from refsd.render import Camera, RenderError, interpolate_nearest, rasterize
from refsd.render.edges import canny
from refsd.render.overlay import fit_camera, fit_vertices
from refsd.render.passes import RenderPasses, render_passes, render_passes_from_output
from refsd.render.shading import Lighting, encode_normals

ROOT = Path(__file__).resolve().parent.parent
C18 = {n: i for i, n in enumerate(COCO18_NAMES)}


# ---------------------------------------------------------------------------
# Scene helpers: Anny people standing in front of an OpenCV camera
# ---------------------------------------------------------------------------
def person(model, x=0.0, z=3.0, yaw=0.0, y=0.0, pose=None) -> PersonFit:
    """A person (pelvis at (x, y, z) in camera space, facing the camera, turned by ``yaw`` degrees).

    Body frame (Y up, facing +Z) -> OpenCV camera frame: a half turn about the axis
    (cos(yaw/2), 0, sin(yaw/2)) = Rx(pi) Ry(yaw).
    """
    a = math.radians(yaw) / 2
    body_pose = [[0.0, 0.0, 0.0] for _ in POSE_JOINT_NAMES]
    for name, aa in (pose or {}).items():
        body_pose[POSE_JOINT_NAMES.index(name)] = list(aa)
    return PersonFit(
        global_orient=[math.pi * math.cos(a), 0.0, math.pi * math.sin(a)],
        body_pose=body_pose,
        shape=model.default_shape(1)[0].tolist(),
        transl=[x, y, z],
        reproj_error_px=0.0,
        quality="good",
    )


def make_fit(people, size=512, fov=40.0, height=None) -> BodyFit:
    w, h = size, height or size
    f = 0.5 * h / math.tan(math.radians(fov) / 2)
    return BodyFit(
        model_id="anny",
        image_width=w,
        image_height=h,
        camera={"fx": f, "fy": f, "cx": w / 2, "cy": h / 2},
        people=people,
    )


ARM_FORWARD = {"right_shoulder": (0.0, math.pi / 2, 0.0)}  # Anny: right hand in front of the belly


@pytest.fixture(scope="module")
def one(anny_model):
    fit = make_fit([person(anny_model)])
    return fit, render_passes(anny_model, fit)


def _project(cam: Camera, pts: torch.Tensor) -> np.ndarray:
    return cam.project(pts.double()).numpy()


def _kp(rp: RenderPasses, p: int, key: str = "pose_keypoints_2d") -> np.ndarray:
    return np.asarray(rp.pose_keypoint[0]["people"][p][key], dtype=np.float64).reshape(-1, 3)


# ---------------------------------------------------------------------------
# Shapes, types, conventions shared by all maps
# ---------------------------------------------------------------------------
def test_shapes_ranges_and_devices(one, anny_model):
    fit, rp = one
    H = W = 512
    for name in ("rgb", "depth", "normal", "pose", "parts", "edges"):
        t = getattr(rp, name)
        assert t.shape == (H, W, 3), name
        assert t.dtype == torch.float32, name
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0, name
        assert t.device == anny_model.device
    assert rp.alpha.shape == (H, W) and rp.person_masks.shape == (1, H, W)
    assert rp.part_labels.dtype == torch.int64 and rp.person_idx.dtype == torch.int64
    assert rp.zbuf.shape == (H, W)
    assert torch.isinf(rp.zbuf[rp.alpha == 0]).all() and torch.isfinite(rp.zbuf[rp.alpha > 0]).all()
    # rgb is the avatar over black; every map is black / background outside the silhouette
    bg = rp.alpha == 0
    assert (rp.rgb[bg] == 0).all() and (rp.parts[bg] == 0).all() and (rp.part_labels[bg] == -1).all()
    assert (rp.rgb[~bg].sum(-1) > 0).all()
    frames = validate_pose_keypoint(rp.pose_keypoint)
    assert len(frames) == 1 and frames[0]["canvas_width"] == W and frames[0]["canvas_height"] == H
    assert len(frames[0]["people"]) == 1
    assert (rp.num_people, rp.height, rp.width) == (1, H, W)


def test_mask_area_equals_rasterized_coverage(anny_model):
    fit = make_fit([person(anny_model, x=-0.3, z=3.2), person(anny_model, x=0.3, z=4.0, yaw=30)])
    rp = render_passes(anny_model, fit)
    fr = rasterize(fit_vertices(anny_model, fit).float(), anny_model.faces, fit_camera(fit))
    covered = int(fr.mask.sum())
    assert covered > 10000
    assert int(rp.alpha.sum()) == covered
    assert torch.equal(rp.alpha.bool(), fr.mask)
    assert torch.equal(rp.person_idx, fr.person_idx)
    assert torch.equal(rp.zbuf, fr.zbuf)
    assert torch.equal(rp.person_masks.sum(0), rp.alpha)
    for p in range(2):
        assert torch.equal(rp.person_masks[p].bool(), fr.person_idx == p)
        assert int(rp.person_masks[p].sum()) > 1000


def test_same_inputs_bit_identical(anny_model):
    fit = make_fit([person(anny_model, pose=ARM_FORWARD), person(anny_model, x=0.5, z=4.0, yaw=-20)])
    colors = torch.rand(2, anny_model.num_vertices, 3, generator=torch.Generator().manual_seed(0))
    a = render_passes(anny_model, fit, colors)
    b = render_passes(anny_model, fit, colors.clone())
    for name in ("rgb", "alpha", "person_masks", "depth", "normal", "pose", "parts", "edges"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("part_labels", "person_idx", "zbuf"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert json.dumps(a.pose_keypoint) == json.dumps(b.pose_keypoint)


# ---------------------------------------------------------------------------
# Depth
# ---------------------------------------------------------------------------
def test_depth_convention(one):
    _, rp = one
    d = rp.depth
    assert torch.equal(d[..., 0], d[..., 1]) and torch.equal(d[..., 0], d[..., 2])  # grey
    m = rp.alpha > 0
    assert (d[~m] == 0).all()  # background exactly black
    assert float(d.max()) == 1.0  # the nearest visible pixel
    near = rp.zbuf == rp.zbuf[m].min()
    assert (d[near][:, 0] == 1.0).all()
    assert float(d[m].min()) == pytest.approx(0.2, abs=1e-5)  # depth_far at the farthest visible pixel
    # monotone: nearer (smaller z) is brighter; affine in disparity 1 / z
    z = rp.zbuf[m].double()
    v = d[m][:, 0].double()
    order = torch.argsort(z)
    assert (v[order][1:] <= v[order][:-1] + 1e-6).all()
    A = torch.stack((1 / z, torch.ones_like(z)), 1)
    coef = torch.linalg.lstsq(A, v.unsqueeze(1)).solution
    assert float((A @ coef).squeeze(1).sub(v).abs().max()) < 1e-5


def test_depth_far_option(anny_model):
    fit = make_fit([person(anny_model)], size=128)
    rp = render_passes(anny_model, fit, depth_far=0.0)
    m = rp.alpha > 0
    assert float(rp.depth[m].min()) == pytest.approx(0.0, abs=1e-6) and float(rp.depth.max()) == 1.0
    with pytest.raises(RenderError, match="depth_far"):
        render_passes(anny_model, fit, depth_far=1.5)


def test_hand_in_front_of_torso_depth_and_occlusion(anny_model):
    """Arm forward: the hand covers the belly; it is nearer (brighter in depth) and labelled hand/arm there."""
    fit = make_fit([person(anny_model, pose=ARM_FORWARD)])
    rp = render_passes(anny_model, fit)
    ref = render_passes(anny_model, make_fit([person(anny_model)]))  # same person, arm down
    cam = fit_camera(fit)
    out = anny_model(**_params(anny_model, fit))
    u, v = _project(cam, out.coco18[0, C18["RWrist"]])
    i, j = int(v), int(u)
    # The wrist projects onto the belly of the arm-down render (torso there) ...
    assert int(ref.part_labels[i, j]) == PART_INDEX["torso"]
    # ... and with the arm forward the arm/hand occludes it: nearer, brighter, other label, same mask.
    arm = {PART_INDEX[n] for n in ("hand_r", "lower_arm_r")}
    assert int(rp.part_labels[i, j]) in arm
    assert float(rp.zbuf[i, j]) < float(ref.zbuf[i, j]) - 0.1
    assert float(rp.depth[i, j, 0]) > float(ref.depth[i, j, 0])
    # within the same image: the hand is brighter than the torso pixels right next to it
    torso = (rp.part_labels == PART_INDEX["torso"]) & (rp.alpha > 0)
    win = torch.zeros_like(torso)
    win[max(i - 40, 0) : i + 40, max(j - 40, 0) : j + 40] = True
    assert (torso & win).sum() > 50
    assert float(rp.depth[i, j, 0]) > float(rp.depth[torso & win][:, 0].max())
    assert rp.alpha[i, j] == 1 and rp.person_idx[i, j] == 0


def _params(model, fit):
    kw = {"device": model.device, "dtype": model.dtype}
    p = model.zero_params(len(fit.people))
    p["global_orient"] = torch.tensor([q.global_orient for q in fit.people], **kw)
    p["body_pose"] = torch.tensor([q.body_pose for q in fit.people], **kw)
    p["shape"] = torch.tensor([q.shape for q in fit.people], **kw)
    p["transl"] = torch.tensor([q.transl for q in fit.people], **kw)
    # fits without finger angles render the model's relaxed hand (refsd.render.scene.fit_output)
    p["hand_pose"] = model.relaxed_hand_pose(len(fit.people))
    return p


def test_two_people_nearer_in_front(anny_model):
    front = person(anny_model, x=0.0, z=3.0)
    back = person(anny_model, x=0.35, z=4.2)
    both = render_passes(anny_model, make_fit([back, front]))  # fit order: the far person first
    alone_front = render_passes(anny_model, make_fit([front]))
    alone_back = render_passes(anny_model, make_fit([back]))
    fm, bm = alone_front.alpha > 0, alone_back.alpha > 0
    overlap = fm & bm
    assert overlap.sum() > 2000
    assert (both.person_idx[overlap] == 1).all()  # the front person (index 1) wins where they overlap
    assert (both.person_idx[bm & ~fm] == 0).all()
    assert torch.equal(both.alpha.bool(), fm | bm)
    # depth: the front person is brighter than the back one everywhere
    assert float(both.depth[fm][:, 0].min()) > float(both.depth[bm & ~fm][:, 0].max())
    # normals/parts inside the overlap come from the front person
    assert torch.equal(both.part_labels[overlap], alone_front.part_labels[overlap])
    # pose: the back person's joints hidden by the front person are dropped, the others kept
    kb_alone, kb = _kp(alone_back, 0), _kp(both, 0)
    hidden = 0
    for k in range(18):
        if kb_alone[k, 2] == 0:
            continue
        i, j = int(kb_alone[k, 1]), int(kb_alone[k, 0])
        if fm[i, j]:
            assert kb[k, 2] == 0, COCO18_NAMES[k]
            hidden += 1
        else:
            assert kb[k, 2] == 1 and np.allclose(kb[k, :2], kb_alone[k, :2]), COCO18_NAMES[k]
    assert hidden >= 2
    # the front person is fully kept
    assert np.allclose(_kp(both, 1), _kp(alone_front, 0), atol=1e-3)  # batched forward: float32 rounding


# ---------------------------------------------------------------------------
# Normals
# ---------------------------------------------------------------------------
def _planes_output(quads: list[torch.Tensor]) -> tuple[BodyOutput, torch.Tensor, torch.Tensor]:
    """Quads (4 corners each) as one 'person' mesh, with no keypoints."""
    verts = torch.cat(quads).float().unsqueeze(0)
    faces = torch.cat([torch.tensor([[0, 1, 2], [0, 2, 3]]) + 4 * k for k in range(len(quads))])
    P = 1
    out = BodyOutput(
        vertices=verts,
        joints=torch.zeros(P, 1, 3),
        pose_joints=torch.zeros(P, 1, 3),
        coco18=torch.zeros(P, 18, 3),
        body25=torch.zeros(P, 25, 3),
        kp_valid={"coco18": torch.zeros(18, dtype=torch.bool)},
    )
    return out, faces, torch.zeros(verts.shape[1], dtype=torch.long)


@pytest.mark.parametrize("winding", ["ccw", "cw"])
def test_normal_map_convention(winding):
    cam = Camera.from_fov(128, 128, 60.0)
    # A plane facing the camera (z = 2), one facing image-right (x = -0.6, normal +x), one facing up.
    facing = torch.tensor([[-0.3, -0.3, 2.0], [-0.3, 0.3, 2.0], [0.3, 0.3, 2.0], [0.3, -0.3, 2.0]])
    right = torch.tensor([[-0.6, -0.3, 1.5], [-0.6, -0.3, 3.0], [-0.6, 0.3, 3.0], [-0.6, 0.3, 1.5]])
    up = torch.tensor([[-0.2, 0.5, 1.5], [0.2, 0.5, 1.5], [0.2, 0.5, 3.0], [-0.2, 0.5, 3.0]])
    quads = [facing, right, up]
    if winding == "cw":
        quads = [q.flip(0) for q in quads]
    out, faces, labels = _planes_output(quads)
    rp = render_passes_from_output(out, faces, labels, cam)
    n = rp.normal
    H = W = 128
    # facing the camera: (127.5, 127.5, 255) / 255 -> (127, 127, 255) after ControlNet's uint8 truncation
    c = n[H // 2, W // 2]
    assert torch.allclose(c, torch.tensor([0.5, 0.5, 1.0]), atol=1e-5)
    assert ((c * 255).to(torch.uint8).tolist()) == [127, 127, 255]
    # facing image-right (+x in camera space): R = (1 - nx) / 2 = 0 (CONTROLNET.md §3: left wall R = 45)
    u, v = cam.project(torch.tensor([-0.6, 0.0, 2.2])).tolist()
    px = n[int(v), int(u)]
    assert float(px[0]) < 0.05 and float(px[0]) < 0.5
    assert abs(float(px[1]) - 0.5) < 0.05 and abs(float(px[2]) - 0.5) < 0.05
    # facing up (-y in OpenCV): G = (1 - ny) / 2 = 1 (CONTROLNET.md §3: floor G = 229)
    u, v = cam.project(torch.tensor([0.0, 0.5, 2.5])).tolist()
    assert float(n[int(v), int(u), 1]) > 0.95
    # background: the flat backdrop (127, 127, 255)
    assert torch.allclose(n[0, W - 1], torch.tensor([0.5, 0.5, 1.0]))
    black = render_passes_from_output(out, faces, labels, cam, normal_background="black")
    assert (black.normal[black.alpha == 0] == 0).all()
    assert torch.equal(black.normal[black.alpha > 0], n[rp.alpha > 0])
    # encode_normals is the documented formula
    assert torch.allclose(encode_normals(torch.tensor([1.0, 0.0, 0.0])), torch.tensor([0.0, 0.5, 0.5]))


def test_body_normals_point_out_of_the_silhouette(one):
    """On the body, the image-right side of the torso faces image-right (R < 0.5), the chest faces the camera."""
    fit, rp = one
    torso = (rp.part_labels == PART_INDEX["torso"]).nonzero()
    rows = torso[:, 0]
    mid = int(rows.float().median())
    cols = torso[rows == mid, 1]
    left, right = int(cols.min()), int(cols.max())
    centre = (left + right) // 2
    assert float(rp.normal[mid, right, 0]) < 0.3  # surface facing image-right
    assert float(rp.normal[mid, left, 0]) > 0.7  # facing image-left
    assert float(rp.normal[mid, centre, 2]) > 0.9  # facing the camera
    # unit normals everywhere on the body, none facing away from the camera (n . view <= 0)
    m = rp.alpha > 0
    nn = 1.0 - 2.0 * rp.normal[m]  # back to OpenCV camera axes
    assert torch.allclose(nn.norm(dim=1), torch.ones(int(m.sum())), atol=1e-4)
    cam = fit_camera(fit)
    ij = m.nonzero().double()
    view = torch.stack(((ij[:, 1] + 0.5 - cam.cx) / cam.fx, (ij[:, 0] + 0.5 - cam.cy) / cam.fy, torch.ones(len(ij))), 1)
    assert float((nn.double() * view).sum(1).max()) < 1e-4


# ---------------------------------------------------------------------------
# Pose
# ---------------------------------------------------------------------------
def _check_body_dots(rp: RenderPasses, cam: Camera, pts: np.ndarray, p: int = 0) -> int:
    """Every kept joint's dot colour is at its projected pixel (unless a later dot overdraws it)."""
    kp = _kp(rp, p)
    pose = (rp.pose * 255).round().to(torch.uint8).numpy()
    checked = 0
    for k in range(18):
        if kp[k, 2] == 0:
            continue
        assert np.allclose(kp[k, :2], pts[k], atol=1e-3), COCO18_NAMES[k]
        later = [q for q in range(k + 1, 18) if kp[q, 2] > 0]
        if any(np.hypot(*(kp[q, :2] - kp[k, :2])) <= 2 * BODY_DOT_RADIUS + 2 for q in later):
            continue
        i, j = int(pts[k, 1]), int(pts[k, 0])
        assert pose[i, j].tolist() == BODY_COLORS[k].tolist(), COCO18_NAMES[k]
        checked += 1
    return checked


def test_pose_dots_at_projected_joints(anny_model):
    fit = make_fit([person(anny_model, yaw=15)], size=768)
    rp = render_passes(anny_model, fit, draw_hands=False)
    cam = fit_camera(fit)
    out = anny_model(**_params(anny_model, fit))
    pts = _project(cam, out.coco18[0])
    kp = _kp(rp, 0)
    assert (kp[:, 2] == 1).all()  # all 18 joints visible (self-occlusion does not drop joints)
    assert _check_body_dots(rp, cam, pts) >= 12
    # limbs are drawn too (0.6 x colour): the Neck-RHip limb's midpoint
    mid = (pts[C18["Neck"]] + pts[C18["RHip"]]) / 2
    assert ((rp.pose[int(mid[1]), int(mid[0])] * 255).round().tolist()) == [0, 153, 0]
    # no hands requested -> none drawn, none written
    person0 = rp.pose_keypoint[0]["people"][0]
    assert person0["hand_left_keypoints_2d"] == [] and person0["hand_right_keypoints_2d"] == []


def test_pose_hands_drawn_and_written(anny_model):
    fit = make_fit([person(anny_model)], size=1024)
    rp = render_passes(anny_model, fit)
    cam = fit_camera(fit)
    out = anny_model(**_params(anny_model, fit))
    pose = (rp.pose * 255).round().to(torch.uint8).numpy()
    for side, key in ((0, "hand_left_keypoints_2d"), (1, "hand_right_keypoints_2d")):
        kp = _kp(rp, 0, key)
        pts = _project(cam, out.hands[0, side])
        assert kp.shape == (21, 3) and (kp[:, 2] == 1).all()
        assert np.allclose(kp[:, :2], pts, atol=1e-3)
        # fingertips are drawn last in their chains: blue dots at their pixels
        for k in (4, 8, 12, 16, 20):
            i, j = int(pts[k, 1]), int(pts[k, 0])
            near = pose[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].reshape(-1, 3).tolist()
            assert [0, 0, 255] in near
    # the keypoints read back as the same people (refsd.keypoints parser)
    frames = parse_pose_keypoint(rp.pose_keypoint)
    assert frames[0].num_people == 1 and frames[0].people[0].hand_left is not None


def test_pose_offscreen_joints_dropped(anny_model):
    # Half the person outside the image's left border.
    fit = make_fit([person(anny_model, x=-0.75, z=2.6)])
    rp = render_passes(anny_model, fit, draw_hands=False)
    cam = fit_camera(fit)
    out = anny_model(**_params(anny_model, fit))
    pts = _project(cam, out.coco18[0])
    kp = _kp(rp, 0)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < 512) & (pts[:, 1] >= 0) & (pts[:, 1] < 512)
    assert 0 < inside.sum() < 18
    for k in range(18):
        if k == C18["Neck"]:
            continue
        assert (kp[k, 2] == 1) == bool(inside[k]), COCO18_NAMES[k]
        if not inside[k]:
            assert kp[k].tolist() == [0.0, 0.0, 0.0]
    # Neck only when both shoulders are kept (DWPose)
    both = kp[C18["RShoulder"], 2] == 1 and kp[C18["LShoulder"], 2] == 1
    assert (kp[C18["Neck"], 2] == 1) == both
    assert _check_body_dots(rp, cam, pts) >= 3


def test_person_fully_hidden_is_left_out_of_pose_keypoint(anny_model):
    front = person(anny_model, z=1.6)
    hidden = person(anny_model, z=6.0)  # right behind: every joint hidden
    rp = render_passes(anny_model, make_fit([hidden, front]), draw_hands=False)
    people = rp.pose_keypoint[0]["people"]
    assert len(people) == 1
    alone = render_passes(anny_model, make_fit([front]), draw_hands=False)
    assert np.allclose(people[0]["pose_keypoints_2d"], _kp(alone, 0).reshape(-1), atol=1e-3)


def test_face_landmarks_with_smplx(smplx_model):
    fit = make_fit([person(smplx_model, z=1.2, y=0.45)], size=512)  # head and shoulders
    fit.model_id = "smplx"
    rp = render_passes(smplx_model, fit)
    face = _kp(rp, 0, "face_keypoints_2d")
    assert face.shape == (70, 3) and face[:, 2].sum() > 30
    pose = (rp.pose * 255).round().to(torch.uint8).numpy()
    k = int(np.nonzero(face[:68, 2])[0][0])
    i, j = int(face[k, 1]), int(face[k, 0])
    assert [255, 255, 255] in pose[i - 1 : i + 2, j - 1 : j + 2].reshape(-1, 3).tolist()
    no_face = render_passes(smplx_model, fit, draw_face=False)
    assert no_face.pose_keypoint[0]["people"][0]["face_keypoints_2d"] == []
    assert not torch.equal(no_face.pose, rp.pose)


# ---------------------------------------------------------------------------
# Parts, colours, shading
# ---------------------------------------------------------------------------
def test_parts_match_interpolate_nearest_and_palette(anny_model):
    from refsd.people import part_palette

    fit = make_fit([person(anny_model, pose=ARM_FORWARD), person(anny_model, x=0.5, z=4.0)])
    rp = render_passes(anny_model, fit)
    fr = rasterize(fit_vertices(anny_model, fit).float(), anny_model.faces, fit_camera(fit))
    labels = interpolate_nearest(fr, anny_model.part_labels)
    assert torch.equal(rp.part_labels, labels)
    pal = part_palette().float() / 255
    assert torch.equal(rp.parts, pal[rp.part_labels])  # row -1 = black background
    assert len(set(rp.part_labels[rp.alpha > 0].tolist())) >= 15


def test_vertex_colour_change_only_where_visible(anny_model):
    fit = make_fit([person(anny_model, pose=ARM_FORWARD)])
    V = anny_model.num_vertices
    base = torch.full((V, 3), 0.4)  # 102 / 255
    changed = anny_model.part_labels == PART_INDEX["hand_r"]
    other = base.clone()
    other[changed] = torch.tensor([0.9, 0.1, 0.1])
    a = render_passes(anny_model, fit, base)
    b = render_passes(anny_model, fit, other)
    fr = rasterize(fit_vertices(anny_model, fit).float(), anny_model.faces, fit_camera(fit))
    face_verts = anny_model.faces[fr.face_idx.clamp_min(0)]  # (H, W, 3)
    touches = (changed[face_verts] & (fr.bary > 0)).any(-1) & fr.mask
    diff = (a.rgb != b.rgb).any(-1)
    assert diff.sum() > 100
    assert not (diff & ~touches).any()
    for name in ("depth", "normal", "parts", "pose", "alpha"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # the same colours as (P, V, 3), as a list, and as uint8 give the same image
    c = render_passes(anny_model, fit, other.unsqueeze(0))
    d = render_passes(anny_model, fit, [other])
    assert torch.equal(c.rgb, b.rgb) and torch.equal(d.rgb, b.rgb)
    e = render_passes(anny_model, fit, (base * 255).round().to(torch.uint8))
    assert torch.allclose(e.rgb, a.rgb, atol=1e-5)


def test_shading_is_soft(one, anny_model):
    fit, rp = one
    m = rp.alpha > 0
    g = rp.rgb[m]
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])  # grey clay stays grey
    # soft: no pitch-black shadows, nothing blown out; brighter facing the light than facing away
    assert float(g.min()) > 0.25 and float(g.max()) < 0.99
    brighter = render_passes(anny_model, fit, light=Lighting(diffuse=0.9, sky=0.8, ground=0.5))
    assert float(brighter.rgb[m].mean()) > float(g.mean())
    with pytest.raises(RenderError, match="direction"):
        Lighting(direction=(0, 0, 0))
    with pytest.raises(RenderError, match="light"):
        render_passes(anny_model, fit, light="bright")


# ---------------------------------------------------------------------------
# Edges
# ---------------------------------------------------------------------------
def _boundary_band(rp: RenderPasses, radius: int = 3) -> torch.Tensor:
    """Pixels within ``radius`` of a silhouette, person or body-part boundary."""
    lab = rp.part_labels + 100 * rp.person_idx
    b = torch.zeros_like(lab, dtype=torch.bool)
    b[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    b[1:, :] |= lab[1:, :] != lab[:-1, :]
    k = 2 * radius + 1
    return torch.nn.functional.max_pool2d(b[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0


def test_edges_on_silhouette_and_colour_boundaries(anny_model):
    from refsd.people import part_palette

    fit = make_fit([person(anny_model, pose=ARM_FORWARD), person(anny_model, x=0.6, z=4.2, yaw=30)])
    colors = (part_palette().float() / 255)[anny_model.part_labels]  # piecewise-constant colours per part
    # Unshaded (constant irradiance): rgb is the piecewise-constant albedo -> edges only at boundaries.
    flat = render_passes(anny_model, fit, colors, light=Lighting(diffuse=0.0, sky=1.0, ground=1.0))
    e = flat.edges[..., 0]
    assert torch.equal(e, flat.edges[..., 1]) and torch.equal(e, flat.edges[..., 2])
    assert set(e.unique().tolist()) == {0.0, 1.0}
    assert e.sum() > 500
    assert not (e.bool() & ~_boundary_band(flat)).any()
    # most of the silhouette outline is found
    m = flat.alpha > 0
    sil = torch.zeros_like(m)
    sil[:, 1:] |= m[:, 1:] != m[:, :-1]
    sil[1:, :] |= m[1:, :] != m[:-1, :]
    found = torch.nn.functional.max_pool2d(e[None, None], 5, stride=1, padding=2)[0, 0] > 0
    assert (found & sil).sum() > 0.9 * sil.sum()
    # Soft shading adds at most a few edges at deep creases (between the toes): >= 99 % on boundaries.
    shaded = render_passes(anny_model, fit, colors)
    es = shaded.edges[..., 0].bool()
    assert es.sum() > 500
    assert (es & _boundary_band(shaded)).sum() >= 0.99 * es.sum()


def _assert_canny_agrees(ours: torch.Tensor, ref: torch.Tensor, mag: torch.Tensor, what) -> None:
    """Equal edges, up to the one documented tie case of non-maximum suppression.

    Across an axis-aligned step the blurred gradient magnitude is mathematically equal on the two
    pixels either side of the step; which one wins depends on the last bits of the blur and Sobel
    sums, i.e. on the CPU kernels torch picks (AVX2 vs AVX-512 vs scalar reduce in different
    orders). There the edge may sit on either pixel. So: every pixel where the two edge maps
    differ must be a tie pixel (its magnitude equals an 8-neighbour's to float32 rounding,
    |difference| <= 1e-5 x magnitude, i.e. ~100 ulp, far below any real difference in the test
    images), the other side of that tie must carry the other map's edge, and the edge count must
    be the same. Everywhere else the edges agree exactly.
    """
    diff = ours != ref
    assert int(ours.sum()) == int(ref.sum()), (what, int(ours.sum()), int(ref.sum()))
    if not bool(diff.any()):
        return
    H, W = mag.shape
    pad = torch.nn.functional.pad(mag[None, None], (1, 1, 1, 1), value=float("nan"))[0, 0]
    eo = torch.nn.functional.pad(ours[None, None], (1, 1, 1, 1))[0, 0]
    er = torch.nn.functional.pad(ref[None, None], (1, 1, 1, 1))[0, 0]
    for y, x in diff.nonzero().tolist():
        m = float(mag[y, x])
        partner = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                n = float(pad[y + 1 + dy, x + 1 + dx])
                tie = abs(n - m) <= 1e-5 * max(m, 1e-6)
                # the edge moved across the tie: the neighbour has the edge in the other map
                swapped = eo[y + 1 + dy, x + 1 + dx] != er[y + 1 + dy, x + 1 + dx]
                partner |= bool(tie and swapped)
        assert partner, (what, "edges differ at a pixel that is not a magnitude tie", (y, x), m)


def test_canny_matches_kornia():
    kornia = pytest.importorskip("kornia")
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(40, 56, 3, generator=g)]
    sq = torch.zeros(48, 48, 3)
    sq[10:30, 12:40] = 0.8  # axis-aligned step edges: exact magnitude ties across the step
    sq[30:40, 20:26] = 0.3  # a weak step attached to a strong one (hysteresis)
    sq[40:44, 2:8] = 0.25  # an isolated weak step (dropped by hysteresis)
    imgs.append(sq)
    blob = torch.zeros(64, 64)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob[((yy - 32) ** 2 + (xx - 30) ** 2) < 400] = 1.0
    imgs.append((blob * (0.3 + 0.5 * xx / 64)).unsqueeze(-1).expand(64, 64, 3))
    imgs.append(sq[..., 0].clone())  # grey input
    for img in imgs:
        for lo, hi in ((0.4, 0.8), (0.1, 0.2), (0.8, 0.8)):
            x = img if img.dim() == 3 else img.unsqueeze(-1)
            mag, ref = kornia.filters.canny(x.permute(2, 0, 1)[None].contiguous(), lo, hi)
            _assert_canny_agrees(canny(img, lo, hi), ref[0, 0], mag[0, 0], (tuple(img.shape), lo, hi))
    # cropping to a mask's box (plus a black margin) gives the same edges as the full image
    m = sq[..., 0] > 0
    assert torch.equal(canny(sq, mask=m), canny(sq))
    with pytest.raises(RenderError, match="canny_low"):
        canny(sq, 0.9, 0.5)


def test_edges_equal_canny_of_rgb(one):
    _, rp = one
    assert torch.equal(rp.edges[..., 0], canny(rp.rgb))


# ---------------------------------------------------------------------------
# Sizes, empty input, bad input
# ---------------------------------------------------------------------------
def test_empty_fit(anny_model):
    fit = make_fit([], size=64)
    rp = render_passes(anny_model, fit)
    assert rp.rgb.shape == (64, 64, 3) and rp.person_masks.shape == (0, 64, 64)
    for name in ("rgb", "alpha", "depth", "pose", "parts", "edges"):
        assert (getattr(rp, name) == 0).all(), name
    assert torch.allclose(rp.normal, torch.tensor([0.5, 0.5, 1.0]).expand(64, 64, 3))
    assert (rp.part_labels == -1).all() and (rp.person_idx == -1).all() and torch.isinf(rp.zbuf).all()
    assert rp.pose_keypoint == [{"people": [], "canvas_width": 64, "canvas_height": 64}]
    validate_pose_keypoint(rp.pose_keypoint)
    # empty colour sets are fine too (what the avatar code passes for an image without people)
    rp2 = render_passes(anny_model, fit, torch.zeros(0, anny_model.num_vertices, 3))
    assert rp2.alpha.sum() == 0


def test_person_entirely_off_screen(anny_model):
    rp = render_passes(anny_model, make_fit([person(anny_model, x=5.0)], size=64))
    assert rp.alpha.sum() == 0 and rp.edges.sum() == 0 and rp.pose.sum() == 0
    assert rp.pose_keypoint[0]["people"] == [] and rp.person_masks.shape == (1, 64, 64)


def test_tiny_16x16(anny_model):
    fit = make_fit([person(anny_model), person(anny_model, x=0.4, z=4)], size=16)
    rp = render_passes(anny_model, fit)
    assert rp.rgb.shape == (16, 16, 3)
    assert 10 < int(rp.alpha.sum()) < 256
    assert float(rp.depth.max()) == 1.0


def test_resize_rescales_camera_exactly(anny_model):
    fit = make_fit([person(anny_model)], size=512)
    full = render_passes(anny_model, fit, draw_hands=False)
    half = render_passes(anny_model, fit, width=256, height=256, draw_hands=False)
    wide = render_passes(anny_model, fit, width=512, height=384, draw_hands=False)
    assert half.rgb.shape == (256, 256, 3) and wide.rgb.shape == (384, 512, 3)
    assert half.pose_keypoint[0]["canvas_width"] == 256
    assert np.allclose(_kp(half, 0)[:, :2], _kp(full, 0)[:, :2] / 2, atol=1e-6)
    assert abs(float(half.alpha.sum()) * 4 / float(full.alpha.sum()) - 1) < 0.03


def test_person_scale_about_the_pelvis(anny_model):
    """PersonFit.scale scales the posed body about its pelvis: the hips stay, the body grows."""
    p = person(anny_model, z=4.0)
    a = render_passes(anny_model, make_fit([p]))
    b = render_passes(anny_model, make_fit([dataclasses.replace(p, scale=1.3)]))
    ka, kb = _kp(a, 0), _kp(b, 0)
    hips = [8, 11]  # COCO-18 RHip, LHip: about the pelvis, so nearly fixed
    mid_a, mid_b = ka[hips, :2].mean(0), kb[hips, :2].mean(0)
    assert np.abs(mid_a - mid_b).max() < 2.0

    def height(alpha):
        ys = torch.nonzero(alpha > 0.5)[:, 0]
        return int(ys.max() - ys.min())

    assert abs(height(b.alpha) / height(a.alpha) - 1.3) < 0.06
    with pytest.raises(Exception, match="scale"):
        render_passes(anny_model, make_fit([dataclasses.replace(p, scale=-1.0)]))


def test_bad_inputs(anny_model):
    fit = make_fit([person(anny_model), person(anny_model, x=0.5)], size=64)
    V = anny_model.num_vertices
    with pytest.raises(RenderError, match="fit has 2"):
        render_passes(anny_model, fit, torch.rand(3, V, 3))
    with pytest.raises(RenderError, match="fit has 2 people"):
        render_passes(anny_model, fit, [torch.rand(V, 3)])
    with pytest.raises(RenderError, match=r"\(V, 3\)"):
        render_passes(anny_model, fit, torch.rand(V - 1, 3))
    with pytest.raises(RenderError, match="NaN"):
        render_passes(anny_model, fit, torch.full((V, 3), float("nan")))
    with pytest.raises(RenderError, match="vertex_colors"):
        render_passes(anny_model, fit, "red")
    with pytest.raises(RenderError, match="BodyFit"):
        render_passes(anny_model, {"people": []})
    with pytest.raises(RenderError, match="normal_background"):
        render_passes(anny_model, fit, normal_background="grey")
    with pytest.raises(RenderError, match="width"):
        render_passes(anny_model, fit, width=0)
    nocam = make_fit([person(anny_model)], size=64)
    nocam.camera = {"fx": 100.0}
    with pytest.raises(RenderError, match="fx, fy, cx, cy"):
        render_passes(anny_model, nocam)
    out = anny_model(**_params(anny_model, fit))
    cam = fit_camera(fit)
    with pytest.raises(RenderError, match="part_labels"):
        render_passes_from_output(out, anny_model.faces, anny_model.part_labels + 100, cam)
    with pytest.raises(RenderError, match="part_labels"):
        render_passes_from_output(out, anny_model.faces, anny_model.part_labels[:-1], cam)
    with pytest.raises(RenderError, match="Camera"):
        render_passes_from_output(out, anny_model.faces, anny_model.part_labels, "cam")
    bad = make_fit([person(anny_model)], size=64)
    bad.people[0].hand_pose = [0.0] * 7
    with pytest.raises(RenderError, match="hand_pose"):
        render_passes(anny_model, bad)


def test_4096_four_people_within_memory():
    """4096 x 4096, 4 people, CPU, in a fresh process: completes; peak RSS stays bounded."""
    cache = os.environ.get("REFSD_CACHE_DIR") or str(ROOT / ".cache")
    script = textwrap.dedent(
        f"""
        import json, math, resource, sys, time
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import torch
        from refsd.body import get_body_model
        from test_render_passes import make_fit, person
        from refsd.render.passes import render_passes
        m = get_body_model("anny", cache_dir={str(Path(cache) / "anny")!r})
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        people = [person(m, x, z=z, yaw=yaw, y=-0.13) for x, z, yaw in
                  ((0.0, 4.7, 10.0), (-0.85, 5.2, -25.0), (0.7, 4.3, 35.0), (-0.2, 5.9, 180.0))]
        t = time.perf_counter()
        rp = render_passes(m, make_fit(people, size=4096))
        dt = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"seconds": dt, "base_mb": base, "peak_mb": peak, "shape": list(rp.rgb.shape),
                          "covered": int(rp.alpha.sum()), "people": len(rp.pose_keypoint[0]["people"]),
                          "edges": int(rp.edges[..., 0].sum())}}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4096, 4096, 3]
    assert out["covered"] > 0.1 * 4096 * 4096 and out["people"] == 4 and out["edges"] > 10000
    # Output maps are ~1.5 GB at 4096^2 with 4 people; the render's own working set stays well below 2x that.
    assert out["peak_mb"] - out["base_mb"] < 3500, out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(anny_model, anny_cache_dir):
    from refsd.body import get_body_model

    gpu_model = get_body_model("anny", device="cuda", cache_dir=anny_cache_dir)
    fit = make_fit([person(anny_model, pose=ARM_FORWARD), person(anny_model, x=0.5, z=4.0, yaw=-20)])
    colors = (torch.rand(2, anny_model.num_vertices, 3, generator=torch.Generator().manual_seed(1)) * 255).byte()
    cpu = render_passes(anny_model, fit, colors)
    gpu = render_passes(gpu_model, fit, colors.cuda())
    for name in ("rgb", "alpha", "person_masks", "depth", "normal", "pose", "parts", "edges", "part_labels"):
        assert getattr(gpu, name).is_cuda, name
    same = (cpu.alpha > 0) & (gpu.alpha.cpu() > 0)
    assert same.sum() > 0.999 * (cpu.alpha > 0).sum()
    assert (cpu.part_labels[same] == gpu.part_labels.cpu()[same]).float().mean() > 0.999
    assert (cpu.rgb[same] - gpu.rgb.cpu()[same]).abs().max() < 1e-3
    assert (cpu.normal[same] - gpu.normal.cpu()[same]).abs().max() < 1e-3
    assert (cpu.depth[same] - gpu.depth.cpu()[same]).abs().max() < 1e-4
    assert (cpu.edges != gpu.edges.cpu()).float().mean() < 1e-3
    assert np.allclose(_kp(cpu, 0), _kp(gpu, 0), atol=1e-2)

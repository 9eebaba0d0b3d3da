"""Tests for refsd.body: the body model interface, the Anny and SMPL-X backends and the
synthetic SMPL-X file generator. Real components throughout (Anny's real data, smplx's real
functions, a synthetic SMPL-X-format file written to a temporary folder)."""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import time
import zipfile

import _body_fixtures
import numpy as np
import pytest
import torch

from refsd.body import (
    BODY_MODEL_NAMES,
    HAND_JOINT_NAMES,
    PART_NAMES,
    POSE_JOINT_NAMES,
    BodyModelError,
    get_body_model,
)
from refsd.body.anny_backend import AnnyBody
from refsd.body.anny_cache import _remove_stale_builds, anny_cache_file, resolve_anny_cache_dir
from refsd.body.anny_rig import ANNY_POSE_BONES, ANNY_SHAPE_NAMES, age_from_years, years_from_age
from refsd.body.smplx_backend import SMPLXBody
from refsd.body.smplx_files import (
    SMPLX_DOWNLOAD_URL,
    SMPLX_FILE_NAMES,
    load_smplx_npz,
    resolve_smplx_model_dir,
)
from refsd.errors import RefSDError
from refsd.keypoints import BODY25_NAMES, BODY25_TO_COCO18, COCO18_NAMES
from refsd.testing import SMPLX_PARENTS, write_synthetic_smplx

# session fixtures anny_cache_dir, anny_model, smplx_dir, smplx_model come from conftest.py
body = _body_fixtures.body
random_params = _body_fixtures.random_params
ANNY_BUILD = _body_fixtures.ANNY_BUILD

C18 = {n: i for i, n in enumerate(COCO18_NAMES)}
B25 = {n: i for i, n in enumerate(BODY25_NAMES)}
PJ = {n: i + 1 for i, n in enumerate(POSE_JOINT_NAMES)}  # index into pose_joints
REPO = pathlib.Path(__file__).resolve().parents[1]


def _rest(model, batch: int = 1):
    with torch.no_grad():
        return model(**model.zero_params(batch))


def _rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# Interface, shared by both backends
# ---------------------------------------------------------------------------------------


def test_output_shapes_and_dtypes(body):
    batch = 3
    out = body(**random_params(body, batch))
    nv, nk = body.num_vertices, len(body.joint_names)
    assert out.vertices.shape == (batch, nv, 3) and out.vertices.dtype == torch.float32
    assert out.joints.shape == (batch, nk, 3)
    assert out.pose_joints.shape == (batch, 1 + len(POSE_JOINT_NAMES), 3)
    assert out.coco18.shape == (batch, 18, 3)
    assert out.body25.shape == (batch, 25, 3)
    assert out.hands is not None and out.hands.shape == (batch, 2, 21, 3)
    assert body.faces.dtype == torch.long and body.faces.ndim == 2 and body.faces.shape[1] == 3
    assert int(body.faces.min()) >= 0 and int(body.faces.max()) < nv
    assert body.part_labels.shape == (nv,) and body.part_labels.dtype == torch.long
    assert body.pose_joint_names == POSE_JOINT_NAMES
    assert len(body.shape_names) == body.default_shape().shape[1]
    expected_valid = {"coco18": (18,), "body25": (25,), "hands": (2, 21)}
    if out.face is not None:
        assert out.face.shape == (batch, 68, 3)
        expected_valid["face"] = (68,)
    assert {k: tuple(v.shape) for k, v in out.kp_valid.items()} == expected_valid
    for name in ("vertices", "joints", "pose_joints", "coco18", "body25", "hands"):
        assert torch.isfinite(getattr(out, name)).all(), name
    # Every vertex is used by a face (no stray helper geometry).
    used = torch.zeros(nv, dtype=torch.bool)
    used[body.faces.reshape(-1)] = True
    assert bool(used.all())


def test_rest_pose_is_y_up_facing_plus_z(body):
    out = _rest(body)
    v, c18, pj = out.vertices[0], out.coco18[0], out.pose_joints[0]
    assert torch.allclose(pj[0], torch.zeros(3), atol=1e-5)  # pelvis at transl = 0
    pelvis = pj[0]
    nose, neck = c18[C18["Nose"]], c18[C18["Neck"]]
    assert nose[1] > neck[1] > pelvis[1] + 0.3  # head above neck above pelvis
    assert nose[2] > neck[2] + 0.05  # nose in front: the body faces +Z
    assert c18[C18["LShoulder"], 0] > 0.1 and c18[C18["RShoulder"], 0] < -0.1  # subject's left on +X
    assert c18[C18["LHip"], 0] > 0.05 and c18[C18["RHip"], 0] < -0.05
    assert c18[C18["LAnkle"], 1] < pelvis[1] - 0.6  # feet below
    height = float(v[:, 1].max() - v[:, 1].min())
    assert 1.4 < height < 2.1
    toes = out.body25[0, [B25["LBigToe"], B25["RBigToe"]]]
    heels = out.body25[0, [B25["LHeel"], B25["RHeel"]]]
    assert bool((toes[:, 2] > heels[:, 2] + 0.1).all())  # feet point forward (+Z)
    # Rest pose: T-pose (SMPL-X) or A-pose (Anny) as documented.
    drop = float(c18[C18["LShoulder"], 1] - c18[C18["LWrist"], 1])
    if body.rest_pose == "T-pose":
        assert abs(drop) < 0.08
    else:
        assert body.rest_pose == "A-pose" and 0.2 < drop < 0.6


def test_global_orient_180_about_y_flips_facing(body):
    p = body.zero_params(1)
    rest = body(**p)
    p["global_orient"] = torch.tensor([[0.0, math.pi, 0.0]])
    turned = body(**p)
    c18 = turned.coco18[0]
    assert c18[C18["Nose"], 2] < c18[C18["Neck"], 2] - 0.05  # now facing -Z
    assert c18[C18["LShoulder"], 0] < -0.1  # left shoulder moved to -X
    expected = rest.vertices[0].double() @ _rot_y(math.pi).T
    assert torch.allclose(turned.vertices[0].double(), expected, atol=1e-4)
    # Rotation is about the pelvis, which stays at transl.
    assert torch.allclose(turned.pose_joints[0, 0], torch.zeros(3), atol=1e-5)


def test_transl_moves_everything(body):
    p = body.zero_params(2)
    rest = body(**p)
    shift = torch.tensor([[0.5, -1.0, 3.0], [0.0, 0.0, 0.0]])
    p["transl"] = shift
    moved = body(**p)
    # Every output is (untranslated point) + transl, one float32 add: the sum's rounding error is
    # at most 1/2 ulp = 2^-24 x |value| on each side, so allow 4 x 2^-24 x max |value| (~1e-6 at
    # 3 m). Any kernel-dependent arithmetic on the translated values (regressing translated
    # vertices with weights that sum to 1 only up to ~1e-6) would exceed this and must not happen.
    eps = torch.finfo(torch.float32).eps
    for name in ("vertices", "joints", "pose_joints", "coco18", "body25", "hands"):
        t = getattr(rest, name)
        expected = t + shift.view(2, *([1] * (t.ndim - 2)), 3)
        atol = 2 * eps * float(expected.abs().max() + t.abs().max())
        assert torch.allclose(getattr(moved, name), expected, rtol=0, atol=atol), name
    # the pelvis is rest pelvis (0 up to the model's own rounding, ~eps x body size) + transl
    pelvis_tol = 2 * eps * 3.0 + float(rest.pose_joints[:, 0].abs().max())
    assert torch.allclose(moved.pose_joints[:, 0], shift, rtol=0, atol=pelvis_tol)


def test_batch_elements_are_independent(body):
    p = random_params(body, 4, seed=3)
    out = body(**p)
    single = body(**{k: v[2:3] for k, v in p.items()})
    assert torch.allclose(out.vertices[2:3], single.vertices, atol=1e-5)
    assert torch.allclose(out.body25[2:3], single.body25, atol=1e-5)


def test_gradients_reach_every_input(body):
    for scale in (0.0, 0.4):  # at the rest pose and at a random pose
        p = {k: v.clone().requires_grad_(True) for k, v in random_params(body, 2, scale=scale, seed=1).items()}
        out = body(**p)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(out.vertices.shape, generator=g)
        loss = (out.vertices * w).sum() + out.body25.square().sum() + out.hands.square().sum()
        loss.backward()
        for k, t in p.items():
            assert t.grad is not None and torch.isfinite(t.grad).all(), k
            assert float(t.grad.abs().sum()) > 0, k
        # every fitter joint and every finger joint has an effect
        assert bool((p["body_pose"].grad.abs().sum(dim=(0, 2)) > 0).all())
        if "hand_pose" in p and p["hand_pose"].ndim == 4:
            assert bool((p["hand_pose"].grad.abs().sum(dim=(0, 3)) > 0).all())


def test_torch_func_jacobian_matches_autograd(body):
    p = body.zero_params(1)

    def keypoints(bp):
        return body(**{**p, "body_pose": bp}).coco18

    bp = 0.1 * torch.ones_like(p["body_pose"])
    jac = torch.func.jacrev(keypoints)(bp)
    bp2 = bp.clone().requires_grad_(True)
    keypoints(bp2)[0, C18["LWrist"], 1].backward()
    assert torch.allclose(jac[0, C18["LWrist"], 1], bp2.grad, atol=1e-5)


def test_coco18_neck_is_shoulder_midpoint(body):
    out = body(**random_params(body, 2, seed=5))
    for kp, idx in ((out.coco18, C18), (out.body25, B25)):
        mid = 0.5 * (kp[:, idx["LShoulder"]] + kp[:, idx["RShoulder"]])
        assert torch.allclose(kp[:, idx["Neck"]], mid, atol=1e-6)
    assert torch.allclose(out.coco18, out.body25[:, list(BODY25_TO_COCO18)])
    hips = 0.5 * (out.body25[:, B25["LHip"]] + out.body25[:, B25["RHip"]])
    assert float((out.body25[:, B25["MidHip"]] - hips).norm(dim=-1).max()) < 0.06


def test_keypoints_lie_on_or_in_the_body(body):
    out = _rest(body)
    v = out.vertices[0]
    for name, kp in (("body25", out.body25[0]), ("hands", out.hands[0].reshape(-1, 3))):
        dist = torch.cdist(kp, v).min(dim=1).values
        assert float(dist.max()) < 0.1, (name, dist.argmax())
    # Hands: left-hand points near left-hand vertices, wrist first, fingertips last.
    for side, part in ((0, "hand_l"), (1, "hand_r")):
        hv = v[body.part_mask(part)]
        assert float(torch.cdist(out.hands[0, side], hv).min(dim=1).values.max()) < 0.03
        wrist, tips = out.hands[0, side, 0], out.hands[0, side, [4, 8, 12, 16, 20]]
        knuckles = out.hands[0, side, [5, 9, 13, 17]]
        assert float((tips[1:] - wrist).norm(dim=-1).min()) > float((knuckles - wrist).norm(dim=-1).max())
    eyes = out.coco18[0, [C18["LEye"], C18["REye"]]]
    assert float(torch.cdist(eyes, v[body.part_mask("eyes")]).min(dim=1).values.max()) < 0.03


_MOVES = {
    # fitter joint: (a part that must move, a part that must not move)
    "left_hip": ("lower_leg_l", "lower_leg_r"),
    "right_hip": ("lower_leg_r", "lower_leg_l"),
    "spine1": ("head", "foot_l"),
    "spine2": ("head", "foot_r"),
    "spine3": ("hand_l", "foot_l"),
    "left_knee": ("foot_l", "foot_r"),
    "right_knee": ("foot_r", "foot_l"),
    "left_ankle": ("foot_l", "upper_leg_l"),
    "right_ankle": ("foot_r", "upper_leg_r"),
    "left_foot": ("foot_l", "upper_leg_l"),
    "right_foot": ("foot_r", "upper_leg_r"),
    "neck": ("face", "hand_l"),
    "head": ("face", "hand_l"),
    "left_collar": ("hand_l", "hand_r"),
    "right_collar": ("hand_r", "hand_l"),
    "left_shoulder": ("lower_arm_l", "hand_r"),
    "right_shoulder": ("lower_arm_r", "hand_l"),
    "left_elbow": ("hand_l", "upper_arm_r"),
    "right_elbow": ("hand_r", "upper_arm_l"),
    "left_wrist": ("hand_l", "hand_r"),
    "right_wrist": ("hand_r", "hand_l"),
}


def test_each_pose_joint_moves_its_own_body_part(body):
    assert set(_MOVES) == set(POSE_JOINT_NAMES)
    rest = _rest(body).vertices[0]
    axis = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)
    for j, name in enumerate(POSE_JOINT_NAMES):
        p = body.zero_params(1)
        p["body_pose"][0, j] = 0.6 * axis
        with torch.no_grad():
            moved = body(**p).vertices[0]
        disp = (moved - rest).norm(dim=-1)
        must_move, must_stay = _MOVES[name]
        assert float(disp[body.part_mask(must_move)].max()) > 0.015, name
        assert float(disp[body.part_mask(must_stay)].max()) < 1e-4, name


def test_finger_joints_move_their_own_hand(body):
    rest = _rest(body).vertices[0]
    hand_shape = body.hand_pose_shape
    assert hand_shape is not None
    for side, own, other in ((0, "hand_l", "hand_r"), (1, "hand_r", "hand_l")):
        p = body.zero_params(1)
        if len(hand_shape) == 3:
            p["hand_pose"][0, side, HAND_JOINT_NAMES.index("index1")] = torch.tensor([0.0, 0.0, 0.8])
        else:
            p["hand_pose"][0, side, 0] = 1.0
        with torch.no_grad():
            moved = body(**p).vertices[0]
        disp = (moved - rest).norm(dim=-1)
        assert float(disp[body.part_mask(own)].max()) > 0.005
        assert float(disp[~body.part_mask(own)].max()) < 1e-4
        assert float(disp[body.part_mask(other)].max()) < 1e-4


def test_part_labels_cover_all_vertices_and_are_spatially_sensible(body):
    labels = body.part_labels
    assert int(labels.min()) >= 0 and int(labels.max()) < len(PART_NAMES)
    counts = torch.bincount(labels, minlength=len(PART_NAMES))
    assert bool((counts > 0).all()), dict(zip(PART_NAMES, counts.tolist(), strict=True))
    out = _rest(body)
    v, c18 = out.vertices[0], out.coco18[0]
    shoulder_y = float(c18[[C18["LShoulder"], C18["RShoulder"]], 1].max())
    ankle_y = float(c18[[C18["LAnkle"], C18["RAnkle"]], 1].max())
    floor = float(v[:, 1].min())

    def part(name):
        return v[body.part_mask(name)]

    for name in ("head", "face", "hair", "eyes"):
        assert float(part(name)[:, 1].min()) > shoulder_y, name
    assert float(part("hair")[:, 1].mean()) > float(part("face")[:, 1].mean())
    assert float(part("face")[:, 2].mean()) > float(part("hair")[:, 2].mean()) + 0.05
    for side in ("l", "r"):
        foot = part(f"foot_{side}")
        assert float(foot[:, 1].min()) < floor + 0.02 and float(foot[:, 1].max()) < ankle_y + 0.1
    for name in PART_NAMES:
        if name.endswith("_l"):
            assert float(part(name)[:, 0].mean()) > 0.05, name
        elif name.endswith("_r"):
            assert float(part(name)[:, 0].mean()) < -0.05, name
    order = ["hand_l", "lower_arm_l", "upper_arm_l"]
    xs = [float(part(n)[:, 0].mean()) for n in order]
    assert xs[0] > xs[1] > xs[2]  # hand beyond forearm beyond upper arm
    ys = [float(part(n)[:, 1].mean()) for n in ("foot_l", "lower_leg_l", "upper_leg_l", "torso", "neck", "head")]
    assert ys == sorted(ys)


def test_faces_point_outwards(body):
    v = _rest(body).vertices[0].double()
    f = body.faces
    volume = torch.einsum("ij,ij->i", v[f[:, 0]], torch.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6
    assert 0.03 < float(volume) < 0.2  # m^3, counter-clockwise seen from outside


def test_bad_inputs_raise_refsd_errors(body):
    p = body.zero_params(2)
    with pytest.raises(RefSDError, match="body_pose"):
        body(**{**p, "body_pose": torch.zeros(2, 23, 3)})
    with pytest.raises(RefSDError, match="batch size"):
        body(**{**p, "transl": torch.zeros(3, 3)})
    with pytest.raises(RefSDError, match="dtype"):
        body(**{**p, "shape": p["shape"].double()})
    with pytest.raises(RefSDError, match="hand_pose"):
        body(**{**p, "hand_pose": torch.zeros(2, 7)})
    with pytest.raises(BodyModelError, match="Tensor"):
        body(**{**p, "global_orient": [[0.0, 0.0, 0.0]] * 2})


def test_float64_model(smplx_dir, anny_cache_dir, anny_model):
    for model in (
        get_body_model("smplx", model_dir=smplx_dir, dtype=torch.float64),
        get_body_model("anny", cache_dir=anny_cache_dir, dtype=torch.float64),
    ):
        out = model(**model.zero_params(1))
        assert out.vertices.dtype == torch.float64 and out.coco18.dtype == torch.float64
    ref = anny_model(**anny_model.zero_params(1)).vertices
    assert torch.allclose(out.vertices.float(), ref, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(anny_cache_dir, smplx_dir):
    for name, kw in (("anny", {"cache_dir": anny_cache_dir}), ("smplx", {"model_dir": smplx_dir})):
        cpu = get_body_model(name, **kw)
        gpu = get_body_model(name, device="cuda", **kw)
        p = random_params(cpu, 2, seed=7)
        a = cpu(**p)
        b = gpu(**{k: v.cuda() for k, v in p.items()})
        assert b.vertices.device.type == "cuda"
        assert torch.allclose(a.vertices, b.vertices.cpu(), atol=1e-4)
        assert torch.allclose(a.body25, b.body25.cpu(), atol=1e-4)


def test_unknown_model_name_lists_the_names():
    with pytest.raises(RefSDError) as e:
        get_body_model("smpl-h")
    for name in BODY_MODEL_NAMES:
        assert name in str(e.value)
    assert isinstance(e.value, ValueError)


def test_unknown_option_is_a_refsd_error(smplx_dir):
    with pytest.raises(RefSDError, match="unexpected keyword"):
        get_body_model("smplx", model_dir=smplx_dir, colour="red")


def test_import_is_cheap_and_comfy_free():
    code = (
        "import sys, refsd.body, refsd.body.base, refsd.body.anny_backend, refsd.body.smplx_backend, "
        "refsd.testing.synthetic_smplx;"
        "bad = [m for m in ('anny', 'smplx', 'comfy', 'folder_paths', 'comfy_api') if m in sys.modules];"
        "print(bad)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_body_sources_avoid_unsafe_loading():
    forbidden = ("pickle.load", "allow_pickle=True", "weights_only=False", "eval(", "exec(", "import comfy")
    for path in (REPO / "refsd" / "body").glob("*.py"):
        text = path.read_text()
        for needle in forbidden:
            assert needle not in text, (path.name, needle)
        assert "get_anny2smpl" not in text and "download_noncommercial" not in text, path.name


# ---------------------------------------------------------------------------------------
# Anny backend
# ---------------------------------------------------------------------------------------


def test_anny_shape_names_and_default(anny_model):
    assert anny_model.shape_names == ANNY_SHAPE_NAMES
    s = anny_model.default_shape(2)
    assert s.shape == (2, 6)
    assert torch.allclose(s[:, ANNY_SHAPE_NAMES.index("height")], torch.tensor(0.5))
    assert abs(float(years_from_age(s[0, ANNY_SHAPE_NAMES.index("age")])) - 30.0) < 1e-4
    lo, hi = anny_model.shape_bounds()
    assert torch.equal(lo, torch.zeros(6)) and torch.equal(hi, torch.ones(6))
    with pytest.raises(RefSDError, match="unknown phenotype"):
        anny_model.shape_from(size=1.0)
    with pytest.raises(RefSDError, match="expression"):
        anny_model(**anny_model.zero_params(1), expression=torch.zeros(1, 10))


def test_anny_age_mapping_matches_annys_calibration():
    import anny

    path = pathlib.Path(anny.__file__).parent / "data" / "shape_calibration" / "boys.pth"
    mapping = torch.load(path, weights_only=True, map_location="cpu")["morphological_age_mapping"]
    ages, years = mapping["anny_age_anchors"], mapping["morphological_age_anchors"]
    assert torch.allclose(age_from_years(years), ages.double(), atol=1e-9)
    assert torch.allclose(years_from_age(ages), years.double(), atol=1e-9)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(age_from_years(years_from_age(x)), x, atol=1e-9)


def _mesh_height(model, shape):
    p = model.zero_params(shape.shape[0])
    with torch.no_grad():
        v = model(**{**p, "shape": shape}).vertices
    return v[..., 1].amax(-1) - v[..., 1].amin(-1)


def test_anny_phenotypes_change_the_body(anny_model):
    shapes = torch.cat([anny_model.shape_from(height=h) for h in (0.2, 0.5, 0.8)])
    h = _mesh_height(anny_model, shapes)
    assert float(h[1] - h[0]) > 0.1 and float(h[2] - h[1]) > 0.1  # measured: ~1.5, 1.83, 2.15 m
    child, adult = _mesh_height(anny_model, torch.cat([anny_model.shape_from(age_years=6), anny_model.shape_from()]))
    assert float(adult - child) > 0.3
    p = anny_model.zero_params(2)
    p["shape"] = torch.cat([anny_model.shape_from(weight=0.1), anny_model.shape_from(weight=0.9)])
    with torch.no_grad():
        v = anny_model(**p).vertices.double()
    f = anny_model.faces
    volume = torch.einsum("bij,bij->b", v[:, f[:, 0]], torch.cross(v[:, f[:, 1]], v[:, f[:, 2]], dim=2)) / 6
    assert float(volume[1]) > 1.15 * float(volume[0])  # heavier body, larger volume
    # gradients w.r.t. every phenotype
    s = anny_model.default_shape(1).requires_grad_(True)
    anny_model(**{**anny_model.zero_params(1), "shape": s}).vertices.square().sum().backward()
    assert bool((s.grad.abs() > 0).all())


def test_anny_pose_bone_map_is_exposed_and_consistent(anny_model):
    mapping = anny_model.pose_bone_map
    assert tuple(mapping) == POSE_JOINT_NAMES
    assert mapping == ANNY_POSE_BONES
    bones = [b for bs in mapping.values() for b in bs]
    assert len(bones) == len(set(bones))
    assert set(bones) <= set(anny_model.joint_names)
    assert len(anny_model.joint_names) == 104
    out = _rest(anny_model)
    # pose_joints are the driven bones' heads
    heads = dict(zip(anny_model.joint_names, out.joints[0], strict=True))
    assert torch.allclose(out.pose_joints[0, PJ["left_elbow"]], heads["lowerarm01.L"])
    assert torch.allclose(out.pose_joints[0, PJ["left_knee"]], heads["lowerleg01.L"])


def test_anny_chain_split_rotates_by_the_full_angle(anny_model):
    # "neck" drives neck01 + neck02 with half the angle each: the head turns by the full angle.
    p = anny_model.zero_params(1)
    rest = anny_model(**p)
    p["body_pose"][0, POSE_JOINT_NAMES.index("neck")] = torch.tensor([0.0, 0.5, 0.0])
    turned = anny_model(**p)
    eyes_rest = rest.coco18[0, [C18["LEye"], C18["REye"]]]
    eyes_turned = turned.coco18[0, [C18["LEye"], C18["REye"]]]
    d0, d1 = eyes_rest[0] - eyes_rest[1], eyes_turned[0] - eyes_turned[1]
    angle = math.atan2(float(d0[2] * d1[0] - d0[0] * d1[2]), float(d0[0] * d1[0] + d0[2] * d1[2]))
    assert abs(abs(angle) - 0.5) < 0.02


def test_anny_cache_holds_only_the_compact_file(anny_model, anny_cache_dir):
    files = sorted(p.name for p in anny_cache_dir.iterdir())
    assert files == [anny_cache_file(anny_cache_dir).name], files
    size_mb = anny_cache_file(anny_cache_dir).stat().st_size / 1e6
    assert 20 < size_mb < 120
    assert anny_model.cache_file == anny_cache_file(anny_cache_dir)


def test_anny_cache_build_reported_progress(anny_model):
    if not ANNY_BUILD.get("built"):
        pytest.skip("the Anny cache already existed; nothing was built in this session")
    fractions = [f for f, _ in ANNY_BUILD["progress"]]
    assert len(fractions) >= 5
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(isinstance(m, str) and m for _, m in ANNY_BUILD["progress"])
    assert ANNY_BUILD["listing"] == [anny_model.cache_file.name]  # intermediates deleted


def test_anny_second_construction_is_fast(anny_cache_dir, anny_model):
    calls = []
    start = time.monotonic()
    again = AnnyBody(cache_dir=anny_cache_dir, progress=lambda f, m: calls.append(f))
    elapsed = time.monotonic() - start
    assert calls == []  # nothing to build
    assert elapsed < 20.0
    p = random_params(again, 1, seed=2)
    assert torch.allclose(again(**p).vertices, anny_model(**p).vertices)


def test_anny_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("ANNY_CACHE_DIR", raising=False)
    monkeypatch.delenv("REFSD_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_anny_cache_dir() == tmp_path / "home" / ".cache" / "refsd" / "anny"
    monkeypatch.setenv("REFSD_CACHE_DIR", str(tmp_path / "refsd"))
    assert resolve_anny_cache_dir() == tmp_path / "refsd" / "anny"
    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path / "anny"))
    assert resolve_anny_cache_dir() == tmp_path / "anny"
    assert resolve_anny_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_anny_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RefSDError, match="ANNY_CACHE_DIR"):
        AnnyBody(cache_dir=blocker / "sub")


def test_anny_stale_build_leftovers_are_removed(tmp_path):
    old_dir, new_dir = tmp_path / ".anny-build-old", tmp_path / ".anny-build-new"
    old_part = tmp_path / ".refsd-anny-x.safetensors.abc.part"
    keep = tmp_path / "refsd-anny-keep.safetensors"
    for d in (old_dir, new_dir):
        d.mkdir()
        (d / "load_data_x.safetensors").write_bytes(b"x")
    old_part.write_bytes(b"x")
    keep.write_bytes(b"x")
    long_ago = time.time() - 7 * 3600
    for path in (old_dir, old_part, keep):
        os.utime(path, (long_ago, long_ago))
    _remove_stale_builds(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new_dir.name, keep.name])


def test_anny_keypoint_regressor_is_plain_tensors():
    import anny

    path = pathlib.Path(anny.__file__).parent / "data" / "keypoints" / "coco.pth"
    data = torch.load(path, weights_only=True, map_location="cpu")  # refuses arbitrary pickles
    assert all(isinstance(v, torch.Tensor) for v in data.values())
    assert {"nose", "left_heel", "right_big_toe"} <= set(data)


# ---------------------------------------------------------------------------------------
# SMPL-X backend
# ---------------------------------------------------------------------------------------


def test_smplx_matches_the_smplx_package(smplx_dir, smplx_model):
    """Our safe loader + forward equal smplx.SMPLX on the same (pickle-free) file."""
    import smplx

    ref = smplx.SMPLX(
        str(smplx_dir), gender="neutral", ext="npz", use_pca=False, use_face_contour=True, num_expression_coeffs=10
    )
    p = random_params(smplx_model, 2, scale=0.3, seed=4)
    p["expression"] = torch.randn(2, 10, generator=torch.Generator().manual_seed(1))
    ours = smplx_model(**p)
    out = ref(
        betas=p["shape"],
        global_orient=p["global_orient"],
        body_pose=p["body_pose"].reshape(2, -1),
        left_hand_pose=p["hand_pose"][:, 0].reshape(2, -1),
        right_hand_pose=p["hand_pose"][:, 1].reshape(2, -1),
        transl=torch.zeros(2, 3),
        expression=p["expression"],
        jaw_pose=torch.zeros(2, 3),
        leye_pose=torch.zeros(2, 3),
        reye_pose=torch.zeros(2, 3),
    )
    offset = p["transl"][:, None] - out.joints[:, :1]
    assert torch.allclose(ours.vertices, out.vertices + offset, atol=1e-5)
    assert torch.allclose(ours.joints, out.joints[:, :55] + offset, atol=1e-5)
    j = out.joints + offset
    body25 = j[:, [55, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65]]
    assert torch.allclose(ours.body25[:, 2:], body25[:, 2:], atol=1e-5)
    assert torch.allclose(ours.body25[:, 0], body25[:, 0], atol=1e-5)
    assert not torch.allclose(ours.body25[:, 1], body25[:, 1], atol=1e-3)  # neck != joint 12
    lhand = [20, 37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70]
    assert torch.allclose(ours.hands[:, 0], j[:, lhand], atol=1e-5)
    assert torch.allclose(ours.face[:, 17:], j[:, 76:127], atol=1e-5)
    assert torch.allclose(ours.face[:, :17], j[:, 127:144], atol=1e-5)
    assert bool(ours.kp_valid["face"].all())


def test_smplx_pca_hands(smplx_dir):
    full = get_body_model("smplx", model_dir=smplx_dir)
    pca = get_body_model("smplx", model_dir=smplx_dir, num_pca_comps=6)
    assert pca.hand_pose_shape == (2, 6) and full.hand_pose_shape == (2, 15, 3)
    p = pca.zero_params(1)
    coeffs = torch.zeros(1, 2, 6)
    coeffs[0, 0, 0] = 1.5
    a = pca(**{**p, "hand_pose": coeffs})
    data = load_smplx_npz(smplx_dir / "SMPLX_NEUTRAL.npz")
    aa = torch.zeros(1, 2, 45)
    aa[0, 0] = 1.5 * torch.as_tensor(data["hands_componentsl"][0])
    b = full(**{**full.zero_params(1), "hand_pose": aa.reshape(1, 2, 15, 3)})
    assert torch.allclose(a.vertices, b.vertices, atol=1e-5)
    rest = pca(**p)
    disp = (a.vertices - rest.vertices)[0].norm(dim=-1)
    assert float(disp[pca.part_mask("hand_l")].max()) > 0.01
    assert float(disp[~pca.part_mask("hand_l")].max()) < 1e-5
    flat = get_body_model("smplx", model_dir=smplx_dir, flat_hand_mean=True)
    assert not torch.allclose(flat(**flat.zero_params(1)).hands, rest.hands, atol=1e-3)


def test_smplx_expression_moves_face_vertices_only(smplx_model):
    assert smplx_model.expression_dim == 10
    for pose_scale in (0.0, 0.3):
        p = random_params(smplx_model, 1, scale=pose_scale, seed=6)
        rest = smplx_model(**p)
        expr = smplx_model(**{**p, "expression": torch.full((1, 10), 2.0)})
        disp = (expr.vertices - rest.vertices)[0].norm(dim=-1)
        moved = disp > 1e-5
        assert int(moved.sum()) > 50
        assert bool(smplx_model.part_mask("face")[moved].all())
        assert torch.allclose(expr.body25[:, 1:15], rest.body25[:, 1:15], atol=1e-5)  # body keypoints unmoved


def test_smplx_shape_and_gender(smplx_dir, smplx_model):
    p = smplx_model.zero_params(2)
    p["shape"][1, 0] = 2.0
    h = smplx_model(**p).vertices
    heights = h[..., 1].amax(-1) - h[..., 1].amin(-1)
    assert float(heights[1] - heights[0]) > 0.1
    male = get_body_model("smplx", model_dir=smplx_dir, gender="male")
    assert male.model_id == "smplx-male"
    hm = male(**male.zero_params(1)).vertices[0]
    assert float(hm[:, 1].max() - hm[:, 1].min()) > float(heights[0]) + 0.03
    with pytest.raises(RefSDError, match="SMPLX_FEMALE.npz"):
        get_body_model("smplx", model_dir=smplx_dir, gender="female")
    with pytest.raises(RefSDError, match="num_betas"):
        get_body_model("smplx", model_dir=smplx_dir, num_betas=11)


def test_smplx_missing_folder_names_path_files_and_site(tmp_path):
    missing = tmp_path / "models" / "smplx"
    with pytest.raises(RefSDError) as e:
        SMPLXBody(model_dir=missing)
    msg = str(e.value)
    assert str(missing) in msg and SMPLX_DOWNLOAD_URL in msg
    for fname in SMPLX_FILE_NAMES.values():
        assert fname in msg
    missing.mkdir(parents=True)
    with pytest.raises(RefSDError, match="SMPLX_NEUTRAL.npz") as e:
        SMPLXBody(model_dir=missing)
    assert str(missing / "SMPLX_NEUTRAL.npz") in str(e.value)


class _Tripwire:
    """Unpickling this object creates a marker file: proof that something unpickled it."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_smplx_pkl_is_refused_without_unpickling(tmp_path):
    import pickle

    marker = tmp_path / "UNPICKLED"
    (tmp_path / "SMPLX_NEUTRAL.pkl").write_bytes(pickle.dumps(_Tripwire(marker)))
    with pytest.raises(RefSDError) as e:
        get_body_model("smplx", model_dir=tmp_path)
    msg = str(e.value)
    assert "SMPLX_NEUTRAL.npz" in msg and SMPLX_DOWNLOAD_URL in msg and ".pkl" in msg
    with pytest.raises(RefSDError, match=SMPLX_DOWNLOAD_URL):
        get_body_model("smplx", model_dir=tmp_path / "SMPLX_NEUTRAL.pkl")
    assert not marker.exists()


def test_smplx_corrupt_npz_is_a_clear_error(tmp_path):
    (tmp_path / "SMPLX_NEUTRAL.npz").write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    with pytest.raises(RefSDError, match="not a readable .npz"):
        get_body_model("smplx", model_dir=tmp_path)
    # A truncated copy of a valid file.
    good = write_synthetic_smplx(tmp_path / "good")
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "SMPLX_NEUTRAL.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RefSDError, match="corrupt|readable"):
        get_body_model("smplx", model_dir=cut)


def _rewrite(src: pathlib.Path, dst_dir: pathlib.Path, **changes) -> pathlib.Path:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k in [k for k, v in arrays.items() if v is None]:
        del arrays[k]
    dst_dir.mkdir(parents=True, exist_ok=True)
    path = dst_dir / src.name
    np.savez(path, **arrays)
    return path


def test_smplx_object_arrays_are_never_unpickled(tmp_path, smplx_dir):
    src = smplx_dir / "SMPLX_NEUTRAL.npz"
    marker = tmp_path / "UNPICKLED"
    trap = np.empty(1, dtype=object)
    trap[0] = _Tripwire(marker)
    # In a needed key: refused.
    bad = _rewrite(src, tmp_path / "bad", f=trap)
    with pytest.raises(RefSDError, match="pickled object array"):
        get_body_model("smplx", model_dir=bad.parent)
    # In a key the model does not need (like joint2num in official files): ignored, not unpickled.
    extra = _rewrite(src, tmp_path / "extra", joint2num=trap)
    model = get_body_model("smplx", model_dir=extra.parent)
    assert model.num_vertices > 10475
    assert not marker.exists()
    with zipfile.ZipFile(extra) as zf:
        assert "joint2num.npy" in zf.namelist()


def test_smplx_wrong_arrays_are_clear_errors(tmp_path, smplx_dir):
    src = smplx_dir / "SMPLX_NEUTRAL.npz"
    with np.load(src) as z:
        jreg = z["J_regressor"]
    cases = {
        "no_key": ({"lmk_faces_idx": None}, "lmk_faces_idx"),
        "short_jreg": ({"J_regressor": jreg[:54]}, "J_regressor"),
        "small_mesh": ({"v_template": np.zeros((6890, 3), np.float32)}, "10475"),
    }
    for name, (changes, needle) in cases.items():
        path = _rewrite(src, tmp_path / name, **changes)
        with pytest.raises(RefSDError, match=needle):
            get_body_model("smplx", model_dir=path.parent)


def test_smplx_model_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SMPLX_MODEL_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_smplx_model_dir() == tmp_path / "home" / ".cache" / "refsd" / "smplx"
    monkeypatch.setenv("SMPLX_MODEL_DIR", str(tmp_path / "env"))
    assert resolve_smplx_model_dir() == tmp_path / "env"
    assert resolve_smplx_model_dir(tmp_path / "x") == tmp_path / "x"


# ---------------------------------------------------------------------------------------
# Synthetic SMPL-X file
# ---------------------------------------------------------------------------------------


def test_synthetic_smplx_file_has_smplx_semantics(smplx_dir, smplx_model):
    data = load_smplx_npz(smplx_dir / "SMPLX_NEUTRAL.npz")
    assert data["v_template"].shape[0] >= 10475
    parents = data["kintree_table"][0].astype(np.int64)
    assert tuple(parents[1:]) == SMPLX_PARENTS[1:]
    jreg = data["J_regressor"]
    assert np.allclose(jreg.sum(1), 1.0, atol=1e-4)
    out = _rest(smplx_model)
    j = dict(zip(smplx_model.joint_names, out.joints[0], strict=True))
    assert j["head"][1] > j["neck"][1] > j["spine3"][1] > j["spine2"][1] > j["spine1"][1] > j["pelvis"][1]
    assert j["left_hip"][0] > 0 > j["right_hip"][0]
    assert j["left_knee"][1] > j["left_ankle"][1] and j["left_foot"][2] > j["left_ankle"][2]
    assert j["left_wrist"][0] > j["left_elbow"][0] > j["left_shoulder"][0] > j["left_collar"][0] > 0
    assert j["left_index3"][0] > j["left_index1"][0] > j["left_wrist"][0]
    assert j["left_eye_smplhf"][0] > 0 > j["right_eye_smplhf"][0]
    b = {n: out.body25[0, i] for n, i in B25.items()}
    assert b["Nose"][2] > b["REye"][2] - 0.01 and b["Nose"][1] < b["REye"][1]
    assert b["LEar"][0] > b["LEye"][0] > 0 > b["REye"][0] > b["REar"][0]
    assert b["LBigToe"][2] > b["LHeel"][2] + 0.15 and b["LSmallToe"][0] > b["LBigToe"][0]
    assert float((b["LHeel"] - b["LAnkle"]).norm()) < 0.12
    face = out.face[0]
    brows, nose_tip, mouth = face[17:27, 1].mean(), face[30], face[48:68]
    assert brows > nose_tip[1] > mouth[:, 1].max() and mouth[:, 1].min() > face[8, 1]
    assert float(face[36:42, 0].mean()) < 0 < float(face[42:48, 0].mean())  # right eye on -X


def test_synthetic_smplx_is_deterministic_and_written_where_asked(tmp_path):
    a = write_synthetic_smplx(tmp_path / "a", seed=3)
    b = write_synthetic_smplx(tmp_path / "b", seed=3)
    assert a.name == "SMPLX_NEUTRAL.npz" and a.parent == tmp_path / "a"
    with np.load(a) as za, np.load(b) as zb:
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), k
    with pytest.raises(RefSDError, match="gender"):
        write_synthetic_smplx(tmp_path / "c", gender="other")

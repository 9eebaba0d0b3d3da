"""The body fitter on keypoints projected from known 3D bodies (Anny and a synthetic SMPL-X)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from refsd.body import get_body_model
from refsd.errors import RefSDError
from refsd.fit import BodyFit, BodyFitter, FitError, FitOptions
from refsd.fit.api import fit_pose_keypoint
from refsd.fit.camera import Camera
from refsd.fit.handle import BodyModelSpec
from refsd.fit.kinematics import axis_angle_to_matrix, matrix_to_axis_angle, rot_x, rot_y
from refsd.fit.metrics import pa_mpjpe
from refsd.keypoints import KeypointError, from_array, to_pose_keypoint

IMG = 512
CAM = Camera.from_fov(IMG, IMG, 60.0)


@pytest.fixture(scope="module")
def anny(anny_model):
    return anny_model


@pytest.fixture(scope="module")
def fitter(anny):
    return BodyFitter(anny)


def pose_person(model, yaw_deg=30.0, dist=4.0, x=0.0, pitch_deg=10.0, body_pose=None, shape=None):
    """Ground-truth parameters and camera-space BODY_25 (+ pixels) of one person."""
    R = rot_x(torch.tensor(math.radians(-pitch_deg), dtype=torch.float64)) @ rot_x(
        torch.tensor(math.pi, dtype=torch.float64)
    ) @ rot_y(torch.tensor(math.radians(yaw_deg), dtype=torch.float64))
    p = model.zero_params(1)
    p["global_orient"] = matrix_to_axis_angle(R)[None].float()
    if body_pose is not None:
        p["body_pose"] = body_pose.float()[None]
    if shape is not None:
        p["shape"] = shape.float()[None]
    p["transl"] = torch.tensor([[x, 0.1, dist]])
    with torch.no_grad():
        out = model(**p)
    kp = out.body25[0].double()
    uv = torch.stack([CAM.fx * kp[:, 0] / kp[:, 2] + CAM.cx, CAM.fy * kp[:, 1] / kp[:, 2] + CAM.cy], -1)
    return p, out, uv.numpy()


def kp_array(uv: np.ndarray, conf: float = 0.9) -> np.ndarray:
    return np.concatenate([uv, np.full((len(uv), 1), conf)], 1)


def fitted_output(model, person):
    kw = {"dtype": model.dtype}
    p = model.zero_params(1)
    p.update(global_orient=torch.tensor([person.global_orient], **kw), body_pose=torch.tensor([person.body_pose], **kw),
             shape=torch.tensor([person.shape], **kw), transl=torch.tensor([person.transl], **kw))
    with torch.no_grad():
        return model(**p)


def test_analytic_jacobian_matches_finite_differences(fitter):
    fitter._setup_eval(CAM)
    fitter._active = fitter.proxy
    g = torch.Generator().manual_seed(0)
    B, K = 2, fitter.proxy.num_keypoints
    R = axis_angle_to_matrix(torch.randn(B, 3, generator=g, dtype=torch.float64))
    A = torch.randn(B, 21, 3, generator=g, dtype=torch.float64) * 0.3
    T = torch.tensor([[0.1, 0.2, 4.0], [0.0, -0.1, 3.0]], dtype=torch.float64)
    S = fitter.proxy.shape0.expand(B, -1).clone() + 0.05
    fitter._mu = A.clone() * 0.5
    obs = torch.rand(B, K, 2, generator=g, dtype=torch.float64) * IMG
    sw = torch.rand(B, K, generator=g, dtype=torch.float64) * 0.1
    r, J = fitter._eval(R, A, T, S, obs, sw, True)
    n, h = J.shape[2], 1e-6

    def ev(d):
        return fitter._eval(R @ axis_angle_to_matrix(d[:, :3]), A + d[:, 3:66].reshape(B, 21, 3), T + d[:, 66:69],
                            S + d[:, 69:], obs, sw, False)[0]

    Jn = torch.zeros_like(J)
    for i in range(n):
        d = torch.zeros(B, n, dtype=torch.float64)
        d[:, i] = h
        Jn[:, :, i] = (ev(d) - ev(-d)) / (2 * h)
    torch.testing.assert_close(J, Jn, atol=1e-6 * float(J.abs().max()), rtol=1e-5)


def test_proxy_reproduces_the_real_model(anny, fitter):
    """The distilled keypoint model must agree with the real mesh model on poses in range."""
    g = torch.Generator().manual_seed(3)
    body_pose = fitter.prior.sample_rotvec(6, g).float()
    p = anny.zero_params(6)
    p["body_pose"] = body_pose
    with torch.no_grad():
        out = anny(**p)
    R = axis_angle_to_matrix(torch.cat([torch.zeros(6, 1, 3), body_pose[:, None].squeeze(1)], 1).double())
    kp = fitter.proxy.keypoints(R, torch.zeros(6, 3, dtype=torch.float64), fitter.proxy.shape0.expand(6, -1))
    err = (kp[:, :25] - out.body25.double()).norm(dim=-1)
    assert float(err.median()) < 0.01 and float(err.max()) < 0.05, f"proxy error median {err.median():.4f} m"


@pytest.mark.parametrize("yaw", [20.0, 160.0, 250.0])
def test_fit_recovers_pose_front_and_back(anny, fitter, yaw):
    prior = fitter.prior
    alpha = prior.mean.clone()
    alpha[3, 0] = math.radians(40)  # left knee bent
    alpha[15, 2] += math.radians(50)  # left arm raised a bit
    gt_params, gt, uv = pose_person(anny, yaw_deg=yaw, body_pose=prior.to_rotvec(alpha))
    frame = from_array(kp_array(uv)[None], fmt="body25", image_size=(IMG, IMG))
    fit = fitter.fit_frame(frame, camera=CAM)
    assert fit.num_people == 1 and fit.people[0].quality == "good"
    person = fit.people[0]
    assert person.reproj_error_px < 2.0
    out = fitted_output(anny, person)
    err = pa_mpjpe(out.coco18[0].double().numpy(), gt.coco18[0].double().numpy())
    assert err < 0.06, f"PA-MPJPE {err * 1000:.0f} mm"
    # facing: the body's forward axis (+Z of the model) turned into camera space has the GT's sign
    fwd_fit = axis_angle_to_matrix(torch.tensor(person.global_orient))[:, 2]
    fwd_gt = axis_angle_to_matrix(gt_params["global_orient"][0].double())[:, 2]
    assert float(fwd_fit @ fwd_gt.float()) > 0.7, "front/back ambiguity resolved the wrong way"
    # depth within 15% (scale is only known through the body-size prior)
    assert abs(person.transl[2] - 4.0) < 0.6


def test_two_people_batched_and_missing_points_ignored(anny, fitter):
    _, gt_a, uv_a = pose_person(anny, yaw_deg=10, dist=3.0, x=-0.8)
    _, gt_b, uv_b = pose_person(anny, yaw_deg=200, dist=6.0, x=1.0)
    a, b = kp_array(uv_a), kp_array(uv_b)
    a[[3, 4, 10, 11]] = 0.0  # missing: written as 0,0,0 by detectors
    b[[6, 7]] = [np.nan, np.nan, 0.9]  # NaN coordinates
    b[13] = [-1, -1, 0.9]  # the -1 marker
    frame = from_array(np.stack([a, b]), fmt="body25", image_size=(IMG, IMG))
    fit = fitter.fit_frame(frame, camera=CAM)
    assert fit.num_people == 2
    for person, gt, kp in zip(fit.people, (gt_a, gt_b), (a, b), strict=True):
        out = fitted_output(anny, person)
        assert pa_mpjpe(out.coco18[0].double().numpy(), gt.coco18[0].double().numpy()) < 0.08
        proj = CAM.project(out.body25[0].double())
        # a missing point was not pulled to (0, 0): its prediction stays near the truth
        missing = ~(np.isfinite(kp[:, 0]) & (kp[:, 2] > 0) & (kp[:, 0] > 0))
        assert float(proj[torch.from_numpy(missing)].norm(dim=-1).min()) > 50
    assert fit.people[0].transl[2] < fit.people[1].transl[2]  # nearer person is nearer


def test_person_with_too_few_joints_is_skipped_with_warning(anny, fitter):
    _, _, uv = pose_person(anny)
    good = kp_array(uv)
    few = np.zeros_like(good)
    few[[0, 1, 2]] = good[[0, 1, 2]]
    data = to_pose_keypoint([from_array(np.stack([few, good]), fmt="body25", image_size=(IMG, IMG), min_joints=0)])
    fits = fit_pose_keypoint(fitter, data, [(IMG, IMG)])
    assert fits[0].num_people == 1 and fits[0].people[0].keypoint_index == 1
    assert fits[0].skipped and fits[0].skipped[0][0] == 0
    assert any("skipped" in w for w in fits[0].warnings)


def test_normalized_canvas_and_pixel_inputs_give_the_same_fit(anny, fitter):
    _, _, uv = pose_person(anny)
    frame = from_array(kp_array(uv)[None], fmt="body25", image_size=(IMG, IMG))
    pixels = to_pose_keypoint([frame])
    normalized = to_pose_keypoint([frame], coords="normalized")
    half = json.loads(json.dumps(pixels))  # the same keypoints on a 256 px canvas
    for person in half[0]["people"]:
        for key, arr in person.items():
            person[key] = [v / 2 if i % 3 != 2 else v for i, v in enumerate(arr)]
    half[0]["canvas_width"] = half[0]["canvas_height"] = 256
    fits = [fit_pose_keypoint(fitter, d, [(IMG, IMG)])[0].people[0] for d in (pixels, normalized, half)]
    for f in fits[1:]:
        np.testing.assert_allclose(f.transl, fits[0].transl, atol=1e-6)
        np.testing.assert_allclose(f.body_pose, fits[0].body_pose, atol=1e-6)


def test_frame_count_mismatch_and_empty_input(fitter):
    frame = {"people": [], "canvas_width": IMG, "canvas_height": IMG}
    with pytest.raises(KeypointError, match="frames"):
        fit_pose_keypoint(fitter, [frame, frame, frame], [(IMG, IMG)] * 2)
    with pytest.raises(KeypointError):
        fit_pose_keypoint(fitter, [], [(IMG, IMG)])
    fits = fit_pose_keypoint(fitter, [frame], [(IMG, IMG)] * 2)  # one frame, no people, two images
    assert [f.num_people for f in fits] == [0, 0]


def test_body_fit_json_round_trip_is_lossless(anny, fitter):
    _, _, uv = pose_person(anny)
    fit = fitter.fit_frame(from_array(kp_array(uv)[None], fmt="body25", image_size=(IMG, IMG)), camera=CAM)
    text = fit.to_json()
    back = BodyFit.from_json(text)
    assert back == fit and back.to_json() == text
    with pytest.raises(FitError, match="not a RefSD body fit"):
        BodyFit.from_json('{"people": []}')
    with pytest.raises(FitError, match="line 1"):
        BodyFit.from_json("{oops")


def test_mask_down_weights_keypoints_outside_it(anny, fitter):
    _, gt, uv = pose_person(anny)
    kp = kp_array(uv)
    kp[4, :2] = [500, 20]  # a detector mistake far from the person
    mask = torch.zeros(IMG, IMG)
    x0, y0 = uv.min(0).astype(int) - 20
    x1, y1 = uv.max(0).astype(int) + 20
    mask[max(y0, 0) : y1, max(x0, 0) : x1] = 1
    frame = from_array(kp[None], fmt="body25", image_size=(IMG, IMG))
    with_mask = fitter.fit_frame(frame, camera=CAM, mask=mask).people[0]
    out = fitted_output(anny, with_mask)
    assert pa_mpjpe(out.coco18[0].double().numpy(), gt.coco18[0].double().numpy()) < 0.07


def test_smplx_backend_fits_too(tmp_path):
    from refsd.testing import write_synthetic_smplx

    write_synthetic_smplx(tmp_path, gender="neutral", seed=1)
    model = get_body_model("smplx", model_dir=str(tmp_path))
    fitter = BodyFitter(model, FitOptions(yaws=4, families=("mean", "sit")))
    _, gt, uv = pose_person(model, yaw_deg=40)
    fit = fitter.fit_frame(from_array(kp_array(uv)[None], fmt="body25", image_size=(IMG, IMG)), camera=CAM)
    out = fitted_output(model, fit.people[0])
    assert fit.people[0].reproj_error_px < 3.0
    assert pa_mpjpe(out.coco18[0].double().numpy(), gt.coco18[0].double().numpy()) < 0.06


def test_unknown_body_model_names_the_choices():
    with pytest.raises(RefSDError, match="anny"):
        BodyModelSpec("smpl", gender="neutral").model()
    with pytest.raises(RefSDError, match="neutral"):
        BodyModelSpec("anny", gender="other")

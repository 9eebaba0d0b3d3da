"""Avatars from fits + attributes: attribute resolution, batch checks, size keeping."""

from __future__ import annotations

import math

import pytest
import torch

from refsd.fit import BodyFit, PersonFit
from refsd.fit.camera import Camera
from refsd.fit.kinematics import matrix_to_axis_angle, rot_x
from refsd.people import AttributeDistribution, AttributesError, PersonAttributes
from refsd.render.avatar import AttributeSource, avatar_fit, render_avatars


def make_fit(model, n_people: int = 2, size: int = 256) -> BodyFit:
    cam = Camera.from_fov(size, size, 60.0)
    glob = matrix_to_axis_angle(rot_x(torch.tensor(math.pi, dtype=torch.float64))).tolist()
    people = [
        PersonFit(global_orient=glob, body_pose=[[0.0, 0.0, 0.0]] * 21, shape=model.default_shape(1)[0].tolist(),
                  transl=[-0.6 + 1.2 * i, 0.0, 4.0 + i], reproj_error_px=1.0, quality="good", keypoint_index=i)
        for i in range(n_people)
    ]
    return BodyFit(model_id=model.model_id, image_width=size, image_height=size,
                   camera={"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy}, people=people)


def test_mismatched_attribute_batches_fail_clearly(anny_model):
    fits = [make_fit(anny_model, 2), make_fit(anny_model, 1)]
    a = PersonAttributes()
    with pytest.raises(AttributesError, match="1 image"):
        AttributeSource(per_image=[[a, a]]).resolve(fits)
    with pytest.raises(AttributesError, match="image 1: attributes for 2 people but 1"):
        AttributeSource(per_image=[[a, a], [a, a]]).resolve(fits)
    with pytest.raises(AttributesError, match="exactly one"):
        AttributeSource(fixed=a, distribution=AttributeDistribution())
    assert [len(x) for x in AttributeSource(fixed=a).resolve(fits)] == [2, 1]


def test_sampled_people_are_stable_per_person(anny_model):
    src = AttributeSource(distribution=AttributeDistribution(), seed=5)
    two = src.resolve([make_fit(anny_model, 2)])[0]
    one = src.resolve([make_fit(anny_model, 1)])[0]
    assert one[0] == two[0]  # adding a person does not change the first one
    assert two[0] != two[1]


def test_keep_size_keeps_the_projected_footprint(anny_model):
    fit = make_fit(anny_model, 1)
    short = PersonAttributes(gender="female", age=12, height=0.1)
    kept = avatar_fit(anny_model, fit, [short], keep_size=True)
    own = avatar_fit(anny_model, fit, [short], keep_size=False)
    assert kept.people[0].scale > 1.2 and own.people[0].scale == 1.0
    (kp_passes,), _ = render_avatars(anny_model, [fit], AttributeSource(per_image=[[short]]), keep_size=True)
    (own_passes,), _ = render_avatars(anny_model, [fit], AttributeSource(per_image=[[short]]), keep_size=False)

    def rows(alpha):
        ys = torch.nonzero(alpha > 0.5)[:, 0]
        return int(ys.min()), int(ys.max())

    from refsd.render.passes import render_passes

    orig = render_passes(anny_model, fit)
    top, bottom = rows(orig.alpha)
    k_top, k_bottom = rows(kp_passes.alpha)
    o_top, o_bottom = rows(own_passes.alpha)
    # as tall on the image as the fitted body and over the same rows (the pelvis projects to the same
    # pixel; a child's pelvis sits relatively lower, so the silhouette can shift a little)
    assert abs((k_bottom - k_top) - (bottom - top)) <= 0.04 * (bottom - top)
    overlap = min(k_bottom, bottom) - max(k_top, top)
    assert overlap >= 0.85 * (bottom - top)
    assert (o_bottom - o_top) < 0.85 * (bottom - top)  # a child is visibly smaller without keep_size

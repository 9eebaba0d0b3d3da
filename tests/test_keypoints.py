"""Tests for refsd.keypoints: POSE_KEYPOINT parsing, format conversions and writing back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refsd.errors import KeypointError, RefSDError
from refsd.keypoints import (
    BODY25_NAMES,
    COCO17_NAMES,
    COCO18_NAMES,
    FOOT6_NAMES,
    KEYPOINT_ARRAYS,
    FrameKeypoints,
    PersonKeypoints,
    body25_to_coco18,
    coco17_to_coco18,
    coco18_to_body25,
    coco18_to_coco17,
    count_people,
    face68_to_face70,
    from_array,
    image_sizes_from_batch,
    load_pose_keypoint_file,
    parse_pose_keypoint,
    parts_to_wholebody133,
    present_mask,
    to_array,
    to_pose_keypoint,
    validate_pose_keypoint,
    wholebody133_to_parts,
)

C18 = {n: i for i, n in enumerate(COCO18_NAMES)}
C17 = {n: i for i, n in enumerate(COCO17_NAMES)}
B25 = {n: i for i, n in enumerate(BODY25_NAMES)}

# A standing person facing the camera on a 512x768 canvas (the subject's right side is on the image's left).
BODY_PX = np.array(
    [
        (256, 100),  # Nose
        (256, 160),  # Neck
        (216, 160),  # RShoulder
        (200, 240),  # RElbow
        (190, 310),  # RWrist
        (296, 160),  # LShoulder
        (312, 240),  # LElbow
        (322, 310),  # LWrist
        (230, 330),  # RHip
        (226, 450),  # RKnee
        (224, 570),  # RAnkle
        (282, 330),  # LHip
        (286, 450),  # LKnee
        (288, 570),  # LAnkle
        (246, 90),  # REye
        (266, 90),  # LEye
        (236, 95),  # REar
        (276, 95),  # LEar
    ],
    dtype=np.float64,
)
CANVAS = (512, 768)


def flat(points, conf=1.0) -> list[float]:
    pts = np.asarray(points, dtype=np.float64)
    confs = np.broadcast_to(np.asarray(conf, dtype=np.float64), (len(pts),))
    return [float(v) for (x, y), c in zip(pts, confs, strict=True) for v in (x, y, c)]


def hand_at(wrist, dx=1.0) -> np.ndarray:
    """21 hand points fanning out from the wrist."""
    return np.array([(wrist[0] + dx * 2 * i, wrist[1] + 3 * i) for i in range(21)], dtype=np.float64)


def frame(people, canvas=CANVAS) -> dict:
    return {"people": people, "canvas_width": canvas[0], "canvas_height": canvas[1]}


def dwpose_person(body=BODY_PX, scale=(1.0, 1.0)) -> dict:
    s = np.asarray(scale)
    return {
        "pose_keypoints_2d": flat(body * s),
        "face_keypoints_2d": None,
        "hand_left_keypoints_2d": flat(hand_at(BODY_PX[C18["LWrist"]]) * s),
        "hand_right_keypoints_2d": flat(hand_at(BODY_PX[C18["RWrist"]], -1.0) * s),
    }


def assert_same_points(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, equal_nan=True)


# --- existing public API (used by the Load Pose Keypoints node) ---------------------------------


def test_existing_api_still_works(tmp_path):
    data = [frame([dwpose_person()]), frame([])]
    path = tmp_path / "pose.json"
    path.write_text(json.dumps(data))
    loaded = load_pose_keypoint_file(path)
    assert count_people(loaded) == [1, 0]
    assert validate_pose_keypoint(data[0]) == [data[0]]  # a single frame is wrapped
    assert set(KEYPOINT_ARRAYS) >= {"pose_keypoints_2d", "foot_keypoints_2d", "face_keypoints_2d"}
    with pytest.raises(KeypointError, match="line 1"):
        (tmp_path / "bad.json").write_text("[{")
        load_pose_keypoint_file(tmp_path / "bad.json")
    assert issubclass(KeypointError, RefSDError)


# --- pixels vs normalized ------------------------------------------------------------------


def test_dwpose_pixels_and_openpose_normalized_give_same_pixels():
    dw = parse_pose_keypoint([frame([dwpose_person()])], [CANVAS])
    op = parse_pose_keypoint([frame([dwpose_person(scale=(1 / 512, 1 / 768))])], [CANVAS])
    assert dw[0].coords == "pixels"
    assert op[0].coords == "normalized"
    assert_same_points(dw[0].people[0].body[:, :2], BODY_PX)
    assert_same_points(op[0].people[0].body, dw[0].people[0].body)
    assert_same_points(op[0].people[0].hand_left, dw[0].people[0].hand_left)
    assert dw[0].warnings == [] and op[0].warnings == []


def test_normalized_uses_the_image_size_when_there_is_no_canvas():
    data = [{"people": [dwpose_person(scale=(1 / 512, 1 / 768))]}]
    out = parse_pose_keypoint(data, (1024, 1536))
    assert out[0].coords == "normalized"
    assert_same_points(out[0].people[0].body[:, :2], BODY_PX * 2)
    with pytest.raises(KeypointError, match="image_sizes"):
        parse_pose_keypoint(data)  # neither canvas nor image size: names the fix


def test_coords_override():
    normalized = [frame([dwpose_person(scale=(1 / 512, 1 / 768))])]
    pixels = [frame([dwpose_person()])]
    out = parse_pose_keypoint(normalized, coords="normalized")
    assert_same_points(out[0].people[0].body[:, :2], BODY_PX)
    forced = parse_pose_keypoint(normalized, coords="pixels")
    assert forced[0].coords == "pixels"
    assert np.nanmax(forced[0].people[0].body[:, :2]) < 1.0
    assert any("look like normalized" in w for w in forced[0].warnings)
    with pytest.raises(KeypointError, match="coords='auto' or coords='pixels'"):
        parse_pose_keypoint(pixels, coords="normalized")
    with pytest.raises(KeypointError, match="'auto', 'pixels', 'normalized'"):
        parse_pose_keypoint(pixels, coords="relative")


# --- canvas vs image --------------------------------------------------------------------------


def test_canvas_rescaled_onto_larger_image():
    person = dwpose_person()
    person["foot_keypoints_2d"] = flat([(280, 600), (292, 596), (286, 580), (220, 600), (212, 596), (224, 580)])
    out = parse_pose_keypoint([frame([person])], [(1024, 1536)])
    f = out[0]
    assert f.canvas == (512, 768) and f.image_size == (1024, 1536)
    p = f.people[0]
    assert_same_points(p.body[:, :2], BODY_PX * 2)
    assert p.body[C18["LWrist"]].tolist() == [644.0, 620.0, 1.0]
    assert p.foot[0].tolist() == [560.0, 1200.0, 1.0]
    assert_same_points(p.hand_right[:, :2], hand_at(BODY_PX[C18["RWrist"]], -1.0) * 2)
    assert any("rescaled by (2, 2)" in w for w in f.warnings)
    assert not any("aspect" in w for w in f.warnings)


def test_canvas_with_other_aspect_ratio_warns():
    out = parse_pose_keypoint([frame([dwpose_person()])], [(1024, 1024)])
    p = out[0].people[0]
    assert p.body[C18["Nose"]].tolist() == [512.0, pytest.approx(100.0 * 1024 / 768), 1.0]
    assert any("aspect ratio" in w and "pose detector" in w for w in out[0].warnings)


# --- missing points ---------------------------------------------------------------------------


def test_missing_and_low_confidence_points_are_nan_never_origin():
    body = flat(BODY_PX)
    body[3 * C18["LEar"] : 3 * C18["LEar"] + 3] = [0.0, 0.0, 0.0]  # producers' missing point
    body[3 * C18["REar"] + 2] = 0.1  # below min_confidence
    body[3 * C18["Nose"] + 2] = 0.31
    out = parse_pose_keypoint([frame([{"pose_keypoints_2d": body}])])
    p = out[0].people[0]
    for j in ("LEar", "REar"):
        assert np.isnan(p.body[C18[j], 0]) and np.isnan(p.body[C18[j], 1])
        assert p.body[C18[j], 2] == 0.0
    assert p.body[C18["Nose"]].tolist() == [256.0, 100.0, 0.31]
    assert p.num_confident() == 16
    assert present_mask(p.body).sum() == 16
    # with a lower threshold the 0.1 point is kept
    low = parse_pose_keypoint([frame([{"pose_keypoints_2d": body}])], min_confidence=0.05)
    assert low[0].people[0].body[C18["REar"]].tolist() == [236.0, 95.0, 0.1]
    # missing points never contribute to the bounding box
    assert p.bbox(include_parts=False) == (190.0, 90.0, 322.0, 570.0)


def test_nan_and_negative_coordinates_are_missing():
    body = flat(BODY_PX)
    body[3 * C18["Nose"]] = float("nan")  # NaN x with confidence 1
    body[3 * C18["REye"] : 3 * C18["REye"] + 3] = [-1.0, -1.0, 1.0]  # -1 marker with a confidence
    body[3 * C18["LEye"] : 3 * C18["LEye"] + 3] = [-1.0, -1.0, 0.0]  # -1 marker, conf 0
    body[3 * C18["REar"] + 1] = None  # null entry
    out = parse_pose_keypoint([frame([{"pose_keypoints_2d": body}])])
    p = out[0].people[0]
    for j in ("Nose", "REye", "LEye", "REar"):
        assert np.isnan(p.body[C18[j], :2]).all() and p.body[C18[j], 2] == 0.0
    assert p.num_confident() == 14
    neg = [w for w in out[0].warnings if "negative" in w]
    assert len(neg) == 1 and "1 point(s)" in neg[0] and "person 0" in neg[0]


# --- people -----------------------------------------------------------------------------------


def test_person_with_few_joints_is_skipped_and_others_kept():
    sparse = flat(BODY_PX, conf=[1, 1, 1] + [0] * 15)  # nose, neck, right shoulder only
    data = [frame([{"pose_keypoints_2d": sparse}, dwpose_person()])]
    out = parse_pose_keypoint(data)
    f = out[0]
    assert f.num_people == 1
    assert f.people[0].index == 1
    assert_same_points(f.people[0].body[:, :2], BODY_PX)
    assert len(f.skipped) == 1 and f.skipped[0][0] == 0
    assert "only 3 confident body joint(s)" in f.skipped[0][1] and "min_joints" in f.skipped[0][1]
    assert any("person 0 skipped" in w for w in f.warnings)
    # with min_joints=3 both people are kept
    assert parse_pose_keypoint(data, min_joints=3)[0].num_people == 2


def test_frame_without_people_passes_through():
    out = parse_pose_keypoint([frame([]), frame([dwpose_person()])])
    assert [f.num_people for f in out] == [0, 1]
    assert any("no people" in w and "passes through" in w for w in out[0].warnings)
    with pytest.raises(KeypointError, match="no person with at least 4"):
        parse_pose_keypoint([frame([])], require_people=True)
    # require_people is satisfied by any frame with a person
    assert len(parse_pose_keypoint([frame([]), frame([dwpose_person()])], require_people=True)) == 2


def test_empty_pose_keypoint_raises_with_fix():
    for data in ([], None):
        with pytest.raises(KeypointError, match="pose detector"):
            parse_pose_keypoint(data)


# --- frames vs images -------------------------------------------------------------------------


def test_single_frame_is_broadcast_to_every_image():
    out = parse_pose_keypoint([frame([dwpose_person()])], [(512, 768), (1024, 1536), (512, 768)])
    assert len(out) == 3
    assert [f.frame_index for f in out] == [0, 0, 0]
    assert_same_points(out[1].people[0].body[:, :2], BODY_PX * 2)
    assert_same_points(out[2].people[0].body[:, :2], BODY_PX)
    assert all(any("1 frame for 3 images" in w for w in f.warnings) for f in out)


def test_frames_pair_with_images():
    moved = dwpose_person(body=BODY_PX + [10, 0])
    out = parse_pose_keypoint([frame([dwpose_person()]), frame([moved])], [(512, 768), (512, 768)])
    assert [f.frame_index for f in out] == [0, 1]
    assert out[1].people[0].body[0, 0] == 266.0


def test_more_frames_than_images_raises():
    data = [frame([dwpose_person()])] * 3
    with pytest.raises(KeypointError, match=r"3 keypoint frames but there are only 2 images") as e:
        parse_pose_keypoint(data, [(512, 768)] * 2)
    assert "same image batch" in str(e.value)


def test_fewer_frames_than_images_raises():
    data = [frame([dwpose_person()])] * 2
    with pytest.raises(KeypointError, match=r"2 keypoint frames but there are 3 images") as e:
        parse_pose_keypoint(data, [(512, 768)] * 3)
    assert "whole image batch" in str(e.value)


def test_image_sizes_from_batch_and_single_size():
    images = np.zeros((2, 768, 512, 3), dtype=np.float32)  # ComfyUI IMAGE layout (B, H, W, C)
    assert image_sizes_from_batch(images) == [(512, 768), (512, 768)]
    with pytest.raises(KeypointError, match="batch, height, width, channels"):
        image_sizes_from_batch(np.zeros((768, 512, 3)))
    # one (W, H) applies to every frame without a count check
    out = parse_pose_keypoint([frame([dwpose_person()])] * 2, (1024, 1536))
    assert [f.image_size for f in out] == [(1024, 1536)] * 2
    with pytest.raises(KeypointError, match="width and height must be positive"):
        parse_pose_keypoint([frame([dwpose_person()])], [(0, 768)])


# --- SDPose -----------------------------------------------------------------------------------


def sdpose_person() -> dict:
    """As ComfyUI's SDPose node writes it: real scores, feet, 70-pt face, hands packed right-first."""
    rng = np.random.default_rng(0)
    scores = np.full(18, 0.9)
    scores[C18["LEar"]] = 0.2  # low score, real coordinates: must become missing
    right_hand = hand_at(BODY_PX[C18["RWrist"]], -1.0)
    left_hand = hand_at(BODY_PX[C18["LWrist"]])
    face = np.concatenate([rng.uniform(230, 280, size=(68, 2)), BODY_PX[[C18["REye"], C18["LEye"]]]])
    return {
        "pose_keypoints_2d": flat(BODY_PX, scores),
        "foot_keypoints_2d": flat([(290, 600), (300, 596), (286, 580), (220, 600), (210, 596), (224, 580)], 0.8),
        "face_keypoints_2d": flat(face, 0.7),
        "hand_left_keypoints_2d": flat(right_hand, 0.6),  # right-first packing
        "hand_right_keypoints_2d": flat(left_hand, 0.6),
    }


def test_sdpose_right_first_hands():
    data = [frame([sdpose_person()])]
    out = parse_pose_keypoint(data, hand_order="right_first")
    p = out[0].people[0]
    assert_same_points(p.hand_right[:, :2], hand_at(BODY_PX[C18["RWrist"]], -1.0))
    assert_same_points(p.hand_left[:, :2], hand_at(BODY_PX[C18["LWrist"]]))
    assert p.hand_right[0, 2] == pytest.approx(0.6)
    assert not any("swapped" in w for w in out[0].warnings)
    assert np.isnan(p.body[C18["LEar"], 0]) and p.body[C18["LEar"], 2] == 0.0
    assert p.body[C18["Nose"], 2] == pytest.approx(0.9)
    assert p.foot.shape == (6, 3) and p.foot[0].tolist() == [290.0, 600.0, 0.8]
    assert p.face.shape == (70, 3)
    # body25 takes its feet from foot_keypoints_2d (same order as BODY_25 19..24)
    assert p.body25[B25["LBigToe"]].tolist() == [290.0, 600.0, 0.8]
    assert p.body25[B25["RHeel"]].tolist() == [224.0, 580.0, 0.8]


def test_sdpose_with_default_hand_order_warns_and_keeps_arrays_as_labelled():
    out = parse_pose_keypoint([frame([sdpose_person()])])  # default left_first
    p = out[0].people[0]
    # default: hand_left_keypoints_2d is taken as the left hand (here that is SDPose's right hand)
    assert_same_points(p.hand_left[:, :2], hand_at(BODY_PX[C18["RWrist"]], -1.0))
    assert any("hand_order='right_first'" in w for w in out[0].warnings)


def test_hand_order_rejects_unknown_value():
    with pytest.raises(KeypointError, match="'left_first', 'right_first'"):
        parse_pose_keypoint([frame([dwpose_person()])], hand_order="auto")


# --- format conversions (hand-checked indices) ----------------------------------------------------


def indexed(k: int) -> np.ndarray:
    """Point i at (i, 100 + i), confidence 1: the source index is readable from x."""
    return np.array([(i, 100 + i, 1.0) for i in range(k)])


def test_coco17_to_coco18_indices():
    out = coco17_to_coco18(indexed(17))
    assert out.shape == (18, 3)
    expected = {
        "Nose": 0,
        "RShoulder": 6,
        "RElbow": 8,
        "RWrist": 10,
        "LShoulder": 5,
        "LElbow": 7,
        "LWrist": 9,
        "RHip": 12,
        "RKnee": 14,
        "RAnkle": 16,
        "LHip": 11,
        "LKnee": 13,
        "LAnkle": 15,
        "REye": 2,
        "LEye": 1,
        "REar": 4,
        "LEar": 3,
    }
    for name, src in expected.items():
        assert out[C18[name]].tolist() == [src, 100 + src, 1.0], name
    assert out[C18["Neck"]].tolist() == [5.5, 105.5, 1.0]  # mean of the shoulders
    # neck is missing when a shoulder is
    a = indexed(17)
    a[C17["right_shoulder"], 2] = 0
    assert np.isnan(coco17_to_coco18(a)[C18["Neck"], 0])
    # batched (N, 17, 3)
    assert coco17_to_coco18(np.stack([indexed(17)] * 3)).shape == (3, 18, 3)


def test_coco18_coco17_round_trip():
    c17 = coco18_to_coco17(indexed(18))
    assert c17[C17["left_shoulder"], 0] == C18["LShoulder"]
    assert c17[C17["right_eye"], 0] == C18["REye"]
    assert c17[C17["left_ankle"], 0] == C18["LAnkle"]
    back = coco17_to_coco18(c17)
    keep = [i for i in range(18) if i != C18["Neck"]]
    assert_same_points(back[keep], indexed(18)[keep])


def test_body25_conversions():
    body, foot = body25_to_coco18(indexed(25))
    assert body[C18["RHip"]].tolist() == [9, 109, 1.0]
    assert body[C18["LAnkle"]].tolist() == [14, 114, 1.0]
    assert body[C18["LEar"]].tolist() == [18, 118, 1.0]
    assert body[C18["Neck"]].tolist() == [1, 101, 1.0]
    assert foot[:, 0].tolist() == [19, 20, 21, 22, 23, 24]
    assert [BODY25_NAMES[19 + i] for i in range(6)] == [
        "LBigToe",
        "LSmallToe",
        "LHeel",
        "RBigToe",
        "RSmallToe",
        "RHeel",
    ]
    assert FOOT6_NAMES[0] == "left_big_toe" and FOOT6_NAMES[5] == "right_heel"
    b25 = coco18_to_body25(body, foot)
    assert b25[B25["MidHip"]].tolist() == [(9 + 12) / 2, 100 + (9 + 12) / 2, 1.0]
    keep = [i for i in range(25) if i != B25["MidHip"]]
    assert_same_points(b25[keep], indexed(25)[keep])
    # without feet they are missing, and MidHip needs both hips
    body[C18["LHip"], 2] = 0
    b = coco18_to_body25(body)
    assert np.isnan(b[B25["MidHip"], 0]) and (b[19:, 2] == 0).all() and np.isnan(b[19:, :2]).all()


def test_wholebody133_parts():
    parts = wholebody133_to_parts(indexed(133))
    assert parts["body"][C18["LWrist"], 0] == C17["left_wrist"] == 9
    assert parts["foot"][:, 0].tolist() == list(range(17, 23))
    assert parts["face"].shape == (70, 3) and parts["face"][0, 0] == 23 and parts["face"][67, 0] == 90
    assert parts["face"][68, 0] == C17["right_eye"] and parts["face"][69, 0] == C17["left_eye"]  # pupils
    assert parts["hand_left"][0, 0] == 91 and parts["hand_left"][20, 0] == 111
    assert parts["hand_right"][0, 0] == 112 and parts["hand_right"][20, 0] == 132
    back = parts_to_wholebody133(parts["body"], parts["foot"], parts["face"], parts["hand_left"], parts["hand_right"])
    assert_same_points(back, indexed(133))


def test_face68_to_face70_uses_body_eyes():
    body = np.column_stack([BODY_PX, np.ones(18)])
    face = face68_to_face70(np.column_stack([np.full((68, 2), 250.0), np.ones(68)]), body)
    assert face[68].tolist() == [246.0, 90.0, 1.0]  # REye
    assert face[69].tolist() == [266.0, 90.0, 1.0]  # LEye
    no_body = face68_to_face70(np.ones((68, 3)))
    assert np.isnan(no_body[68:, :2]).all() and (no_body[68:, 2] == 0).all()
    # a 68-point face in POSE_KEYPOINT is accepted and padded the same way
    person = dwpose_person()
    person["face_keypoints_2d"] = flat(np.full((68, 2), 250.0))
    p = parse_pose_keypoint([frame([person])])[0].people[0]
    assert p.face.shape == (70, 3) and p.face[69].tolist() == [266.0, 90.0, 1.0]


@pytest.mark.parametrize("fmt", ["body25", "coco17", "wholebody133"])
def test_other_formats_in_pose_keypoints_2d(fmt):
    body = np.column_stack([BODY_PX, np.ones(18)])
    if fmt == "body25":
        arr = coco18_to_body25(body)
    elif fmt == "coco17":
        arr = coco18_to_coco17(body)
    else:
        arr = parts_to_wholebody133(body, hand_left=np.column_stack([hand_at(BODY_PX[7]), np.ones(21)]))
    pose = [float(v) if np.isfinite(v) else 0.0 for v in arr.reshape(-1)]
    out = parse_pose_keypoint([frame([{"pose_keypoints_2d": pose}])])
    p = out[0].people[0]
    if fmt == "body25":
        assert_same_points(p.body, body)
        assert p.foot is not None and not present_mask(p.foot).any()
    else:
        # the neck is derived from the shoulders: (216 + 296) / 2
        assert p.body[C18["Neck"]].tolist() == [256.0, 160.0, 1.0]
        assert_same_points(np.delete(p.body, 1, axis=0), np.delete(body, 1, axis=0))
    if fmt == "wholebody133":
        assert_same_points(p.hand_left[:, :2], hand_at(BODY_PX[7]))


# --- arrays ----------------------------------------------------------------------------------


def test_from_array_and_to_array():
    two = np.stack([BODY_PX, BODY_PX + [100, 0]])  # (2, 18, 2): no confidence column
    f = from_array(two, "coco18", canvas=(512, 768), image_size=(1024, 1536))
    assert isinstance(f, FrameKeypoints) and f.num_people == 2
    assert f.people[1].body[0].tolist() == [712.0, 200.0, 1.0]
    arr = to_array(f, "coco17")
    assert arr.shape == (2, 17, 3)
    assert arr[1, C17["left_wrist"]].tolist() == [(322 + 100) * 2, 620.0, 1.0]
    # normalized input, BODY_25 feet
    b25 = coco18_to_body25(np.column_stack([BODY_PX, np.ones(18)]))
    b25[19:25] = [[290, 600, 1], [300, 596, 1], [286, 580, 1], [220, 600, 1], [210, 596, 1], [224, 580, 1]]
    b25[B25["MidHip"]] = [256, 330, 1]
    g = from_array(b25 / [512, 768, 1], "body25", image_size=(512, 768), coords="auto")
    assert g.coords == "normalized"
    assert_same_points(g.people[0].foot, b25[19:25])
    assert_same_points(g.people[0].body25, b25)
    with pytest.raises(KeypointError, match="expected 25"):
        from_array(np.zeros((18, 3)), "body25", image_size=(512, 768))
    with pytest.raises(KeypointError, match="'coco18', 'body25'"):
        from_array(np.zeros((18, 3)), "openpose", image_size=(512, 768))
    assert to_array([], "body25").shape == (0, 25, 3)


def test_person_keypoints_normalizes_missing_points():
    body = np.column_stack([BODY_PX, np.ones(18)])
    body[0] = [0.0, 0.0, 0.0]
    p = PersonKeypoints(body=body)
    assert np.isnan(p.body[0, :2]).all() and p.body[0, 2] == 0.0
    assert p.bbox() == (190.0, 90.0, 322.0, 570.0)
    assert PersonKeypoints(body=np.zeros((18, 3))).bbox() is None
    with pytest.raises(KeypointError, match="expected 18"):
        PersonKeypoints(body=np.zeros((17, 3)))


# --- writing back ------------------------------------------------------------------------------


def test_round_trip_through_pose_keypoint():
    person = sdpose_person()
    frames = parse_pose_keypoint([frame([person]), frame([])], [(1024, 1536)] * 2, hand_order="right_first")
    written = to_pose_keypoint(frames)
    assert written[0]["canvas_width"] == 1024 and written[0]["canvas_height"] == 1536
    w = written[0]["people"][0]
    # missing points are written like the producers do: 0, 0, 0
    le = C18["LEar"]
    assert w["pose_keypoints_2d"][3 * le : 3 * le + 3] == [0.0, 0.0, 0.0]
    assert w["pose_keypoints_2d"][0:3] == [512.0, 200.0, pytest.approx(0.9)]
    assert len(w["foot_keypoints_2d"]) == 18 and len(w["face_keypoints_2d"]) == 210
    # default left_first writing: the right hand goes into hand_right_keypoints_2d
    assert w["hand_right_keypoints_2d"][0:2] == [380.0, 620.0]
    assert written[1]["people"] == []
    json.dumps(written)  # plain JSON-serializable types
    again = parse_pose_keypoint(written, [(1024, 1536)] * 2)
    a, b = frames[0].people[0], again[0].people[0]
    for name in ("body", "foot", "hand_left", "hand_right", "face"):
        assert_same_points(getattr(b, name), getattr(a, name))
    # SDPose-style writing swaps the hand arrays back
    sd = to_pose_keypoint(frames, hand_order="right_first")[0]["people"][0]
    assert sd["hand_left_keypoints_2d"] == w["hand_right_keypoints_2d"]


def test_write_normalized_and_binary_confidence():
    frames = parse_pose_keypoint([frame([sdpose_person()])], hand_order="right_first")
    norm = to_pose_keypoint(frames, coords="normalized", confidence="binary")
    pose = norm[0]["people"][0]["pose_keypoints_2d"]
    assert pose[0:3] == [0.5, pytest.approx(100 / 768), 1.0]
    assert max(pose) <= 1.0
    back = parse_pose_keypoint(norm)
    assert back[0].coords == "normalized"
    assert_same_points(back[0].people[0].body[:, :2], frames[0].people[0].body[:, :2])
    assert set(back[0].people[0].body[:, 2].tolist()) == {0.0, 1.0}

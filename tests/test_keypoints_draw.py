"""OpenPose skeleton drawing follows the ControlNet training conventions (see shared CONTROLNET.md)."""

import numpy as np

from refsd.keypoints.draw import BODY_COLORS, HAND_EDGE_COLORS, LIMB_COLORS, draw_pose

# RGB values of the 20 hand-edge colours as OpenCV renders matplotlib's hsv_to_rgb(i/20) * 255
HAND_TABLE = [
    (255, 0, 0), (255, 77, 0), (255, 153, 0), (255, 229, 0), (204, 255, 0), (128, 255, 0), (51, 255, 0),
    (0, 255, 25), (0, 255, 102), (0, 255, 179), (0, 255, 255), (0, 178, 255), (0, 102, 255), (0, 25, 255),
    (51, 0, 255), (128, 0, 255), (204, 0, 255), (255, 0, 230), (255, 0, 153), (255, 0, 77),
]


def test_colour_tables_match_reference():
    assert tuple(BODY_COLORS[0]) == (255, 0, 0) and tuple(BODY_COLORS[17]) == (255, 0, 85)
    assert tuple(LIMB_COLORS[0]) == (153, 0, 0)  # Neck-RShoulder
    assert tuple(LIMB_COLORS[1]) == (153, 51, 0)
    assert tuple(LIMB_COLORS[16]) == (153, 0, 102)
    diffs = np.abs(HAND_EDGE_COLORS.astype(int) - np.array(HAND_TABLE)).max()
    assert diffs <= 1  # the table is +-1 on exact .5 values


def _person(points: dict[int, tuple[float, float]]) -> np.ndarray:
    body = np.full((18, 3), np.nan)
    body[:, 2] = 0
    for k, (x, y) in points.items():
        body[k] = (x, y, 1.0)
    return body


def test_limb_and_dot_geometry():
    img = draw_pose(200, 100, [{"body": _person({1: (50, 50), 2: (150, 50)})}])
    assert img.shape == (100, 200, 3) and img.dtype == np.uint8
    # limb Neck-RShoulder: 0.6 x colour, about 9 px wide (half-width 4) at its middle
    col = img[:, 100]
    rows = np.nonzero((col == LIMB_COLORS[0]).all(axis=1))[0]
    assert 8 <= len(rows) <= 10 and rows.min() >= 45 and rows.max() <= 55
    # joint dots: full colour, 9 px across, centred on the keypoint, drawn over the limb
    assert tuple(img[50, 50]) == (255, 85, 0) and tuple(img[50, 150]) == (255, 170, 0)
    row = img[50]
    dot = np.nonzero((row == BODY_COLORS[1]).all(axis=1))[0]
    assert dot.min() == 46 and dot.max() == 54
    # nothing else drawn; background black
    assert tuple(img[5, 5]) == (0, 0, 0)
    assert not (img[:, :40] != 0).any()


def test_missing_points_are_not_drawn():
    body = _person({0: (20, 20)})
    body[1] = (0.0, 0.0, 0.0)  # a producer's "missing" marker must not draw a dot at the origin
    img = draw_pose(40, 40, [{"body": body}], threshold=0.3)
    assert tuple(img[20, 20]) == (255, 0, 0)
    assert tuple(img[0, 0]) == (0, 0, 0)


def test_hands_and_face():
    hand = np.zeros((21, 3))
    hand[:, 0] = np.linspace(20, 80, 21)
    hand[:, 1] = 30
    hand[:, 2] = 1
    face = np.array([[60.0, 70.0, 1.0]] * 70)
    img = draw_pose(100, 100, [{"body": None, "hand_left": hand, "face": face}])
    assert tuple(img[30, 20]) == (0, 0, 255)  # hand dots are blue
    assert tuple(img[70, 60]) == (255, 255, 255)  # face dots are white
    assert tuple(img[70, 63]) == (255, 255, 255) and tuple(img[70, 64]) == (0, 0, 0)  # radius 3

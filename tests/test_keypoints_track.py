"""refsd.keypoints.track: people crossing (one hides the other), a missed person coming back, a
person entering, chunks carried over by the tracker's state, empty and 1-frame videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refsd.keypoints import FrameKeypoints, PersonKeypoints
from refsd.keypoints.track import PeopleTracker, TrackerOptions, count_id_switches, track_frames

STANDING = np.array([(100, 40), (100, 70), (80, 70), (75, 110), (72, 150), (120, 70), (125, 110), (128, 150),
                     (90, 150), (90, 210), (90, 270), (110, 150), (110, 210), (110, 270), (95, 35), (105, 35),
                     (88, 38), (112, 38)], float)


def walker(t: int, x0: float, vx: float, y0: float = 0.0, scale: float = 1.0, rng=None) -> np.ndarray:
    """(18, 3) a person walking sideways: legs and arms swing, 1.5 px of keypoint noise."""
    p = STANDING.copy() * scale
    swing = 18 * scale * np.sin(2 * np.pi * t / 16)
    p[[9, 10], 0] += swing
    p[[12, 13], 0] -= swing
    p[[3, 4], 0] -= 0.5 * swing
    p[[6, 7], 0] += 0.5 * swing
    p[:, 0] += x0 + vx * t
    p[:, 1] += y0
    if rng is not None:
        p += rng.normal(0, 1.5, p.shape)
    return np.concatenate([p, np.ones((18, 1))], axis=1)


def person(body: np.ndarray, hidden=()) -> PersonKeypoints:
    b = body.copy()
    for j in hidden:
        b[j] = (np.nan, np.nan, 0.0)
    return PersonKeypoints(body=b)


def crossing(frames: int = 60, seed: int = 0):
    """Two people walking towards each other on the same line and crossing: while they overlap the
    far one (B) loses every joint the near one covers. Returns (frames, true ids per detection)."""
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for t in range(frames):
        a = walker(t, 0, 8, rng=rng)
        b = walker(t, 480, -8, y0=6, scale=0.95, rng=rng)
        covered = [j for j in range(18) if abs(b[j, 0] - np.median(a[:, 0])) < 30]
        people, ids = [person(a)], [0]
        if len(covered) < 16:
            people.append(person(b, covered))
            ids.append(1)
        order = rng.permutation(len(people))  # detection order carries no identity
        out.append(FrameKeypoints(people=[people[i] for i in order], image_size=(640, 320)))
        truth.append([ids[i] for i in order])
    return out, truth


def test_two_people_crossing_keep_their_ids():
    frames, truth = crossing()
    ids = track_frames(frames)
    assert count_id_switches(truth, ids) == 0
    assert {i for f in ids for i in f} == {0, 1}
    # B was hidden entirely for some frames, and continued after them
    assert any(len(f.people) == 1 for f in frames)


def test_a_missed_person_comes_back_with_the_same_id_and_a_long_gap_starts_a_new_one():
    rng = np.random.default_rng(1)
    frames = []
    for t in range(40):
        people = [person(walker(t, 0, 5, rng=rng))]
        if not 10 <= t < 16 and not 22 <= t < 36:
            people.append(person(walker(t, 400, -3, rng=rng)))
        frames.append(FrameKeypoints(people=people, image_size=(640, 320)))
    ids = track_frames(frames, options=TrackerOptions(max_gap=8))
    second = [f[1] for f in ids if len(f) == 2]
    assert ids[9][1] == ids[16][1] == 1  # 6 frames missing: bridged
    assert ids[36][1] == 2 and second[-1] == 2  # 14 frames missing > max_gap: a new track
    assert all(f[0] == 0 for f in ids)


def test_a_person_entering_gets_a_new_id_and_boxes_help():
    rng = np.random.default_rng(2)
    frames, boxes = [], []
    for t in range(30):
        people = [person(walker(t, 0, 4, rng=rng))]
        if t >= 12:
            people.append(person(walker(t - 12, 560, -6, rng=rng)))
        frames.append(FrameKeypoints(people=people, image_size=(640, 320)))
        boxes.append([(float(p.body[:, 0].min()), float(p.body[:, 1].min()), float(p.body[:, 0].max()),
                       float(p.body[:, 1].max())) for p in people])
    for b in (None, boxes):
        ids = track_frames(frames, boxes=b)
        assert ids[:12] == [[0]] * 12 and all(f == [0, 1] for f in ids[12:])


def test_chunks_carry_the_tracks_over():
    frames, truth = crossing(frames=50, seed=3)
    whole = track_frames(frames)
    tr = PeopleTracker()
    first = track_frames(frames[:23], tracker=tr)
    restored = PeopleTracker.from_state(json.loads(json.dumps(tr.state())))  # through JSON, as between chunks
    second = track_frames(frames[23:], tracker=restored)
    assert first + second == whole and count_id_switches(truth, whole) == 0


def test_empty_and_single_frames_and_bad_input():
    assert track_frames([]) == []
    assert track_frames([FrameKeypoints(people=[], image_size=(64, 64))]) == [[]]
    one = FrameKeypoints(people=[person(walker(0, 0, 0))], image_size=(640, 320))
    assert track_frames([one]) == [[0]]
    lone = np.full((18, 3), np.nan)
    lone[:, 2] = 0
    lone[0] = (10, 10, 1)  # a single joint: cannot be tracked, gets an id of its own every frame
    f = FrameKeypoints(people=[PersonKeypoints(body=lone)], image_size=(64, 64))
    assert track_frames([f, f]) == [[0], [1]]
    with pytest.raises(Exception, match="one box per person"):
        PeopleTracker().update(one.people, boxes=[])
    with pytest.raises(Exception, match="max_gap"):
        TrackerOptions(max_gap=-1)
    assert count_id_switches([[0, 1], [1, 0]], [[5, 6], [6, 7]]) == 1

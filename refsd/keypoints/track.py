"""Who is who from frame to frame: a multi-person tracker on keypoints (and detector boxes).

:class:`PeopleTracker` is online: :meth:`PeopleTracker.update` takes one frame's people and
returns a track id per person. Each track remembers the last place of every joint it saw and
a constant-velocity motion of its centre (an exponential average of the frame-to-frame
displacement), so its joints are predicted where they should be now, also across frames in
which the person was not found. People are assigned to tracks by the Hungarian algorithm
(scipy's ``linear_sum_assignment``) on the OKS of each person against each track's prediction
(:mod:`refsd.keypoints.similarity`), blended with the box IoU when the detector's boxes are
given; pairs below ``min_similarity`` are never matched. A person matched by no track starts a
new one (birth, ids counting up); a track unmatched for more than ``max_gap`` frames ends
(death) -- within that gap a person who reappears (occlusion, a missed detection) keeps their
id. The state is JSON-safe (:meth:`~PeopleTracker.state` / :meth:`~PeopleTracker.from_state`),
so a long video processed in chunks keeps its tracks.

:func:`track_frames` tracks a whole sequence; :func:`count_id_switches` is the CLEAR-MOT ID
switch count against ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import KeypointError
from .frames import FrameKeypoints, PersonKeypoints
from .parse import parse_pose_keypoint
from .similarity import box_of, oks, person_area, person_joints
from .validate import validate_pose_keypoint

__all__ = ["TrackerOptions", "PeopleTracker", "track_frames", "track_pose_keypoint", "count_id_switches", "record_sighting"]


@dataclass
class TrackerOptions:
    """``min_similarity``: lowest OKS (or OKS/IoU blend) of a match; ``max_gap``: frames a track may
    go unseen and still be continued; ``min_confidence``: joints below it are not used;
    ``box_weight``: weight of the box IoU against OKS when boxes are given; ``velocity_decay``:
    weight of the newest displacement in the centre's motion (0..1)."""

    min_similarity: float = 0.1
    max_gap: int = 10
    min_confidence: float = 0.3
    box_weight: float = 0.5
    velocity_decay: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_similarity < 1.0 or not 0.0 <= self.box_weight <= 1.0:
            raise KeypointError(f"min_similarity must be in [0, 1) and box_weight in [0, 1]; got "
                                f"{self.min_similarity}, {self.box_weight}")
        if self.max_gap < 0 or not 0.0 < self.velocity_decay <= 1.0:
            raise KeypointError(f"max_gap must be >= 0 and velocity_decay in (0, 1]; got {self.max_gap}, "
                                f"{self.velocity_decay}")


@dataclass
class _Track:
    id: int
    joints: np.ndarray  # (24, 3): last known x, y of each joint (NaN where never seen), seen flag
    centre: np.ndarray  # (2,)
    velocity: np.ndarray  # (2,) px per frame
    last: int  # frame index last seen
    area: float
    box: tuple[float, float, float, float] | None = None
    hits: int = 1

    def predict(self, frame: int) -> tuple[np.ndarray, tuple | None]:
        shift = self.velocity * (frame - self.last)
        j = self.joints.copy()
        j[:, :2] += shift
        box = None if self.box is None else (self.box[0] + shift[0], self.box[1] + shift[1],
                                             self.box[2] + shift[0], self.box[3] + shift[1])
        return j, box


def _centre(joints: np.ndarray) -> np.ndarray:
    return np.nanmean(joints[joints[:, 2] > 0, :2], axis=0)


def _iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


@dataclass
class PeopleTracker:
    """Online tracker (module docstring). ``update(people, boxes=None) -> [track id per person]``."""

    options: TrackerOptions = field(default_factory=TrackerOptions)
    next_id: int = 0
    frame: int = -1
    tracks: list[_Track] = field(default_factory=list)

    def update(self, people: Sequence[PersonKeypoints], boxes: Sequence | None = None) -> list[int]:
        """Assign this frame's ``people`` (and their detector ``boxes`` (x0, y0, x1, y1), optional)
        to tracks; returns one track id per person, in order."""
        from scipy.optimize import linear_sum_assignment

        opt = self.options
        self.frame += 1
        t = self.frame
        self.tracks = [tr for tr in self.tracks if t - tr.last <= opt.max_gap + 1]
        if boxes is not None and len(boxes) != len(people):
            raise KeypointError(f"{len(people)} people but {len(boxes)} boxes in frame {t}; give one box per person")
        dets = [person_joints(p, opt.min_confidence) for p in people]
        dboxes = [tuple(map(float, b)) if b is not None else None for b in boxes] if boxes is not None else \
            [box_of(d) for d in dets]
        ids: list[int | None] = [None] * len(people)
        usable = [i for i, d in enumerate(dets) if (d[:, 2] > 0).sum() >= 2]
        if self.tracks and usable:
            sim = np.zeros((len(self.tracks), len(usable)))
            for a, tr in enumerate(self.tracks):
                pred, pbox = tr.predict(t)
                for b, i in enumerate(usable):
                    s = oks(pred, dets[i], tr.area)
                    if boxes is not None:
                        s = (1 - opt.box_weight) * s + opt.box_weight * _iou(pbox, dboxes[i])
                    sim[a, b] = s
            rows, cols = linear_sum_assignment(-sim)
            for a, b in zip(rows, cols, strict=True):
                if sim[a, b] >= opt.min_similarity:
                    i = usable[b]
                    ids[i] = self.tracks[a].id
                    self._continue(self.tracks[a], dets[i], dboxes[i], t)
        for i in usable:
            if ids[i] is None:  # birth
                ids[i] = self.next_id
                d = dets[i]
                self.tracks.append(_Track(self.next_id, d.copy(), _centre(d), np.zeros(2), t, person_area(d),
                                          dboxes[i]))
                self.next_id += 1
        for i in range(len(people)):
            if ids[i] is None:  # fewer than two joints: cannot be placed; a track of its own, never continued
                ids[i] = self.next_id
                self.next_id += 1
        return [int(x) for x in ids]

    def _continue(self, tr: _Track, d: np.ndarray, box, t: int) -> None:
        seen = d[:, 2] > 0
        c = _centre(d)
        # the motion from the joints seen now and known before (the median: robust to a partly hidden
        # person, whose visible centre jumps when joints appear or vanish)
        both = seen & (tr.joints[:, 2] > 0)
        dt = max(1, t - tr.last)
        step = np.median(d[both, :2] - tr.joints[both, :2], axis=0) / dt if both.any() else (c - tr.centre) / dt
        k = self.options.velocity_decay if tr.hits > 1 else 1.0
        tr.velocity = (1 - k) * tr.velocity + k * step
        # joints not seen now keep their last place, carried along by the motion since then
        tr.joints[:, :2] += tr.velocity * (t - tr.last)
        tr.joints[seen] = d[seen]
        tr.centre, tr.last, tr.box, tr.hits = c, t, box, tr.hits + 1
        tr.area = person_area(d) if seen.sum() >= 4 else tr.area

    # -- state across chunks -----------------------------------------------------------------
    def state(self) -> dict:
        """JSON-safe state (ids, last places, motion), for :meth:`from_state`."""
        return {"next_id": self.next_id, "frame": self.frame, "options": vars(self.options).copy(),
                "tracks": [{"id": tr.id, "joints": np.where(np.isfinite(tr.joints), tr.joints, None).tolist(),
                            "centre": tr.centre.tolist(), "velocity": tr.velocity.tolist(), "last": tr.last,
                            "area": tr.area, "box": list(tr.box) if tr.box else None, "hits": tr.hits}
                           for tr in self.tracks]}

    @classmethod
    def from_state(cls, state: dict) -> PeopleTracker:
        try:
            tracks = [_Track(int(d["id"]), np.array(d["joints"], dtype=float), np.array(d["centre"], float),
                             np.array(d["velocity"], float), int(d["last"]), float(d["area"]),
                             tuple(d["box"]) if d["box"] else None, int(d["hits"])) for d in state["tracks"]]
            return cls(TrackerOptions(**state["options"]), int(state["next_id"]), int(state["frame"]), tracks)
        except (KeyError, TypeError, ValueError) as e:
            raise KeypointError(f"not a PeopleTracker state: {e}") from e


def track_frames(frames: Sequence[FrameKeypoints], boxes: Sequence[Sequence] | None = None,
                 options: TrackerOptions | None = None, tracker: PeopleTracker | None = None) -> list[list[int]]:
    """Track id of every person of every frame (``boxes``: per frame, per person, optional;
    ``tracker``: continue an earlier chunk's tracker)."""
    tr = tracker or PeopleTracker(options or TrackerOptions())
    return [tr.update(f.people, None if boxes is None else boxes[i]) for i, f in enumerate(frames)]


def track_pose_keypoint(pose_keypoint, options: TrackerOptions | None = None, tracker: PeopleTracker | None = None,
                        coords: str = "auto") -> tuple[list[dict], list[list[int | None]]]:
    """A video's POSE_KEYPOINT (one frame per video frame, in order) with a ``track_id`` on every
    person the tracker can place (a person with fewer than two usable joints gets none), and the
    ids per frame and person. The input is not changed: a copy is returned, in its own format
    and coordinates (other readers ignore the extra key)."""
    import copy

    frames = validate_pose_keypoint(pose_keypoint)
    parsed = parse_pose_keypoint(frames, coords=coords, min_confidence=(options or TrackerOptions()).min_confidence,
                                 min_joints=2)
    ids = track_frames(parsed, options=options, tracker=tracker)
    out = copy.deepcopy(frames)
    per_frame: list[list[int | None]] = []
    for f, frame, tids in zip(out, parsed, ids, strict=True):
        row: list[int | None] = [None] * len(f.get("people") or [])
        for p, tid in zip(frame.people, tids, strict=True):
            f["people"][p.index]["track_id"] = int(tid)
            row[p.index] = int(tid)
        per_frame.append(row)
    return out, per_frame


def record_sighting(tracks: dict, track_id, frame: int, attributes=None) -> dict:
    """Count one sighting of ``track_id`` at ``frame`` (frames in order) in ``tracks`` (id -> ``{"frames",
    "attributes", "first", "last", "missing"}``, JSON-safe): ``missing`` gathers the frames between two
    sightings (the person hidden there, or missed and left unreplaced). Returns the track's entry."""
    t = tracks.setdefault(track_id, {"frames": 0, "attributes": attributes, "first": frame, "last": frame,
                                     "missing": []})
    t["missing"] += list(range(t["last"] + 1, frame))
    t["frames"] += 1
    t["last"] = frame
    return t


def count_id_switches(truth: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> int:
    """CLEAR-MOT ID switches: per frame, per ground-truth person (``truth[t][k]``, the true
    identity of detection ``k``), a switch when the track id it gets differs from the one it
    had when last seen."""
    last: dict[int, int] = {}
    switches = 0
    for gt, pred in zip(truth, predicted, strict=True):
        for g, p in zip(gt, pred, strict=True):
            if g in last and last[g] != p:
                switches += 1
            last[g] = p
    return switches

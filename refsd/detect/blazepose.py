"""Find the people in a photo: MediaPipe BlazePose run in torch, several people per image.

:class:`PersonDetector` runs the pose detector (``pose_detection.tflite``) on the letterboxed
photo, merges its boxes with weighted NMS, then runs the landmark model (``lite`` / ``full`` /
``heavy``) once per person on a rotated 256 x 256 crop of that person. Each person gives 33
landmarks with visibility, a presence score and a soft person mask (coat and hair included),
warped back onto the photo. :class:`Detections` turns them into RefSD's keypoint frame
(OpenPose COCO-18 plus the BODY_25 heels and big toes, real confidences) and masks.

The networks run through :class:`refsd.detect.tflite.TFLiteModel` on the caller's device; the
files come from :func:`refsd.detect.files.find_model_file` (nothing is downloaded here).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import RefSDError
from ..keypoints import FrameKeypoints, PersonKeypoints
from . import decode
from .files import LANDMARK_VARIANTS, find_model_files
from .tflite import TFLiteModel

#: BlazePose landmark index for each OpenPose COCO-18 joint (neck = mean of the shoulders: None).
COCO18_FROM_BLAZEPOSE = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
#: BlazePose index for each FOOT6 point (left big toe, left small toe, left heel, right ...);
#: BlazePose has no small toes.
FOOT6_FROM_BLAZEPOSE = (31, None, 29, 32, None, 30)
NUM_LANDMARKS = 33
#: The landmark model's auxiliary alignment points (``pose_landmarks_to_roi.pbtxt``): hip centre
#: and full-body scale point, the same roles as the detector's keypoints 0 and 1.
ALIGN_HIPS, ALIGN_SCALE = 33, 34
LANDMARK_SIZE = 256
#: Two masks sharing more than this fraction of the smaller one are one person (a tile that saw
#: only part of someone, e.g. the cameraman's hands and camera with the heavy model: 36 %).
DUPLICATE_OVERLAP = 0.3
#: A followed person's visible landmarks span at least this fraction of their crop's side.
FOLLOW_MIN_EXTENT = 0.3
#: A person of the previous frame is found again (not followed) when a detected person's landmarks lie
#: within this fraction of their size (median point distance: a step between frames, not a neighbour).
FOLLOW_MATCH = 0.2
#: A followed person the landmark model doubts is kept while their landmarks stay within this
#: fraction of their size of the previous frame's (median point distance), for at most
#: FOLLOW_MAX_WEAK frames in a row, with at least FOLLOW_MIN_POINTS visible points in the frame.
FOLLOW_KEEP = 0.1
FOLLOW_MAX_WEAK = 8
FOLLOW_MIN_POINTS = 6
#: Tiles smaller than this (pixels of the photo) are not worth a detector pass.
MIN_TILE = 96


class DetectError(RefSDError):
    """The detector cannot run on this input (bad image, bad argument)."""


@dataclass
class DetectedPerson:
    """One person found in the photo (coordinates in photo pixels, ``x`` right, ``y`` down).

    Attributes:
        score: the detector's score (0..1) after weighted NMS.
        presence: the landmark model's pose-presence score (0..1) on the person's crop.
        box: the detector's box ``(x0, y0, x1, y1)``.
        roi: the landmark crop ``(cx, cy, side, rotation)`` (rotation in radians).
        landmarks: ``(33, 5)`` BlazePose landmarks ``x, y, z, visibility, presence`` (z in the
            scale of x, smaller = nearer the camera; visibility and presence 0..1).
        mask: ``(H, W)`` float 0..1, the person's segmentation (0 outside the crop).
        align: MediaPipe's two alignment points (hip centre, full-body scale point), ``((x, y), (x, y))``:
            where the next frame's landmark crop goes (``follow``).
        followed: found by following the previous frame's person (``follow``), not by the detector;
            then ``score`` is the presence and ``box`` the landmarks' bounds.
        weak: frames in a row this followed person was kept on their pose alone (the landmark
            model's presence below ``min_presence``).
    """

    score: float
    presence: float
    box: tuple[float, float, float, float]
    roi: tuple[float, float, float, float]
    landmarks: np.ndarray
    mask: torch.Tensor
    align: tuple | None = None
    followed: bool = False
    weak: int = 0

    def keypoints(self, index: int = 0, width: int | None = None, height: int | None = None) -> PersonKeypoints:
        """COCO-18 + feet; a point outside the photo (when its size is given) is missing."""
        lm = self.landmarks
        conf = lm[:, 3].copy()
        if width is not None and height is not None:
            outside = (lm[:, 0] < 0) | (lm[:, 0] >= width) | (lm[:, 1] < 0) | (lm[:, 1] >= height)
            conf[outside] = 0.0

        def point(i):
            if i is None:
                return (np.nan, np.nan, 0.0)
            return (lm[i, 0], lm[i, 1], conf[i])

        body = np.array([point(i) for i in COCO18_FROM_BLAZEPOSE], dtype=np.float64)
        sh = np.array([point(12), point(11)])
        body[1] = (sh[:, 0].mean(), sh[:, 1].mean(), sh[:, 2].min())
        foot = np.array([point(i) for i in FOOT6_FROM_BLAZEPOSE], dtype=np.float64)
        return PersonKeypoints(body=body, foot=foot, index=index)


@dataclass
class Detections:
    """The people of one photo, best detector score first."""

    width: int
    height: int
    people: list[DetectedPerson] = field(default_factory=list)

    @property
    def num_people(self) -> int:
        return len(self.people)

    def frame(self) -> FrameKeypoints:
        """The keypoint frame (photo pixels) the fitter and the renderer take."""
        people = [p.keypoints(i, self.width, self.height) for i, p in enumerate(self.people)]
        warnings = [] if people else ["the detector found no person"]
        size = (self.width, self.height)
        return FrameKeypoints(people=people, canvas=size, image_size=size, warnings=warnings)

    def masks(self, device=None) -> torch.Tensor:
        """``(P, H, W)`` person masks, 0..1 (``(0, H, W)`` with no person)."""
        if not self.people:
            return torch.zeros(0, self.height, self.width, device=device)
        return torch.stack([p.mask for p in self.people]).to(device)

    def union_mask(self, device=None) -> torch.Tensor:
        """``(H, W)``: the largest person-mask value at each pixel."""
        m = self.masks(device)
        return m.amax(0) if len(m) else torch.zeros(self.height, self.width, device=device)

    def scores(self) -> list[dict]:
        """Per person: detector score, pose presence and box (what the run manifest records)."""
        return [
            {"score": round(p.score, 4), "presence": round(p.presence, 4), "box": [round(v, 1) for v in p.box],
             **({"followed": True} if p.followed else {}), **({"weak": p.weak} if p.weak else {})}
            for p in self.people
        ]


_MODELS: dict[tuple[str, str], TFLiteModel] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: Path, device) -> TFLiteModel:
    cache_key = (str(path), str(device))
    with _MODELS_LOCK:
        model = _MODELS.get(cache_key)
        if model is None:
            model = _MODELS[cache_key] = TFLiteModel(path, device=device)
    return model


def _same_pose(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Two landmark sets ``(33, >=2)`` are one person when their median point distance is under
    ``tol`` x the person's size (for followed people: masks of two people may overlap, since the
    segmentation covers everyone in a crop, so the landmarks decide)."""
    size = float(np.ptp(b[:, :2], axis=0).max())
    return size > 0 and float(np.median(np.linalg.norm(a[:, :2] - b[:, :2], axis=1))) < tol * size


def _same_person(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two person masks are one person when more than DUPLICATE_OVERLAP of the smaller lies inside the other
    (a tile that cut a person differently finds them again under another crop)."""
    ma, mb = a > 0.5, b > 0.5
    small = min(int(ma.sum()), int(mb.sum()))
    return small > 0 and int((ma & mb).sum()) > DUPLICATE_OVERLAP * small


def as_rgb_image(image, device=None) -> torch.Tensor:
    """Any photo the nodes and the CLI see -> ``(H, W, 3)`` float32 0..1 on ``device``.

    Takes a torch tensor or numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
    (gray is repeated, alpha dropped), float 0..1 or uint8.
    """
    t = image if isinstance(image, torch.Tensor) else torch.tensor(np.asarray(image))
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] not in (1, 3, 4):
        raise DetectError(
            f"the detector needs one image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got "
            f"{tuple(t.shape)}. Pass one image of a batch at a time."
        )
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise DetectError(f"the image is empty ({t.shape[1]} x {t.shape[0]} pixels)")
    t = t.to(device)
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if not bool(torch.isfinite(t).all()):
        raise DetectError("the image holds NaN or infinite values; pass pixel values 0..1")
    if t.shape[-1] == 1:
        t = t.expand(-1, -1, 3)
    return t[..., :3].clamp(0, 1).contiguous()


class PersonDetector:
    """BlazePose in torch: ``PersonDetector()(image) -> Detections``.

    Args:
        variant: the landmark model, ``"lite"``, ``"full"`` (default) or ``"heavy"`` (most accurate).
        model_dirs: folders holding the ``.tflite`` files (default:
            :func:`refsd.detect.files.default_detect_dirs`); a missing file raises
            :class:`refsd.detect.files.DetectModelsMissing` naming them and the fetch command.
        device: torch device of the networks (default CPU).
        tile_scale: besides the whole photo, the detector also looks at half-overlapping square
            tiles this fraction of the short side (0.5: people down to about a third of the photo's
            height are found; BlazePose's detector alone finds mainly the largest person).
            None or 0: the whole photo only.
    """

    def __init__(
        self, variant: str = "full", model_dirs: Sequence[Path] | None = None, device=None, tile_scale: float | None = 0.5
    ):
        if variant not in LANDMARK_VARIANTS:
            raise DetectError(f"unknown landmark model {variant!r}; choose one of {', '.join(LANDMARK_VARIANTS)}")
        self.variant = variant
        self.tile_scale = tile_scale
        self.device = torch.device(device or "cpu")
        keys = ("pose_detection", f"pose_landmark_{variant}")
        paths = find_model_files(keys, model_dirs)  # one error naming every missing file
        self.detector = _load(paths[keys[0]], self.device)
        self.landmarker = _load(paths[keys[1]], self.device)
        self.anchors = decode.ssd_anchors(device=self.device)

    def _candidates(self, img: torch.Tensor, min_score: float, max_count: int):
        """Detector boxes ``(P, 4)``, keypoints ``(P, 4, 2)`` (photo pixels), scores and ``(P,)``
        "found in a tile" after weighted NMS: first those of one pass on the whole photo letterboxed, then those of one
        batched pass on square tiles (side ``tile_scale`` x the short side, half overlapping), which
        find people too small for the detector in the whole photo. The whole-photo ones come first
        so that a person seen both ways keeps the whole-photo view (a tile may cut them)."""
        h, w = img.shape[:2]
        tiles = []
        side = round(self.tile_scale * min(h, w)) if self.tile_scale else 0
        if side >= MIN_TILE and (side < h or side < w):
            tiles = [(img[y0 : y0 + side, x0 : x0 + side], x0, y0)
                     for y0 in decode.tile_starts(h, side) for x0 in decode.tile_starts(w, side)]
        out_b, out_k, out_s, out_t = [], [], [], []
        for is_tile, group in ((False, [(img, 0, 0)]), (True, tiles)):
            if not group:
                continue
            xs, maps = zip(*(decode.letterbox(v) for v, _, _ in group), strict=True)
            raw_boxes, raw_scores = self.detector(torch.cat(xs) * 2 - 1)
            gb, gk, gs = [], [], []
            for j, ((sx, sy, px, py), (_, x0, y0)) in enumerate(zip(maps, group, strict=True)):
                b, k, sc = decode.decode_detections(raw_boxes[j], raw_scores[j], self.anchors)
                shift = torch.tensor([px, py], device=self.device, dtype=torch.float32)
                scale = torch.tensor([sx, sy], device=self.device, dtype=torch.float32)
                offset = torch.tensor([x0, y0], device=self.device, dtype=torch.float32)
                gk.append((k - shift) / scale + offset)
                gb.append(((b.reshape(-1, 2, 2) - shift) / scale + offset).reshape(-1, 4))
                gs.append(sc)
            b, k, sc = decode.weighted_nms(torch.cat(gb), torch.cat(gk), torch.cat(gs), min_score=min_score,
                                           max_count=max_count)
            out_b += b
            out_k += k
            out_s += sc
            out_t += [is_tile] * len(sc)
        if not out_s:
            return None
        return torch.stack(out_b), torch.stack(out_k), out_s, torch.tensor(out_t, device=self.device)

    def _landmarks(self, img: torch.Tensor, rois: torch.Tensor):
        """One landmark pass on the rotated crops: ``(P, 39, 5)`` landmarks in photo pixels (33
        body points + MediaPipe's 6 auxiliary ones; visibility and presence through the sigmoid),
        ``(P,)`` pose presence and ``(P, 256, 256)`` person masks of the crops."""
        raw_lm, flag, seg, heat = self.landmarker(decode.crop_rois(img, rois, LANDMARK_SIZE))[:4]
        lm = raw_lm.reshape(len(rois), -1, 5)
        uv = lm[..., :2] / LANDMARK_SIZE
        uv = torch.cat([decode.refine_from_heatmap(uv[:, :NUM_LANDMARKS], heat[..., :NUM_LANDMARKS]),
                        uv[:, NUM_LANDMARKS:]], dim=1)
        xy = decode.roi_to_image(rois, uv)
        z = lm[..., 2:3] / LANDMARK_SIZE * rois[:, None, 2:3]
        landmarks = torch.cat([xy, z, torch.sigmoid(lm[..., 3:5])], dim=-1)
        return landmarks, flag.reshape(-1).float(), torch.sigmoid(seg[..., 0])  # the flag is the model's own sigmoid

    @torch.inference_mode()
    def __call__(
        self, image, *, min_score: float = 0.5, max_people: int = 8, min_presence: float = 0.5,
        follow: Sequence | None = None,
    ) -> Detections:
        """Find up to ``max_people`` people with detector score >= ``min_score`` whose landmark
        pass confirms a person (presence >= ``min_presence``).

        A person found only in a tile may be cut by the tile's edge, so the detector's keypoints
        (and the crop placed from them) are a guess: their crop is placed again from the first
        landmark pass's own alignment points (hip centre and full-body scale point, landmarks 33
        and 34), as MediaPipe's tracker does from frame to frame, and the second pass is kept.
        People found in the whole photo keep the single pass of MediaPipe's still-image mode
        (a second pass there was better on bus.jpg, worse on camera.png: 23 -> 44 px median).

        ``follow``: video frames, MediaPipe's tracking mode. The previous frame's people
        (their ``align`` points) are looked for again with one landmark pass on the crop placed
        from where they were, so a person the detector misses in this frame (it does, for a few
        frames, as people turn or are cut by the edge) is still found while the landmark model
        sees them (presence >= ``min_presence``); someone the detector also found is kept once.
        """
        if not 0.0 <= min_score <= 1.0 or not 0.0 <= min_presence <= 1.0:
            raise DetectError(f"scores are 0..1; got min_score={min_score}, min_presence={min_presence}")
        if max_people < 0:
            raise DetectError(f"max_people must be >= 0; got {max_people}")
        img = as_rgb_image(image, self.device)
        h, w = img.shape[:2]
        dets = Detections(width=w, height=h)
        found = self._candidates(img, min_score, 2 * max_people) if max_people else None
        if found is not None:
            boxes, kps, scores, in_tile = found
            rois = decode.detection_rois(kps)
            landmarks, presence, masks = self._landmarks(img, rois)
            if bool(in_tile.any()):
                again = decode.detection_rois(landmarks[in_tile][:, [ALIGN_HIPS, ALIGN_SCALE], :2])
                rois[in_tile] = again
                landmarks[in_tile], presence[in_tile], masks[in_tile] = self._landmarks(img, again)
            self._keep(dets, rois, landmarks, presence, masks, max_people, min_presence, scores=scores, boxes=boxes)
        # the previous frame's people whom the detector did not find again: one landmark pass where they were
        lost = [p for p in (follow or []) if getattr(p, "align", None) is not None
                and not any(_same_pose(p.landmarks, q.landmarks, FOLLOW_MATCH) for q in dets.people)]
        if lost and dets.num_people < max_people:
            rois = decode.detection_rois(torch.tensor([p.align for p in lost], device=self.device, dtype=torch.float32))
            self._keep(dets, rois, *self._landmarks(img, rois), max_people, min_presence, previous=lost)
        return dets

    def _keep(self, dets: Detections, rois, landmarks, presence, masks, max_people: int, min_presence: float,
              scores=None, boxes=None, previous=None) -> None:
        """Append the confirmed people of one landmark pass to ``dets`` (once each). Without
        ``scores`` they are followed people (``follow``; ``previous``: whom each pass followed):
        score = presence, box = the visible landmarks' bounds, a person is new only if their pose
        is not one already kept, and one the landmark model doubts (presence < ``min_presence``,
        e.g. cut by the frame's edge) is still kept when their pose continues the previous
        frame's (FOLLOW_KEEP), for at most FOLLOW_MAX_WEAK frames in a row."""
        h, w = dets.height, dets.width
        align = landmarks[:, [ALIGN_HIPS, ALIGN_SCALE], :2].cpu().numpy().astype(np.float64)
        landmarks = landmarks[:, :NUM_LANDMARKS].cpu().numpy().astype(np.float64)
        followed = scores is None
        for i in range(len(rois)):
            weak = float(presence[i]) < min_presence
            if (weak and not followed) or dets.num_people >= max_people:
                continue
            if followed:
                seen = landmarks[i][landmarks[i][:, 3] > 0.5, :2]
                seen = seen if len(seen) else landmarks[i][:, :2]
                # a person fills their crop; points squeezed into a corner of it are no one (an edge artefact)
                if float(np.ptp(seen, axis=0).max()) < FOLLOW_MIN_EXTENT * float(rois[i, 2]):
                    continue
                if any(_same_pose(landmarks[i], p.landmarks, FOLLOW_MATCH) for p in dets.people):
                    continue
                inside = (seen[:, 0] >= 0) & (seen[:, 0] < w) & (seen[:, 1] >= 0) & (seen[:, 1] < h)
                prev = previous[i]
                if weak and (getattr(prev, "weak", 0) >= FOLLOW_MAX_WEAK or int(inside.sum()) < FOLLOW_MIN_POINTS
                             or not _same_pose(landmarks[i], np.asarray(prev.landmarks), FOLLOW_KEEP)):
                    continue
                box = (*seen.min(0), *seen.max(0))
            mask = decode.roi_mask_to_image(masks[i], rois[i], h, w)
            if not followed and any(_same_person(mask, p.mask) for p in dets.people):
                continue
            dets.people.append(
                DetectedPerson(
                    score=float(presence[i]) if followed else scores[i],
                    presence=float(presence[i]),
                    box=tuple(float(v) for v in (box if followed else boxes[i])),
                    roi=tuple(float(v) for v in rois[i]),
                    landmarks=landmarks[i],
                    mask=mask,
                    align=tuple(tuple(float(v) for v in pt) for pt in align[i]),
                    followed=followed,
                    weak=getattr(previous[i], "weak", 0) + 1 if followed and weak else 0,
                )
            )


def detect_people(image, *, variant: str = "full", model_dirs=None, device=None, **kwargs) -> Detections:
    """One-call form of :class:`PersonDetector` (the networks are cached per file and device)."""
    return PersonDetector(variant, model_dirs, device)(image, **kwargs)

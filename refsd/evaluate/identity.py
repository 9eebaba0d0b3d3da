"""Identity (privacy): does a face recogniser still see the original person in the output?

For every face in the photo -- one per person of the keypoints where a face is visible, plus
any face the keypoints do not list (a bystander the fit never saw stays in the output, and
that is a leak too) -- RefSD's face models (:class:`refsd.detect.FaceAnalyzer`: YuNet finds
the face and its five landmarks, SFace embeds it) compare the photo with the output **at the
same place**:

* the probes are the faces YuNet finds in the output, anywhere (a face left in place, moved or
  flipped is found; a face YuNet no longer finds is one a recognition pipeline cannot match
  either); ``found_in_output`` says whether one is still found at the same place (none =
  "face removed");
* the photo's face is the gallery, sharp and **degraded** the way a pseudonymizer that only
  degrades would: Gaussian blurs of :data:`BLUR_LEVELS` x the face's width. A blurred face
  scores only 0.1-0.3 against its sharp original (SFace, sigma 6 px on a 90 px face) yet is
  the same person to anyone holding a photo of them: they blur their photo to match. Against
  the matching blur the same face scores >= 0.7; different people stay <= 0.3 at every level
  (measured in tests/test_evaluate_identity.py, README "Evaluation").
* ``similarity`` is the highest cosine over probes and gallery versions; the face **leaks**
  when it reaches ``threshold`` (SFace's same-identity threshold, 0.363, by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..detect import SFACE_COSINE_THRESHOLD, Face, FaceAnalyzer, as_rgb_image
from ..errors import RefSDError
from ..keypoints import PersonKeypoints

__all__ = [
    "BLUR_LEVELS",
    "FaceMatch",
    "IdentityResult",
    "IdentityError",
    "gaussian_blur",
    "head_boxes",
    "check_identity",
]

#: Gaussian blur sigmas of the gallery, as fractions of the face box width (a ratio of <= 1.6
#: between neighbours, so any blur up to 0.09 x the width is matched within ~1.25x).
BLUR_LEVELS: tuple[float, ...] = (0.0, 0.015, 0.025, 0.04, 0.06, 0.09)
#: a head region is this many times the head keypoints' extent, and at least MIN_HEAD px
HEAD_SCALE = 2.2
MIN_HEAD = 24.0
#: head regions are resized to this side for face detection (small faces in big photos)
HEAD_SIDE = 256
#: YuNet score for a face: real faces score >= 0.6 on the test photos even blurred (sigma 6 px), false faces in
#: textures <= 0.4 (OpenCV's default 0.9 misses the cameraman, 0.894); a false face outside the replaced region
#: would "leak" itself, so lower values cost false failures
FACE_SCORE = 0.6


class IdentityError(RefSDError):
    """Bad input to the identity check (sizes differ, ...)."""


@dataclass
class FaceMatch:
    """One face of the photo and what the output shows at its place.

    ``person``: index of the keypoint person it belongs to (None: a face the keypoints do not
    list). ``box``: (x0, y0, x1, y1) px; ``score``: YuNet's. ``found_in_output``: YuNet finds a
    face there in the output. ``similarity``: the worst-case cosine over the output's faces and
    the blurred galleries (None: the output holds no face at all); ``similarity_sharp``: plain
    SFace cosine, sharp photo vs the output's face at the same place (None: none there);
    ``blur``: the gallery blur (fraction of the face width) that gave ``similarity``; ``leak``:
    ``similarity >= threshold``.
    """

    person: int | None
    box: list[float]
    score: float
    found_in_output: bool
    similarity: float | None
    similarity_sharp: float | None
    blur: float | None
    leak: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IdentityResult:
    """The faces of one image (:class:`FaceMatch`), the threshold used, and the keypoint people
    without a visible face in the photo (turned away, covered, too small: nothing to leak)."""

    faces: list[FaceMatch] = field(default_factory=list)
    threshold: float = SFACE_COSINE_THRESHOLD
    people_without_face: list[int] = field(default_factory=list)

    @property
    def leaks(self) -> int:
        return sum(f.leak for f in self.faces)

    @property
    def passed(self) -> bool:
        return self.leaks == 0

    @property
    def max_similarity(self) -> float | None:
        return max((f.similarity for f in self.faces if f.similarity is not None), default=None)

    def to_dict(self) -> dict:
        return {"faces": [f.to_dict() for f in self.faces], "threshold": self.threshold,
                "people_without_face": list(self.people_without_face), "leaks": self.leaks,
                "passed": self.passed, "max_similarity": self.max_similarity}

    def summary(self) -> str:
        if not self.faces:
            return "no face in the photo"
        worst = self.max_similarity
        removed = sum(not f.found_in_output for f in self.faces)
        return (f"{len(self.faces)} face(s), {self.leaks} still recognisable ("
                + (f"worst cosine {worst:.3f}, " if worst is not None else "no face in the output, ")
                + f"threshold {self.threshold:.3f}), {removed} removed")


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(H, W, 3)`` image blurred with a separable Gaussian of ``sigma`` px (radius 3 sigma,
    reflected borders); ``sigma <= 0`` returns the image."""
    if sigma <= 0:
        return image
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, device=image.device, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).to(image.dtype)
    t = image.permute(2, 0, 1)[:, None]  # (3, 1, H, W)
    pad_h, pad_w = min(r, t.shape[-2] - 1), min(r, t.shape[-1] - 1)
    t = F.pad(t, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    t = F.conv2d(t, k.view(1, 1, 1, -1)[..., r - pad_w: r + pad_w + 1])
    t = F.pad(t, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    t = F.conv2d(t, k.view(1, 1, -1, 1)[..., r - pad_h: r + pad_h + 1, :])
    return t[:, 0].permute(1, 2, 0)


def head_boxes(people: Sequence[PersonKeypoints], size: tuple[int, int]) -> list[tuple[float, float, float, float] | None]:
    """Per person a square (x0, y0, x1, y1) around the head from the nose, eyes, ears and neck
    keypoints (None without any head point), clipped to the image ``size`` (W, H)."""
    W, H = size
    out: list[tuple[float, float, float, float] | None] = []
    for p in people:
        b = np.asarray(p.body, float)
        head = b[[0, 14, 15, 16, 17]]
        head = head[np.isfinite(head[:, :2]).all(1) & (np.nan_to_num(head[:, 2]) > 0)]
        if not len(head):
            out.append(None)
            continue
        c = head[:, :2].mean(0)
        ext = float(np.ptp(head[:, :2], axis=0).max()) if len(head) > 1 else 0.0
        neck = b[1]
        if np.isfinite(neck[:2]).all() and neck[2] > 0:
            ext = max(ext, 0.9 * float(np.linalg.norm(neck[:2] - b[0, :2]) if np.isfinite(b[0, :2]).all() else 0.0))
        half = max(MIN_HEAD, HEAD_SCALE * ext) / 2
        x0, y0, x1, y1 = max(0.0, c[0] - half), max(0.0, c[1] - half), min(W, c[0] + half), min(H, c[1] + half)
        out.append((x0, y0, x1, y1) if x1 - x0 >= 4 and y1 - y0 >= 4 else None)
    return out


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _faces_in(fa: FaceAnalyzer, image: torch.Tensor, box, score: float = FACE_SCORE) -> list[Face]:
    """Faces inside ``box`` of ``image``, the region seen at HEAD_SIDE px (small faces upscaled)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = image[y0:y1, x0:x1]
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return []
    found = fa.detect(crop, score_threshold=score, min_side=HEAD_SIDE, max_side=HEAD_SIDE)
    return [Face(box=(f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0),
                 landmarks=np.asarray(f.landmarks, np.float32) + np.array([x0, y0], np.float32), score=f.score)
            for f in found]


def _dedupe(faces: list[tuple[int | None, Face]]) -> list[tuple[int | None, Face]]:
    """Faces found twice (whole photo and head region) kept once: the person's copy, else the best score."""
    faces = sorted(faces, key=lambda pf: (pf[0] is None, -pf[1].score))
    kept: list[tuple[int | None, Face]] = []
    for p, f in faces:
        if all(_iou(f.box, g.box) <= 0.4 for _, g in kept):
            kept.append((p, f))
    return kept


def _find_faces(fa: FaceAnalyzer, image: torch.Tensor, heads, score: float) -> list[tuple[int | None, Face]]:
    """Faces of ``image``: the whole image (YuNet ``score``), and each person's head region (small
    faces), kept once; a face in a person's head region belongs to that person."""
    found: list[tuple[int | None, Face]] = [(None, f) for f in fa.detect(image, score_threshold=score)]
    for i, hb in enumerate(heads):
        if hb is not None:
            found += [(i, f) for f in _faces_in(fa, image, hb)]
    out = []
    for who, f in _dedupe(found):
        if who is None:
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            inside = [i for i, hb in enumerate(heads) if hb and hb[0] <= cx <= hb[2] and hb[1] <= cy <= hb[3]]
            who = inside[0] if inside else None
        out.append((who, f))
    return out


def check_identity(
    original,
    output,
    people: Sequence[PersonKeypoints] | None = None,
    *,
    analyzer: FaceAnalyzer | None = None,
    threshold: float = SFACE_COSINE_THRESHOLD,
    blur_levels: Sequence[float] = BLUR_LEVELS,
) -> IdentityResult:
    """Compare every face of ``original`` with ``output`` (module docstring).

    ``original`` / ``output``: images of the same size ((H, W, 3) 0..1 torch or numpy, uint8,
    gray or RGBA accepted); ``people``: the keypoint people of the photo (their faces are also
    looked for in their head regions, which finds small faces; without them the whole images
    are searched). Each face of the photo is compared with every face found in the output (a
    face moved, flipped or copied elsewhere still leaks). Returns an :class:`IdentityResult`.
    """
    fa = analyzer or FaceAnalyzer()
    o = as_rgb_image(original, fa.device)
    p = as_rgb_image(output, fa.device)
    if o.shape != p.shape:
        raise IdentityError(f"the photo {tuple(o.shape[:2])} and the output {tuple(p.shape[:2])} differ in size; "
                            "compare an output with the photo it was made from")
    H, W = o.shape[:2]
    people = list(people or [])
    heads = head_boxes(people, (W, H))
    faces_o = _find_faces(fa, o, heads, FACE_SCORE)
    faces_p = [f for _, f in _find_faces(fa, p, heads, FACE_SCORE)]
    emb_p = fa.embed(p, np.stack([np.asarray(f.landmarks, float) for f in faces_p])) if faces_p else None
    result = IdentityResult(threshold=float(threshold))
    for who, f in faces_o:
        result.faces.append(_compare(fa, o, who, f, faces_p, emb_p, threshold, blur_levels))
    with_face = {m.person for m in result.faces}
    result.people_without_face = [i for i in range(len(people)) if i not in with_face]
    return result


def _compare(fa: FaceAnalyzer, o: torch.Tensor, who: int | None, face: Face, faces_p: list[Face],
             emb_p: torch.Tensor | None, threshold: float, blur_levels: Sequence[float]) -> FaceMatch:
    here = [k for k, g in enumerate(faces_p) if _iou(g.box, face.box) > 0.3]
    match = FaceMatch(person=who, box=[float(v) for v in face.box], score=float(face.score),
                      found_in_output=bool(here), similarity=None, similarity_sharp=None, blur=None, leak=False)
    if emb_p is None:  # no face anywhere in the output: nothing a recogniser could match
        return match
    x0, y0, x1, y1 = face.box
    w = max(1.0, x1 - x0)
    # the gallery is blurred on a region twice the face's size (the blur's support and the alignment crop fit in it)
    H, W = o.shape[:2]
    rx0, ry0 = max(0, int(x0 - w)), max(0, int(y0 - w))
    rx1, ry1 = min(W, int(math.ceil(x1 + w))), min(H, int(math.ceil(y1 + w)))
    lm = np.asarray(face.landmarks, float)[None] - np.array([rx0, ry0], float)
    ro = o[ry0:ry1, rx0:rx1]
    gallery = fa.embed_aligned(torch.cat([fa.align(gaussian_blur(ro, s * w), lm) for s in blur_levels]))  # (G, 128)
    sims = fa.similarity(gallery, emb_p)  # (G, M): every blur level against every face of the output
    g, _ = divmod(int(torch.argmax(sims)), sims.shape[1])
    match.similarity = float(sims.max())
    match.similarity_sharp = float(sims[0, here[0]]) if here else None  # the output's own face at this place
    match.blur = float(blur_levels[g])
    match.leak = match.similarity >= threshold
    return match

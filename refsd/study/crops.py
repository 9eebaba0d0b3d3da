"""The pictures a study shows, per person: where the person is, cut-outs on grey, pairs.

Each fitted person of ``body_fit.json`` is located by its fitted silhouette (the body model
rasterized in the fit's camera, :func:`refsd.render.scene.fit_person_masks`).

* Original photo: the cut-out is RefSD's person detector's own mask
  (:class:`refsd.detect.PersonDetector`: hair, coats, held objects) of the detected person that
  overlaps the silhouette most (IoU >= :data:`MIN_IOU`), limited to the silhouette grown by
  :data:`REACH` of the person's height, to the parts connected to the silhouette and to
  pixels where no other fitted person is seen (a neighbour or a stray blob stays out). Without a match (or without the detector's model
  files) it is the silhouette grown by :data:`FALLBACK_MARGIN`.
* Output: the replacement's own silhouette (the avatar of the person's attributes in the fitted
  pose, :func:`refsd.render.avatar.avatar_fit`) joined with the detector's mask of the output,
  limited the same way (:data:`REACH_OUTPUT`): what refinement added (hair, loose clothes) is in.

Files per person, all cut from one box (the masks' bounding box plus :data:`BOX_MARGIN`),
scaled to :data:`DISPLAY_HEIGHT` pixels high (small people at most 3x)::

    crops/<pid>/original.png       output.png          # the photo / the output in the box
    crops/<pid>/original_grey.png  output_grey.png     # the person only, on neutral grey (128)
    crops/<pid>/identity.png       pose.png            # grey pair (psi-A), photo pair (psi-B)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..composite import grow_masks
from ..fit import BodyFit
from ..fit.handle import BodyModelSpec
from ..people import PersonAttributes
from ..render.avatar import avatar_fit
from ..render.scene import fit_person_masks
from .definition import StudyError

__all__ = ["PersonLocator", "PersonCrop", "load_rgb", "write_crops", "on_grey", "BOX_MARGIN", "DISPLAY_HEIGHT"]

GREY = 128
MIN_IOU = 0.25
REACH = 0.15
REACH_OUTPUT = 0.07
FALLBACK_MARGIN = 0.04
BOX_MARGIN = 0.08
DISPLAY_HEIGHT = 440
GAP = 12  # white gap between the two halves of a pair


def load_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file (StudyError naming the file when unreadable)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as e:
        raise StudyError(f"{path} does not exist") from e
    except OSError as e:
        raise StudyError(f"{path} is not a readable image ({e})") from e


@dataclass
class PersonCrop:
    """One person's masks (``(H, W)`` float 0..1) in the original and the output, their box and
    where each mask came from (``"detector"`` or ``"silhouette"``)."""

    original_mask: np.ndarray
    output_mask: np.ndarray
    box: tuple[int, int, int, int]
    sources: dict[str, str]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def _match(sil: torch.Tensor, det: torch.Tensor) -> list[int | None]:
    """Greedy one-to-one matching of silhouettes ``(P, H, W)`` to detector masks ``(D, H, W)``
    by IoU (best pairs first); None where no detected mask reaches MIN_IOU."""
    s, d = sil > 0.5, det > 0.5
    pairs = sorted(((_iou(s[i], d[j]), i, j) for i in range(len(s)) for j in range(len(d))), reverse=True)
    out: list[int | None] = [None] * len(s)
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < MIN_IOU or out[i] is not None or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _box(masks: list[np.ndarray], width: int, height: int) -> tuple[int, int, int, int]:
    boxes = [b for b in (_bbox(m) for m in masks) if b is not None]
    if not boxes:
        raise StudyError("the person has an empty silhouette; refit the image")
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    m = max(8, round(BOX_MARGIN * max(y1 - y0, x1 - x0)))
    return max(0, x0 - m), max(0, y0 - m), min(width, x1 + m), min(height, y1 + m)


class PersonLocator:
    """Finds the fitted people of an image pair (original, output) and their cut-out masks.

    Args:
        detect_model: the BlazePose landmark model (``lite``/``full``/``heavy``) for the person masks,
            or None for the fitted silhouettes only. Missing model files fall back to the
            silhouettes (``self.notes`` says so once).
        body: the SMPL-X ``.npz`` file for fits made with SMPL-X (Anny fits need nothing).
    """

    def __init__(self, detect_model: str | None = "full", body: str | Path | None = None, model_dirs=None):
        self.detect_model = detect_model
        self.body = Path(body) if body else None
        self.model_dirs = model_dirs
        self.notes: list[str] = []
        self._detector = None
        self._tried = False

    def _model(self, fit: BodyFit):
        mid = str(fit.model_id)
        if mid.startswith("anny"):
            return BodyModelSpec().model()
        if mid.startswith("smplx"):
            if self.body is None or not self.body.is_file():
                raise StudyError(f"the body fit was made with {mid}; pass its SMPL-X file with --body PATH.npz")
            return BodyModelSpec("smplx", file=str(self.body)).model()
        raise StudyError(f"unknown body model {mid!r} in body_fit.json (RefSD fits are 'anny' or 'smplx')")

    def detector(self):
        if self.detect_model is None or self._tried:
            return self._detector
        self._tried = True
        from ..detect import DetectModelsMissing, PersonDetector

        try:
            self._detector = PersonDetector(self.detect_model, self.model_dirs)
        except DetectModelsMissing as e:
            self.notes.append(f"person detector unavailable, masks are the fitted silhouettes grown a little: {e}")
        return self._detector

    def _detect(self, image: np.ndarray, people: int) -> torch.Tensor | None:
        det = self.detector()
        if det is None:
            return None
        return det(image, min_score=0.4, max_people=people + 1, min_presence=0.4).masks()

    def locate(self, original: np.ndarray, output: np.ndarray, fit: BodyFit,
               people: list[PersonAttributes] | None = None) -> list[PersonCrop]:
        """One :class:`PersonCrop` per person of ``fit`` (its order: ``fit.people``); ``people``:
        their attributes (the replacements' silhouettes join the output masks)."""
        H, W = original.shape[:2]
        if output.shape[:2] != (H, W):
            raise StudyError(f"the output is {output.shape[1]}x{output.shape[0]} pixels but the original photo is "
                             f"{W}x{H}: the manifest points at the wrong photo (check --images)")
        if (fit.image_width, fit.image_height) != (W, H):
            raise StudyError(f"body_fit.json is for a {fit.image_width}x{fit.image_height} image but the photo is "
                             f"{W}x{H}: the manifest points at the wrong photo (check --images)")
        if not fit.people:
            return []
        model = self._model(fit)
        with torch.no_grad():
            sil = fit_person_masks(model, fit).float().cpu()
            avatars = fit_person_masks(model, avatar_fit(model, fit, people)).float().cpu() if people else sil
            reach_o = grow_masks(sil, REACH).numpy() > 0.5
            reach_p = grow_masks(torch.maximum(sil, avatars), REACH_OUTPUT).numpy() > 0.5
            fallback = grow_masks(sil, FALLBACK_MARGIN).numpy()
            det_o = self._detect(original, len(sil))
            det_p = self._detect(output, len(sil))
        match_o = _match(sil, det_o) if det_o is not None and len(det_o) else [None] * len(sil)
        match_p = _match(avatars, det_p) if det_p is not None and len(det_p) else [None] * len(sil)
        sil_b, av_b = sil.numpy() > 0.5, avatars.numpy() > 0.5
        out = []
        for i in range(len(sil)):
            # where the others are seen (their visible silhouettes) is never this person's
            mine_o = reach_o[i] & ~np.delete(sil_b, i, 0).any(0)
            mine_p = reach_p[i] & ~np.delete(av_b, i, 0).any(0)
            src = {"original": "silhouette", "output": "avatar" if people else "silhouette"}
            m_o = fallback[i]
            if match_o[i] is not None:
                m_o, src["original"] = _limited(det_o[match_o[i]].cpu().numpy(), sil_b[i], mine_o), "detector"
            m_p = av_b[i].astype(np.float32) if people else np.maximum(m_o, fallback[i])
            if match_p[i] is not None:
                m_p = np.maximum(m_p, _limited(det_p[match_p[i]].cpu().numpy(), av_b[i], mine_p))
                src["output"] += "+detector"
            out.append(PersonCrop(m_o, m_p, _box([m_o, m_p, sil[i].numpy()], W, H), src))
        return out


def _connected(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The parts of boolean ``mask`` 8-connected to ``seed`` (geodesic growth, inside mask's box)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return mask.copy()
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = mask[y0:y1, x0:x1]
    cur = seed[y0:y1, x0:x1] & m
    while True:
        g = cur.copy()
        g[1:] |= cur[:-1]
        g[:-1] |= cur[1:]
        h = g.copy()
        h[:, 1:] |= g[:, :-1]
        h[:, :-1] |= g[:, 1:]
        h &= m
        if np.array_equal(h, cur):
            break
        cur = h
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = cur
    return out


def _limited(det: np.ndarray, seed: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """A detector's soft mask with a crisp edge (0 below 0.3, 1 above 0.7), inside ``reach`` and only
    where connected to ``seed`` (the silhouette): ``(H, W)`` float 0..1."""
    soft = np.clip((det - 0.3) / 0.4, 0.0, 1.0) * reach
    keep = _connected(soft > 0.0, seed & (soft > 0.5))
    return (soft * keep).astype(np.float32)


def on_grey(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The image where ``alpha`` is 1, neutral grey (128) where it is 0, blended between."""
    a = alpha.astype(np.float32)[..., None]
    return np.clip(image.astype(np.float32) * a + GREY * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def _scaled(pixels: np.ndarray, height: int) -> Image.Image:
    im = Image.fromarray(pixels)
    if im.height == height:
        return im
    width = max(1, round(im.width * height / im.height))
    return im.resize((width, height), Image.Resampling.LANCZOS)


def _pair(left: Image.Image, right: Image.Image) -> Image.Image:
    out = Image.new("RGB", (left.width + GAP + right.width, max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, 0))
    out.paste(right, (left.width + GAP, 0))
    return out


def write_crops(original: np.ndarray, output: np.ndarray, person: PersonCrop, folder: Path, rel: str) -> dict[str, str]:
    """Write the six pictures of one person into ``folder / rel``; returns name -> path relative to
    ``folder`` (``original``, ``output``, ``original_grey``, ``output_grey``, ``identity``, ``pose``)."""
    x0, y0, x1, y1 = person.box
    height = min(DISPLAY_HEIGHT, 3 * (y1 - y0))  # small people are enlarged at most 3x
    sl = (slice(y0, y1), slice(x0, x1))
    pics = {
        "original": _scaled(original[sl], height),
        "output": _scaled(output[sl], height),
        "original_grey": _scaled(on_grey(original, person.original_mask)[sl], height),
        "output_grey": _scaled(on_grey(output, person.output_mask)[sl], height),
    }
    pics["identity"] = _pair(pics["original_grey"], pics["output_grey"])
    pics["pose"] = _pair(pics["original"], pics["output"])
    (folder / rel).mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, im in pics.items():
        path = f"{rel}/{name}.png"
        im.save(folder / path, optimize=True)
        paths[name] = path
    return paths

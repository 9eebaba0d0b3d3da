"""Render materials: per-vertex colours of a synthetic person, painted through the body-part
labels (:data:`refsd.body.base.PART_NAMES`, ``model.part_labels``).

:func:`material_regions` assigns every vertex one material of :data:`MATERIAL_NAMES`;
:func:`material_colors` gives each material its sRGB colour from the
:class:`~refsd.people.spec.PersonAttributes`; :func:`vertex_colors` combines the two into a
``(V, 3)`` float tensor in 0..1 (**sRGB**, not linear). The same topology is shared by every
shape and pose of a model, so the colours computed once per person apply to the fitted,
posed mesh.

Where a garment ends inside a body part (sleeve, shorts, dress length, boot shaft) is decided
on the **rest pose** (``model(**model.zero_params(1)).vertices[0]``, or ``rest_vertices``),
with Y up / facing +Z (:mod:`refsd.body.base`), using two per-vertex coordinates:

* ``along``: position along a limb segment, 0 at its body end (shoulder, elbow, hip, knee)
  to 1 at its far end (elbow, wrist, knee, ankle) -- the projection on the segment's
  principal axis, so it works for Anny's A-pose and SMPL-X's T-pose alike;
* ``up``: height within a part, 0 at its lowest vertex to 1 at its highest (torso: crotch to
  shoulders; the waistline is ``up`` = :data:`WAIST`);
* ``fwd`` (feet): 0 at the back of the heel to 1 at the tip of the toes (along +Z).

Coverage rules (later rows paint over earlier ones)
----------------------------------------------------
=============  ===============================================================================
material       vertices
=============  ===============================================================================
skin           everything not covered below (face, head, neck, hands, bare limbs, ...)
shoes          ``sneakers`` / ``dress_shoes``: feet with ``up`` <= 0.75 (the ankle stays bare);
               ``boots``: feet + lower legs with ``along`` >= 0.6; ``sandals``: the sole
               (feet with ``up`` <= 0.06) and a strap across the instep (``fwd`` 0.45..0.6);
               ``none``: nothing
sole           feet with ``up`` <= 0.12 under sneakers / boots / dress shoes (sneakers: white,
               or light gray under white sneakers; others: dark brown)
bottom         every bottom: torso below the waist. ``shorts``: + upper legs with ``along``
               <= 0.6; ``trousers``: + upper and lower legs + feet with ``up`` > 0.75 (down
               to the shoe); ``skirt``: + upper legs (knee length). Ignored with a dress.
top            ``t-shirt``: torso above the waist + upper arms with ``along`` <= 0.5;
               ``long-sleeve``: torso above the waist + upper and lower arms; ``jacket``: as
               long-sleeve + neck with ``up`` <= 0.3 (collar); ``dress``: whole torso + upper
               legs + lower legs with ``along`` <= 0.35 (knee length, sleeveless);
               ``none``: nothing
inner          ``jacket`` only: the shirt seen through the open front -- torso front, above
               the waist and below ``up`` 0.92, within 30 % of the torso's half width of
               the midline (white, or near-black under a light jacket)
hair           ``short``: the ``hair`` (scalp) part; ``medium``: + ``head`` part above the
               mouth line or behind the head's mid-depth (ears, nape), + ``face`` vertices
               above the mouth line in the outer 20 % of the head's width (temples);
               ``long``: + all of
               the ``head`` part, the back half of the neck and the upper back (torso back,
               inside the ellipse (lateral / 0.45)^2 + ((up - 1) / 0.28)^2 <= 1, i.e. down
               to ``up`` 0.72); ``bald``: nothing (skin)
sclera / iris  the ``eyes`` part: the front cap within 40 deg of +Z of each eyeball's
               centre is the iris (dark brown), the rest sclera
=============  ===============================================================================

Part-segmentation colours: :func:`part_palette` / :data:`PART_COLORS`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from ..body.base import PART_NAMES
from ..errors import RefSDError
from .spec import PersonAttributes, _as_attrs
from .vocabulary import HAIR_COLORS, SKIN_TONES, parse_color

__all__ = [
    "MaterialsError",
    "MATERIAL_NAMES",
    "MATERIAL_INDEX",
    "SCLERA_COLOR",
    "IRIS_COLOR",
    "WAIST",
    "PART_COLORS",
    "BACKGROUND_COLOR",
    "material_regions",
    "material_colors",
    "vertex_colors",
    "part_palette",
    "rest_vertices_of",
]


class MaterialsError(RefSDError):
    """Bad input to the material painter (wrong rest-vertex shape, a model without labels)."""


#: Materials, in the index order :func:`material_regions` returns.
MATERIAL_NAMES: tuple[str, ...] = ("skin", "hair", "sclera", "iris", "top", "inner", "bottom", "shoes", "sole")
MATERIAL_INDEX: dict[str, int] = {n: i for i, n in enumerate(MATERIAL_NAMES)}

SCLERA_COLOR = "#ece8e0"
IRIS_COLOR = "#3b2a1e"
_INNER_LIGHT = "#f0f0f0"
_INNER_DARK = "#2b2b2b"
_SOLE_WHITE = "#f2f2f2"
_SOLE_GRAY = "#bfbfbf"
_SOLE_DARK = "#2a2420"

#: Waistline as a fraction of the torso part's height (crotch 0 .. shoulders 1); at about
#: the spine1 joint (near the navel) on both backends.
WAIST = 0.28

#: Part-segmentation colours (sRGB 0..255), one per :data:`PART_NAMES` entry; the subject's
#: left side has the cooler hue of each pair. Background: :data:`BACKGROUND_COLOR`.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "head": (220, 20, 60),
    "face": (255, 182, 140),
    "hair": (96, 48, 24),
    "eyes": (0, 255, 255),
    "neck": (255, 215, 0),
    "torso": (0, 160, 0),
    "upper_arm_l": (0, 0, 255),
    "upper_arm_r": (255, 0, 255),
    "lower_arm_l": (70, 160, 255),
    "lower_arm_r": (255, 120, 200),
    "hand_l": (0, 110, 110),
    "hand_r": (140, 0, 70),
    "upper_leg_l": (120, 120, 0),
    "upper_leg_r": (255, 128, 0),
    "lower_leg_l": (170, 255, 80),
    "lower_leg_r": (255, 60, 0),
    "foot_l": (80, 40, 160),
    "foot_r": (255, 255, 150),
}
BACKGROUND_COLOR: tuple[int, int, int] = (0, 0, 0)


def part_palette() -> torch.Tensor:
    """``(len(PART_NAMES) + 1, 3)`` uint8 sRGB colours for a part-segmentation image: row
    ``i`` for ``PART_NAMES[i]`` (:data:`PART_COLORS`), the last row (index ``len(PART_NAMES)``,
    also reachable as ``-1``) the black background. ``part_palette()[model.part_labels]``
    colours a mesh by part."""
    rows = [PART_COLORS[n] for n in PART_NAMES] + [BACKGROUND_COLOR]
    return torch.tensor(rows, dtype=torch.uint8)


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------

_LIMBS = tuple(f"{seg}_{side}" for seg in ("upper_arm", "lower_arm", "upper_leg", "lower_leg") for side in "lr")
_UP_PARTS = ("torso", "neck", "foot_l", "foot_r")
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def rest_vertices_of(model: Any) -> torch.Tensor:
    """The model's rest-pose vertices ``(V, 3)`` (default shape, zero pose), float64 on CPU."""
    with torch.no_grad():
        out = model(**model.zero_params(1))
    return out.vertices[0].detach().to(device="cpu", dtype=torch.float64)


def _features(labels: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-vertex coordinates used by the coverage rules (see the module docstring)."""
    nan = float("nan")
    n = labels.shape[0]
    along = torch.full((n,), nan, dtype=torch.float64)
    up = torch.full((n,), nan, dtype=torch.float64)
    masks = {name: labels == i for i, name in enumerate(PART_NAMES)}
    torso = masks["torso"]
    centre = v[torso].mean(0) if bool(torso.any()) else v.mean(0)
    for name in _LIMBS:
        m = masks[name]
        if int(m.sum()) < 3:
            continue
        pts = v[m]
        c = pts.mean(0)
        _, vecs = torch.linalg.eigh((pts - c).T @ (pts - c))
        axis = vecs[:, -1]
        proj = (pts - c) @ axis
        lo, hi = float(proj.min()), float(proj.max())
        if (c + axis * hi - centre).norm() < (c + axis * lo - centre).norm():
            proj, lo, hi = -proj, -hi, -lo
        along[m] = (proj - lo) / max(hi - lo, 1e-9)
    for name in _UP_PARTS:
        m = masks[name]
        if not bool(m.any()):
            continue
        y = v[m, 1]
        up[m] = (y - y.min()) / max(float(y.max() - y.min()), 1e-9)
    fwd = torch.full((n,), nan, dtype=torch.float64)
    for name in ("foot_l", "foot_r"):
        m = masks[name]
        if bool(m.any()):
            z = v[m, 2]
            fwd[m] = (z - z.min()) / max(float(z.max() - z.min()), 1e-9)

    # Torso: front / back, distance from the midline.
    lateral = torch.full((n,), nan, dtype=torch.float64)
    if bool(torso.any()):
        half = float((v[torso, 0] - centre[0]).abs().max())
        lateral[torso] = (v[torso, 0] - centre[0]).abs() / max(half, 1e-9)
    front = v[:, 2] > centre[2]
    neck = masks["neck"]
    neck_back = neck & (v[:, 2] < (v[neck, 2].mean() if bool(neck.any()) else centre[2]))

    # Head landmarks: eye line, chin, mid-depth.
    head_all = masks["head"] | masks["face"] | masks["hair"] | masks["eyes"]
    hv = v[head_all] if bool(head_all.any()) else v
    y_eye = float(v[masks["eyes"], 1].mean()) if bool(masks["eyes"].any()) else float(hv[:, 1].quantile(0.6))
    y_chin = float(v[masks["face"], 1].min()) if bool(masks["face"].any()) else float(hv[:, 1].min())
    z_mid = 0.5 * float(hv[:, 2].min() + hv[:, 2].max())
    head = masks["head"]
    mouth_up = v[:, 1] >= 0.5 * (y_eye + y_chin)
    head_cx = float(hv[:, 0].mean())
    head_half = max(float((hv[:, 0] - head_cx).abs().max()), 1e-9)
    temples = masks["face"] & mouth_up & ((v[:, 0] - head_cx).abs() >= 0.8 * head_half)
    hair_medium = masks["hair"] | temples | (head & (mouth_up | (v[:, 2] < z_mid)))

    # Eyes: iris = front cap of each eyeball.
    iris = torch.zeros(n, dtype=torch.bool)
    eyes = masks["eyes"]
    if bool(eyes.any()):
        mid_x = float(hv[:, 0].mean())
        for side in (v[:, 0] >= mid_x, v[:, 0] < mid_x):
            m = eyes & side
            if not bool(m.any()):
                continue
            d = v[m] - v[m].mean(0)
            cos = d[:, 2] / d.norm(dim=1).clamp_min(1e-12)
            iris[m] = cos >= math.cos(math.radians(40.0))
    return {
        "along": along,
        "up": up,
        "fwd": fwd,
        "lateral": lateral,
        "front": front,
        "neck_back": neck_back,
        "hair_medium": hair_medium,
        "iris": iris,
        **{f"part:{k}": m for k, m in masks.items()},
    }


def _get_features(model: Any, rest_vertices: torch.Tensor | None) -> dict[str, torch.Tensor]:
    labels = getattr(model, "part_labels", None)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise MaterialsError(
            f"{type(model).__name__} has no part_labels (V,) tensor; pass a RefSD body model "
            "(refsd.body.get_body_model)."
        )
    labels = labels.detach().to("cpu", torch.long)
    if rest_vertices is None:
        cached = _CACHE.get(model)
        if cached is not None and cached[0].shape == labels.shape and torch.equal(cached[0], labels):
            return cached[1]
        feats = _features(labels, rest_vertices_of(model))
        _CACHE[model] = (labels.clone(), feats)
        return feats
    rv = torch.as_tensor(rest_vertices).detach()
    if rv.ndim == 3 and rv.shape[0] == 1:
        rv = rv[0]
    if tuple(rv.shape) != (labels.shape[0], 3):
        raise MaterialsError(
            f"rest_vertices has shape {tuple(rv.shape)}, expected ({labels.shape[0]}, 3) for this model. Pass "
            "the rest-pose vertices of this model (model(**model.zero_params(1)).vertices[0]) or None."
        )
    if not bool(torch.isfinite(rv).all()):
        raise MaterialsError("rest_vertices contains NaN/inf; pass finite rest-pose vertices (or None).")
    return _features(labels, rv.to("cpu", torch.float64))


# ---------------------------------------------------------------------------------------
# Regions and colours
# ---------------------------------------------------------------------------------------


def material_regions(
    attrs: PersonAttributes | Mapping[str, Any], model: Any, rest_vertices: torch.Tensor | None = None
) -> torch.Tensor:
    """Material of every vertex: LongTensor ``(V,)`` into :data:`MATERIAL_NAMES` (on CPU),
    by the coverage rules of the module docstring."""
    a = _as_attrs(attrs)
    f = _get_features(model, rest_vertices)
    p = {k[5:]: m for k, m in f.items() if k.startswith("part:")}
    along, up, lateral = f["along"], f["up"], f["lateral"]
    mi = MATERIAL_INDEX
    region = torch.full(along.shape, mi["skin"], dtype=torch.long)

    feet = p["foot_l"] | p["foot_r"]
    upper_arms = p["upper_arm_l"] | p["upper_arm_r"]
    lower_arms = p["lower_arm_l"] | p["lower_arm_r"]
    upper_legs = p["upper_leg_l"] | p["upper_leg_r"]
    lower_legs = p["lower_leg_l"] | p["lower_leg_r"]
    torso = p["torso"]
    below_waist = torso & (up < WAIST)
    above_waist = torso & (up >= WAIST)

    # Shoes.
    if a.shoes in ("sneakers", "dress_shoes", "boots"):
        region[feet & (up <= 0.75)] = mi["shoes"]
        if a.shoes == "boots":
            region[feet] = mi["shoes"]
            region[lower_legs & (along >= 0.6)] = mi["shoes"]
        region[feet & (up <= 0.12)] = mi["sole"]
    elif a.shoes == "sandals":
        region[feet & ((up <= 0.06) | ((f["fwd"] >= 0.45) & (f["fwd"] <= 0.6)))] = mi["shoes"]

    # Bottom.
    bottom = a.effective_bottom
    if bottom is not None:
        cover = below_waist.clone()
        if bottom == "shorts":
            cover |= upper_legs & (along <= 0.6)
        elif bottom == "trousers":
            cover |= upper_legs | lower_legs
            if a.shoes != "boots":
                cover |= feet & (up > 0.75)
        else:  # skirt
            cover |= upper_legs
        region[cover] = mi["bottom"]

    # Top.
    if a.top == "dress":
        region[torso | upper_legs | (lower_legs & (along <= 0.35))] = mi["top"]
    elif a.top != "none":
        cover = above_waist.clone()
        if a.top == "t-shirt":
            cover |= upper_arms & (along <= 0.5)
        else:
            cover |= upper_arms | lower_arms
        if a.top == "jacket":
            cover |= p["neck"] & (up <= 0.3)
        region[cover] = mi["top"]
        if a.top == "jacket":
            region[above_waist & f["front"] & (up < 0.92) & (lateral <= 0.3)] = mi["inner"]

    # Hair.
    if a.hair_length != "bald":
        hair = p["hair"].clone()
        if a.hair_length in ("medium", "long"):
            hair |= f["hair_medium"]
        if a.hair_length == "long":
            # Down the upper back: an elliptical patch from the neck to up = 0.72.
            patch = (lateral / 0.45) ** 2 + ((up - 1.0) / 0.28) ** 2 <= 1.0
            hair |= p["head"] | f["neck_back"] | (torso & ~f["front"] & patch)
        region[hair] = mi["hair"]

    # Eyes.
    region[p["eyes"]] = mi["sclera"]
    region[p["eyes"] & f["iris"]] = mi["iris"]
    return region


def _luminance(rgb: tuple[float, float, float]) -> float:
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def material_colors(attrs: PersonAttributes | Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """sRGB colour (0..1) of every material of :data:`MATERIAL_NAMES` for ``attrs``. Materials
    the person does not wear get a neutral placeholder (they paint no vertex)."""
    a = _as_attrs(attrs)
    skin = parse_color(SKIN_TONES[a.skin_tone])
    top = parse_color(a.top_color) if a.top_color is not None else skin
    bottom = parse_color(a.bottom_color) if a.bottom_color is not None else top
    shoes = parse_color(a.shoes_color) if a.shoes_color is not None else skin
    if a.shoes == "sneakers":
        sole = parse_color(_SOLE_GRAY if _luminance(shoes) > 0.6 else _SOLE_WHITE)
    else:
        sole = parse_color(_SOLE_DARK)
    return {
        "skin": skin,
        "hair": parse_color(HAIR_COLORS[a.hair_color]),
        "sclera": parse_color(SCLERA_COLOR),
        "iris": parse_color(IRIS_COLOR),
        "top": top,
        "inner": parse_color(_INNER_DARK if _luminance(top) > 0.5 else _INNER_LIGHT),
        "bottom": bottom,
        "shoes": shoes,
        "sole": sole,
    }


def vertex_colors(
    attrs: PersonAttributes | Mapping[str, Any], model: Any, rest_vertices: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-vertex sRGB colours ``(V, 3)`` in 0..1 (float32, on the model's device) of the
    person ``attrs`` on ``model``'s mesh: :func:`material_colors` looked up by
    :func:`material_regions`. Deterministic. ``rest_vertices`` (``(V, 3)``) replaces the
    model's default rest pose for the garment-length decisions (e.g. the person's own shape
    at zero pose); the rest pose is computed once per model and cached otherwise."""
    region = material_regions(attrs, model, rest_vertices)
    colors = material_colors(attrs)
    table = torch.tensor([colors[n] for n in MATERIAL_NAMES], dtype=torch.float32)
    device = getattr(model, "device", torch.device("cpu"))
    return table[region].to(device)

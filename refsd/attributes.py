"""Person attributes: who the synthetic replacement person is.

A :class:`PersonAttributes` is a typed, validated, JSON-safe description of one synthetic
person (gender, age, body shape, skin tone, hair, clothing). It maps to

* a **body shape**: :func:`anny_shape` (Anny phenotypes) and :func:`smplx_shape` (SMPL-X
  gender file and shape coefficients),
* **render materials** painted through the body-part labels: :mod:`refsd.materials`
  (:func:`refsd.materials.vertex_colors`),
* **prompt text** for Stable Diffusion 1.5: :func:`build_prompt` (one person) and
  :func:`build_image_prompt` (everyone in an image).

:class:`AttributeDistribution` draws attributes for a whole dataset from user-set
distributions with a seed (same seed, same attributes, bit for bit; a person's attributes
depend only on ``(seed, image_index, person_index)``).

Every unknown name or out-of-range number raises :class:`AttributesError` (a
:class:`~refsd.errors.RefSDError`, i.e. a ``ValueError``) that lists the allowed values.
Names are matched case-insensitively and ignoring ``-``, ``_`` and spaces
(``"T_Shirt"`` = ``"t-shirt"``, ``"dress shoes"`` = ``"dress_shoes"``), plus a few aliases
(``grey`` -> ``gray``, ``blond`` -> ``blonde``, ``pants`` / ``jeans`` -> ``trousers``, ...);
values are stored in their canonical spelling.

Tables (all colours are sRGB, ``#rrggbb``)
-------------------------------------------
* Skin tone: :data:`SKIN_TONES` -- the 10 steps of the **Monk Skin Tone (MST) Scale**
  (Google's Monk Skin Tone Scale by Dr. Ellis Monk, https://skintone.google, licensed
  CC-BY-4.0), named ``mst1`` (lightest) .. ``mst10`` (darkest), and their prompt words
  :data:`SKIN_TONE_WORDS`.
* Hair: :data:`HAIR_COLORS` (name -> sRGB), :data:`HAIR_LENGTHS`.
* Clothing: :data:`TOPS`, :data:`BOTTOMS`, :data:`SHOES`; garment colours from the named
  palette :data:`COLORS` or any ``"#rrggbb"`` (prompt text then uses the nearest palette
  name, CIELAB distance). What each garment covers on the body is documented in
  :mod:`refsd.materials`.
* Age words: :data:`AGE_GROUPS`; body words: :data:`BODY_WORDS`.
* Height: ``height`` is 0..1 with 0.5 = the median height for the person's gender and age
  (:data:`STATURE_TABLE`), see :func:`stature_m`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from .errors import RefSDError

__all__ = [
    "AttributesError",
    "PersonAttributes",
    "AttributeDistribution",
    "PERSON_FIELDS",
    "GENDERS",
    "AGE_RANGE",
    "SKIN_TONES",
    "SKIN_TONE_WORDS",
    "SKIN_TONE_SOURCE",
    "HAIR_COLORS",
    "HAIR_LENGTHS",
    "TOPS",
    "BOTTOMS",
    "SHOES",
    "COLORS",
    "AGE_GROUPS",
    "BODY_WORDS",
    "STATURE_TABLE",
    "STATURE_CV",
    "STATURE_SD_RANGE",
    "DRESSES_AND_SKIRTS",
    "DEFAULT_HAIR_COLORS",
    "DEFAULT_HAIR_LENGTHS",
    "DEFAULT_TOPS",
    "DEFAULT_BOTTOMS",
    "DEFAULT_SHOES",
    "DEFAULT_TOP_COLORS",
    "DEFAULT_BOTTOM_COLORS",
    "DEFAULT_SHOES_COLORS",
    "QUALITY_TAGS",
    "NEGATIVE_TAGS",
    "parse_color",
    "color_rgb",
    "color_word",
    "age_group",
    "stature_m",
    "height_from_stature",
    "anny_shape",
    "smplx_shape",
    "smplx_gender",
    "person_description",
    "build_prompt",
    "build_image_prompt",
    "estimate_clip_tokens",
    "parse_choice_weights",
]


class AttributesError(RefSDError):
    """Person attributes or an attribute distribution are invalid (unknown name, value out
    of range, inconsistent combination). The message lists the allowed values."""


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------

GENDERS: tuple[str, ...] = ("female", "male")
#: Allowed ages in years (inclusive).
AGE_RANGE: tuple[float, float] = (1.0, 100.0)

#: Where the skin tone values come from.
SKIN_TONE_SOURCE = (
    "Monk Skin Tone Scale (Google's Monk Skin Tone Scale by Dr. Ellis Monk, https://skintone.google, CC-BY-4.0)"
)
#: Monk Skin Tone scale, lightest (``mst1``) to darkest (``mst10``), sRGB. See SKIN_TONE_SOURCE.
SKIN_TONES: dict[str, str] = {
    "mst1": "#f6ede4",
    "mst2": "#f3e7db",
    "mst3": "#f7ead0",
    "mst4": "#eadaba",
    "mst5": "#d7bd96",
    "mst6": "#a07e56",
    "mst7": "#825c43",
    "mst8": "#604134",
    "mst9": "#3a312a",
    "mst10": "#292420",
}
#: Prompt words per Monk step (followed by "skin" in the prompt).
SKIN_TONE_WORDS: dict[str, str] = {
    "mst1": "very fair",
    "mst2": "fair",
    "mst3": "light",
    "mst4": "light medium",
    "mst5": "medium",
    "mst6": "medium tan",
    "mst7": "tan",
    "mst8": "brown",
    "mst9": "dark brown",
    "mst10": "deep dark",
}

#: Hair colours (name -> sRGB used for the render material; the prompt uses the name).
HAIR_COLORS: dict[str, str] = {
    "black": "#1b1714",
    "dark_brown": "#3a2718",
    "brown": "#5b3b23",
    "light_brown": "#8b6a45",
    "blonde": "#d4b375",
    "red": "#a8492a",
    "auburn": "#7b3224",
    "gray": "#8f8d8a",
    "white": "#e5e2dc",
}
HAIR_LENGTHS: tuple[str, ...] = ("bald", "short", "medium", "long")
TOPS: tuple[str, ...] = ("none", "t-shirt", "long-sleeve", "jacket", "dress")
BOTTOMS: tuple[str, ...] = ("shorts", "trousers", "skirt")
SHOES: tuple[str, ...] = ("none", "sneakers", "boots", "dress_shoes", "sandals")

#: Named garment colours (sRGB; typical fabric shades). Any ``"#rrggbb"`` is accepted too.
COLORS: dict[str, str] = {
    "black": "#1a1a1a",
    "white": "#f0f0f0",
    "gray": "#808080",
    "dark_gray": "#3f3f3f",
    "light_gray": "#c4c4c4",
    "navy": "#1f2a4d",
    "blue": "#2a5caa",
    "light_blue": "#8fb8de",
    "denim": "#3c5a80",
    "teal": "#1f7a7a",
    "green": "#2e7d32",
    "dark_green": "#1f4d2b",
    "olive": "#6b6b2a",
    "yellow": "#e6c229",
    "orange": "#e07020",
    "red": "#b22222",
    "burgundy": "#6d1a2b",
    "pink": "#e89ab0",
    "purple": "#663d8c",
    "brown": "#6b4226",
    "camel": "#c19a6b",
    "beige": "#d9c8a9",
    "khaki": "#b5a572",
    "cream": "#f2e8d0",
}

#: Age groups: (from age in years, group, noun for a female, noun for a male); a person
#: belongs to the last group whose start is <= their age. The prompt says
#: "<age> year old <noun>", e.g. "34 year old woman", "70 year old elderly man".
AGE_GROUPS: tuple[tuple[float, str, str, str], ...] = (
    (1.0, "toddler", "toddler girl", "toddler boy"),
    (3.0, "child", "girl", "boy"),
    (13.0, "teenager", "teenage girl", "teenage boy"),
    (18.0, "young adult", "young woman", "young man"),
    (30.0, "adult", "woman", "man"),
    (45.0, "middle-aged", "middle-aged woman", "middle-aged man"),
    (65.0, "elderly", "elderly woman", "elderly man"),
)

#: Body-shape words added to the prompt (only for clearly non-average values; at most one
#: per attribute): (attribute, test, threshold, word). Checked in order, first match wins.
BODY_WORDS: tuple[tuple[str, str, float, str], ...] = (
    ("height", ">=", 0.8, "tall"),
    ("height", "<=", 0.2, "short"),
    ("weight", ">=", 0.85, "overweight"),
    ("weight", ">=", 0.7, "chubby"),
    ("weight", "<=", 0.15, "skinny"),
    ("weight", "<=", 0.3, "slim"),
    ("muscle", ">=", 0.8, "muscular"),
    ("muscle", ">=", 0.65, "athletic"),
)

#: Median stature in metres by age (years) for (male, female), linearly interpolated:
#: 1-4 y after the WHO Child Growth Standards, 5-19 y after the WHO 2007 growth reference
#: (both medians, rounded); adults keep the 19-year value until 40 and then lose ~4 cm by
#: 80 (age-related shrinkage). Approximate; a population-specific table can replace it.
STATURE_TABLE: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.757, 0.740),
    (2.0, 0.871, 0.857),
    (3.0, 0.961, 0.951),
    (4.0, 1.033, 1.027),
    (5.0, 1.100, 1.094),
    (6.0, 1.160, 1.151),
    (8.0, 1.273, 1.266),
    (10.0, 1.378, 1.386),
    (12.0, 1.491, 1.512),
    (14.0, 1.632, 1.598),
    (16.0, 1.729, 1.625),
    (18.0, 1.761, 1.631),
    (19.0, 1.765, 1.632),
    (40.0, 1.765, 1.632),
    (60.0, 1.750, 1.617),
    (80.0, 1.725, 1.592),
    (100.0, 1.705, 1.572),
)
#: Standard deviation of stature as a fraction of the median (about 7 cm for adult men).
STATURE_CV = 0.04
#: ``height`` 0 / 1 is this many standard deviations below / above the median.
STATURE_SD_RANGE = 2.5

#: Who may get dresses and skirts from an AttributeDistribution.
DRESSES_AND_SKIRTS: tuple[str, ...] = ("female", "anyone", "never")

#: Defaults of AttributeDistribution's weight tables (used when a table is None).
DEFAULT_HAIR_COLORS: dict[str, float] = {
    "black": 3.0, "dark_brown": 3.0, "brown": 2.5, "light_brown": 1.5, "blonde": 1.5,
    "red": 0.4, "auburn": 0.6, "gray": 0.0, "white": 0.0,
}  # fmt: skip
DEFAULT_HAIR_LENGTHS: dict[str, dict[str, float]] = {
    "female": {"bald": 0.0, "short": 1.5, "medium": 3.0, "long": 4.0},
    "male": {"bald": 1.0, "short": 7.0, "medium": 1.5, "long": 0.5},
}
DEFAULT_TOPS: dict[str, float] = {"none": 0.0, "t-shirt": 4.0, "long-sleeve": 3.0, "jacket": 2.0, "dress": 1.5}
DEFAULT_BOTTOMS: dict[str, float] = {"shorts": 1.5, "trousers": 5.0, "skirt": 1.5}
DEFAULT_SHOES: dict[str, float] = {"none": 0.0, "sneakers": 4.0, "boots": 1.5, "dress_shoes": 1.5, "sandals": 1.0}
DEFAULT_TOP_COLORS: dict[str, float] = {
    "black": 3.0, "white": 3.0, "gray": 2.0, "dark_gray": 1.0, "light_gray": 1.0, "navy": 1.5, "blue": 1.5,
    "light_blue": 1.0, "denim": 0.5, "teal": 0.5, "green": 0.7, "dark_green": 0.5, "olive": 0.7, "yellow": 0.5,
    "orange": 0.4, "red": 1.0, "burgundy": 0.7, "pink": 0.7, "purple": 0.5, "brown": 0.7, "camel": 0.5,
    "beige": 1.0, "khaki": 0.5, "cream": 0.7,
}  # fmt: skip
DEFAULT_BOTTOM_COLORS: dict[str, float] = {
    "denim": 4.0, "blue": 1.5, "light_blue": 0.5, "black": 3.0, "navy": 1.5, "gray": 1.5, "dark_gray": 1.0,
    "khaki": 1.5, "beige": 1.0, "brown": 1.0, "olive": 0.7, "white": 0.5,
}  # fmt: skip
DEFAULT_SHOES_COLORS: dict[str, float] = {
    "black": 4.0, "white": 3.0, "brown": 2.0, "gray": 1.0, "navy": 0.5, "beige": 0.5, "red": 0.3,
}  # fmt: skip

#: Appended to every positive prompt (style for SD1.5 photo checkpoints).
QUALITY_TAGS: tuple[str, ...] = ("natural light", "realistic", "detailed skin", "high quality")
#: Every negative prompt (the render is a flat-shaded 3D body: steer away from CGI looks).
NEGATIVE_TAGS: tuple[str, ...] = (
    "cartoon", "anime", "illustration", "painting", "3d render", "cgi", "plastic skin",
    "blurry", "lowres", "low quality", "jpeg artifacts", "deformed", "disfigured", "bad anatomy",
    "bad proportions", "extra limbs", "extra arms", "extra legs", "extra fingers", "missing fingers",
    "fused fingers", "bad hands", "long neck", "cross-eyed", "watermark", "text", "nsfw", "nude",
)  # fmt: skip

_GENDER_ALIASES = {"woman": "female", "f": "female", "girl": "female", "man": "male", "m": "male", "boy": "male"}
_HAIR_COLOR_ALIASES = {"blond": "blonde", "grey": "gray", "ginger": "red", "silver": "gray"}
_HAIR_LENGTH_ALIASES = {"shaved": "bald", "none": "bald", "shoulder": "medium", "shoulderlength": "medium"}
_TOP_ALIASES = {"tee": "t-shirt", "shirt": "long-sleeve", "longsleeveshirt": "long-sleeve", "coat": "jacket"}
_BOTTOM_ALIASES = {"pants": "trousers", "jeans": "trousers"}
_SHOE_ALIASES = {"sneaker": "sneakers", "trainers": "sneakers", "boot": "boots", "barefoot": "none"}
_COLOR_ALIASES = {"grey": "gray", "darkgrey": "dark_gray", "lightgrey": "light_gray"}


# ---------------------------------------------------------------------------------------
# Name / number / colour parsing
# ---------------------------------------------------------------------------------------


def _key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text.strip().lower())


def _choose(value: Any, allowed: Iterable[str], what: str, aliases: Mapping[str, str] | None = None) -> str:
    """Canonical spelling of ``value`` among ``allowed`` (case/separator-insensitive)."""
    allowed = tuple(allowed)
    if isinstance(value, str):
        table = {_key(a): a for a in allowed}
        for alias, target in (aliases or {}).items():
            table.setdefault(_key(alias), target)
        hit = table.get(_key(value))
        if hit is not None:
            return hit
    raise AttributesError(f"Unknown {what} {value!r}. Use one of: {', '.join(allowed)}.")


def _number(value: Any, what: str, lo: float, hi: float, meaning: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AttributesError(
            f"{what} must be a number in [{lo:g}, {hi:g}]{meaning}, got {value!r} ({type(value).__name__})."
        )
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise AttributesError(f"{what}={value!r} is out of range; use a number in [{lo:g}, {hi:g}]{meaning}.")
    return v


_HEX = re.compile(r"^#[0-9a-f]{6}$")


def _canon_color(value: Any, what: str) -> str:
    if isinstance(value, str) and _HEX.match(value.strip().lower()):
        return value.strip().lower()
    try:
        return _choose(value, COLORS, what, _COLOR_ALIASES)
    except AttributesError:
        raise AttributesError(
            f"Unknown {what} {value!r}. Use a palette colour ({', '.join(COLORS)}) or a hex colour '#rrggbb'."
        ) from None


def _hex_rgb(hex_str: str) -> tuple[int, int, int]:
    return int(hex_str[1:3], 16), int(hex_str[3:5], 16), int(hex_str[5:7], 16)


def color_rgb(color: str) -> tuple[int, int, int]:
    """sRGB ``(r, g, b)`` 0..255 of a palette colour name or ``"#rrggbb"``."""
    c = _canon_color(color, "colour")
    return _hex_rgb(COLORS.get(c, c))


def parse_color(color: str) -> tuple[float, float, float]:
    """sRGB ``(r, g, b)`` in 0..1 of a palette colour name or ``"#rrggbb"``."""
    r, g, b = color_rgb(color)
    return r / 255.0, g / 255.0, b / 255.0


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    def lin(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def color_word(color: str) -> str:
    """Prompt word for a garment colour: the palette name (``light_blue`` -> ``"light blue"``);
    for ``"#rrggbb"`` the nearest palette colour (CIELAB distance)."""
    c = _canon_color(color, "colour")
    if c not in COLORS:
        lab = _lab(_hex_rgb(c))
        c = min(COLORS, key=lambda n: sum((a - b) ** 2 for a, b in zip(lab, _lab(_hex_rgb(COLORS[n])), strict=True)))
    return c.replace("_", " ")


def age_group(years: float) -> tuple[str, str, str]:
    """``(group, female noun, male noun)`` of :data:`AGE_GROUPS` for an age in years."""
    years = _number(years, "age", *AGE_RANGE, " years")
    row = AGE_GROUPS[0]
    for r in AGE_GROUPS:
        if years >= r[0]:
            row = r
    return row[1], row[2], row[3]


# ---------------------------------------------------------------------------------------
# Height
# ---------------------------------------------------------------------------------------


def _median_stature(gender: str, years: float) -> float:
    col = 1 if gender == "male" else 2
    t = STATURE_TABLE
    if years <= t[0][0]:
        return t[0][col]
    for a, b in zip(t, t[1:], strict=False):
        if years <= b[0]:
            w = (years - a[0]) / (b[0] - a[0])
            return a[col] + w * (b[col] - a[col])
    return t[-1][col]


def stature_m(gender: str, age: float, height: float) -> float:
    """Body height in metres for ``height`` in 0..1 (0.5 = median of :data:`STATURE_TABLE`
    for the gender and age; 0 / 1 = :data:`STATURE_SD_RANGE` standard deviations below /
    above, with SD = :data:`STATURE_CV` x median). Adults: men 1.59 / 1.77 / 1.94 m,
    women 1.47 / 1.63 / 1.80 m for height 0 / 0.5 / 1."""
    gender = _choose(gender, GENDERS, "gender", _GENDER_ALIASES)
    age = _number(age, "age", *AGE_RANGE, " years")
    height = _number(height, "height", 0.0, 1.0, " (0.5 = average for the gender and age)")
    z = (height - 0.5) * 2.0 * STATURE_SD_RANGE
    return _median_stature(gender, age) * (1.0 + STATURE_CV * z)


def height_from_stature(gender: str, age: float, metres: float) -> float:
    """Inverse of :func:`stature_m`: the 0..1 ``height`` of a person ``metres`` tall.
    Raises AttributesError (naming the possible range) outside 0..1."""
    gender = _choose(gender, GENDERS, "gender", _GENDER_ALIASES)
    age = _number(age, "age", *AGE_RANGE, " years")
    metres = _number(metres, "height in metres", 0.3, 3.0)
    med = _median_stature(gender, age)
    h = 0.5 + (metres / med - 1.0) / STATURE_CV / (2.0 * STATURE_SD_RANGE)
    if not -1e-9 <= h <= 1.0 + 1e-9:
        lo, hi = stature_m(gender, age, 0.0), stature_m(gender, age, 1.0)
        raise AttributesError(
            f"A {age:g} year old {gender} person {metres:.2f} m tall is outside the supported range "
            f"{lo:.2f}..{hi:.2f} m; pick a height in that range."
        )
    return min(1.0, max(0.0, h))


# ---------------------------------------------------------------------------------------
# PersonAttributes
# ---------------------------------------------------------------------------------------


def _check_field(name: str, value: Any) -> Any:
    """Canonical value of one PersonAttributes field (field-local checks only)."""
    if name == "gender":
        return _choose(value, GENDERS, "gender", _GENDER_ALIASES)
    if name == "age":
        return _number(value, "age", *AGE_RANGE, " years")
    if name in ("weight", "muscle", "height"):
        return _number(value, name, 0.0, 1.0, " (0.5 = average for the gender and age)")
    if name == "skin_tone":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= int(value) <= 10:
            return f"mst{int(value)}"
        if isinstance(value, str) and re.fullmatch(r"\s*(10|[1-9])\s*", value):
            return f"mst{int(value)}"
        try:
            return _choose(value, SKIN_TONES, "skin_tone", {"monk" + k[3:]: k for k in SKIN_TONES})
        except AttributesError:
            raise AttributesError(
                f"Unknown skin_tone {value!r}. Use a Monk Skin Tone step: {', '.join(SKIN_TONES)} "
                "(or the number 1..10; mst1 is the lightest)."
            ) from None
    if name == "hair_color":
        return _choose(value, HAIR_COLORS, "hair_color", _HAIR_COLOR_ALIASES)
    if name == "hair_length":
        return _choose(value, HAIR_LENGTHS, "hair_length", _HAIR_LENGTH_ALIASES)
    if name == "top":
        return "none" if value is None else _choose(value, TOPS, "top", _TOP_ALIASES)
    if name == "bottom":
        return None if value is None else _choose(value, BOTTOMS, "bottom", _BOTTOM_ALIASES)
    if name == "shoes":
        return "none" if value is None else _choose(value, SHOES, "shoes", _SHOE_ALIASES)
    if name in ("top_color", "bottom_color", "shoes_color"):
        return None if value is None else _canon_color(value, name)
    raise AttributesError(f"Unknown person attribute {name!r}. Use one of: {', '.join(PERSON_FIELDS)}.")


@dataclass(frozen=True)
class PersonAttributes:
    """One synthetic person. Every field is validated and canonicalised on construction.

    Attributes:
        gender: ``"female"`` or ``"male"``.
        age: years, 1..100.
        weight, muscle: 0..1, 0.5 = average (Anny's phenotype scale).
        height: 0..1, 0.5 = median for the gender and age (see :func:`stature_m`).
        skin_tone: Monk Skin Tone step ``"mst1"`` (lightest) .. ``"mst10"`` (darkest).
        hair_color: one of :data:`HAIR_COLORS`.
        hair_length: one of :data:`HAIR_LENGTHS`.
        top: one of :data:`TOPS`; ``top_color`` its colour (None allowed with ``"none"``).
        bottom: one of :data:`BOTTOMS`; may be None (and is ignored) when ``top`` is
            ``"dress"``. ``bottom_color`` likewise.
        shoes: one of :data:`SHOES`; ``shoes_color`` (None allowed with ``"none"``).
    Colours are :data:`COLORS` names or ``"#rrggbb"``.
    """

    gender: str = "female"
    age: float = 30.0
    weight: float = 0.5
    muscle: float = 0.5
    height: float = 0.5
    skin_tone: str = "mst5"
    hair_color: str = "brown"
    hair_length: str = "medium"
    top: str = "t-shirt"
    top_color: str | None = "white"
    bottom: str | None = "trousers"
    bottom_color: str | None = "denim"
    shoes: str = "sneakers"
    shoes_color: str | None = "white"

    def __post_init__(self) -> None:
        for name, value in self._canonical().items():
            object.__setattr__(self, name, value)

    def _canonical(self) -> dict[str, Any]:
        out = {f.name: _check_field(f.name, getattr(self, f.name)) for f in fields(self)}
        if out["top"] != "dress":
            if out["bottom"] is None:
                raise AttributesError(
                    f"bottom is None but top is {out['top']!r}; a bottom can only be left out with top='dress'. "
                    f"Set bottom to one of: {', '.join(BOTTOMS)}."
                )
            if out["bottom_color"] is None:
                raise AttributesError(
                    "bottom_color is None; give the colour of the bottom (a palette name or '#rrggbb')."
                )
        if out["top"] != "none" and out["top_color"] is None:
            raise AttributesError(f"top_color is None but top is {out['top']!r}; give its colour.")
        if out["shoes"] != "none" and out["shoes_color"] is None:
            raise AttributesError(f"shoes_color is None but shoes is {out['shoes']!r}; give their colour.")
        return out

    def validate(self) -> PersonAttributes:
        """Re-check every field (construction already did); returns self."""
        self._canonical()
        return self

    # -- derived ----------------------------------------------------------------------
    @property
    def stature_m(self) -> float:
        """Body height in metres (:func:`stature_m`)."""
        return stature_m(self.gender, self.age, self.height)

    @property
    def effective_bottom(self) -> str | None:
        """The bottom actually worn: None with a dress."""
        return None if self.top == "dress" else self.bottom

    def replace(self, **changes: Any) -> PersonAttributes:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - set(PERSON_FIELDS)
        if unknown:
            raise AttributesError(f"Unknown person attribute(s) {sorted(unknown)}. Use: {', '.join(PERSON_FIELDS)}.")
        return replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (str / float / None values); ``from_dict(to_dict())`` is identical."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PersonAttributes:
        """Build from a dict such as :meth:`to_dict` returns; missing keys take the defaults."""
        if not isinstance(data, Mapping):
            raise AttributesError(
                f"Person attributes must be a dict/JSON object, got {type(data).__name__}. "
                f"Use keys: {', '.join(PERSON_FIELDS)}."
            )
        unknown = set(data) - set(PERSON_FIELDS)
        if unknown:
            raise AttributesError(
                f"Unknown person attribute(s) {sorted(map(str, unknown))}. Use: {', '.join(PERSON_FIELDS)}."
            )
        return cls(**dict(data))


#: Field names of PersonAttributes, in order.
PERSON_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PersonAttributes))


def _as_attrs(attrs: Any) -> PersonAttributes:
    if isinstance(attrs, PersonAttributes):
        return attrs
    if isinstance(attrs, Mapping):
        return PersonAttributes.from_dict(attrs)
    raise AttributesError(
        f"Expected PersonAttributes (or its dict), got {type(attrs).__name__}. "
        "Build one with PersonAttributes(...) or AttributeDistribution().sample_person(...)."
    )


# ---------------------------------------------------------------------------------------
# Body shape
# ---------------------------------------------------------------------------------------

#: Anny's rest-pose stature (metres) at height phenotype 0 and 1, by age in years, for
#: male (gender 0) and female (gender 1), at weight = muscle = proportions = 0.5. Measured
#: on anny 0.6.2; used by anny_shape only when no model is passed.
_ANNY_STATURE = (
    # years, male h=0, male h=1, female h=0, female h=1
    (1.0, 0.532, 1.049, 0.516, 1.032),
    (2.0, 0.620, 1.223, 0.584, 1.184),
    (3.0, 0.712, 1.398, 0.655, 1.338),
    (5.0, 0.854, 1.666, 0.767, 1.573),
    (8.0, 1.002, 1.943, 0.883, 1.816),
    (11.0, 1.095, 2.079, 0.968, 1.945),
    (14.0, 1.260, 2.310, 1.125, 2.169),
    (16.0, 1.367, 2.460, 1.231, 2.317),
    (18.0, 1.356, 2.450, 1.224, 2.309),
    (25.0, 1.355, 2.450, 1.223, 2.308),
    (40.0, 1.353, 2.448, 1.222, 2.307),
    (64.0, 1.350, 2.445, 1.220, 2.305),
    (80.0, 1.345, 2.440, 1.218, 2.301),
    (100.0, 1.338, 2.434, 1.217, 2.299),
)


def _table_stature(years: float, female: bool) -> tuple[float, float]:
    t = _ANNY_STATURE
    cols = (3, 4) if female else (1, 2)
    if years <= t[0][0]:
        return t[0][cols[0]], t[0][cols[1]]
    for a, b in zip(t, t[1:], strict=False):
        if years <= b[0]:
            w = (years - a[0]) / (b[0] - a[0])
            return tuple(a[c] + w * (b[c] - a[c]) for c in cols)  # type: ignore[return-value]
    return t[-1][cols[0]], t[-1][cols[1]]


def _statures(model: Any, shapes: torch.Tensor) -> torch.Tensor:
    """Rest-pose vertical extent (metres) of ``model`` for each row of ``shapes``."""
    params = model.zero_params(shapes.shape[0])
    params["shape"] = shapes.to(device=model.device, dtype=model.dtype)
    with torch.no_grad():
        v = model(**params).vertices[..., 1]
    return (v.amax(dim=1) - v.amin(dim=1)).to(torch.float64).cpu()


def anny_shape(attrs: PersonAttributes | Mapping[str, Any], model: Any = None) -> torch.Tensor:
    """Anny shape vector ``(6,)`` (phenotypes gender, age, muscle, weight, height, proportions).

    * ``gender``: female 1.0, male 0.0; ``age``: :func:`refsd.body.anny_backend.age_from_years`;
      ``muscle`` / ``weight``: the attributes as they are (same 0..1 scale, 0.5 = average);
      ``proportions``: the model's default (0.5).
    * ``height``: the phenotype that makes the rest-pose mesh :attr:`PersonAttributes.stature_m`
      tall (top of the head to the soles). With ``model`` (an Anny body model) it is solved
      on the model itself (one batched rest-pose evaluation at height 0, 0.5, 1 and
      piecewise-linear interpolation; within a few mm); without, from a table measured on
      anny 0.6.2 (within ~1 cm at average weight and muscle, a few cm at extremes). Clamped to Anny's 0..1, so very short/tall targets (e.g. for toddlers)
      are approached as closely as Anny allows.

    Returns a tensor on the model's device/dtype (CPU float32 without a model).
    """
    from .body.anny_backend import ANNY_SHAPE_NAMES, age_from_years

    attrs = _as_attrs(attrs)
    female = attrs.gender == "female"
    if model is not None and tuple(getattr(model, "shape_names", ())) != ANNY_SHAPE_NAMES:
        raise AttributesError(
            f"anny_shape needs the Anny body model (shape {ANNY_SHAPE_NAMES}), got one with shape "
            f"{tuple(getattr(model, 'shape_names', ()))}. Use smplx_shape for SMPL-X, or pass model=None."
        )
    proportions = 0.5 if model is None else float(model.default_shape(1)[0, ANNY_SHAPE_NAMES.index("proportions")])
    base = torch.tensor(
        [1.0 if female else 0.0, float(age_from_years(attrs.age)), attrs.muscle, attrs.weight, 0.5, proportions],
        dtype=torch.float64,
    )
    hi_idx = ANNY_SHAPE_NAMES.index("height")
    target = attrs.stature_m
    if model is None:
        s0, s1 = _table_stature(attrs.age, female)
        h = (target - s0) / (s1 - s0)
    else:
        probe = base.repeat(3, 1)
        probe[:, hi_idx] = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        s0, sm, s1 = _statures(model, probe).tolist()
        # Piecewise-linear through (0, s0), (0.5, sm), (1, s1), extrapolated at the ends.
        h = 0.5 * (target - s0) / (sm - s0) if target < sm else 0.5 + 0.5 * (target - sm) / (s1 - sm)
    base[hi_idx] = min(1.0, max(0.0, h))
    if model is None:
        return base.to(torch.float32)
    return base.to(device=model.device, dtype=model.dtype)


def smplx_gender(attrs: PersonAttributes | Mapping[str, Any]) -> str:
    """The SMPL-X gender (``"female"`` / ``"male"``) for ``get_body_model("smplx", gender=...)``."""
    return _as_attrs(attrs).gender


def _girth(model: Any, shapes: torch.Tensor) -> torch.Tensor:
    """Mean horizontal distance of the torso vertices from their centroid, per shape row."""
    from .body.base import PART_INDEX

    params = model.zero_params(shapes.shape[0])
    params["shape"] = shapes.to(device=model.device, dtype=model.dtype)
    with torch.no_grad():
        v = model(**params).vertices[:, model.part_labels == PART_INDEX["torso"]][..., [0, 2]].to(torch.float64)
    return (v - v.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=1).cpu()


def smplx_shape(
    attrs: PersonAttributes | Mapping[str, Any], num_betas: int = 10, model: Any = None
) -> tuple[str, torch.Tensor]:
    """SMPL-X gender file name and shape coefficients ``(num_betas,)`` for ``attrs``.

    Returns ``(file_name, betas)``, e.g. ``("SMPLX_FEMALE.npz", tensor([...]))``; build the
    model with ``get_body_model("smplx", gender=smplx_gender(attrs))``.

    The mapping is **approximate**: SMPL-X's betas are PCA coefficients with no guaranteed
    meaning or sign. Only two are set, the rest stay 0:

    * ``beta0`` ~ overall size / stature, ``beta1`` ~ weight (girth).
    * Without ``model``: a rough prior, ``beta0`` = the stature's z-score against the adult
      median of :data:`STATURE_TABLE` (assuming +beta0 = taller, ~1 SD per unit) and
      ``beta1 = 4 * (weight - 0.5)`` (assuming +beta1 = heavier).
    * With ``model`` (an SMPL-X body model, ideally of the returned gender): calibrated on
      it -- the sign of ``beta1`` is chosen so more weight means a wider torso, and
      ``beta0`` is solved so the rest-pose mesh is :attr:`PersonAttributes.stature_m` tall.
      ``num_betas`` is then the model's.

    ``muscle`` and the age's body proportions have no SMPL-X equivalent here (SMPL-X has no
    child shape space); every beta is clamped to [-3, 3].
    """
    from .body.smplx_backend import SMPLX_FILE_NAMES

    attrs = _as_attrs(attrs)
    file_name = SMPLX_FILE_NAMES[attrs.gender]
    if model is not None:
        names = tuple(getattr(model, "shape_names", ()))
        if not names or not all(n.startswith("beta") for n in names):
            raise AttributesError(
                f"smplx_shape needs an SMPL-X body model (shape beta0..), got one with shape {names}. "
                "Use anny_shape for Anny, or pass model=None."
            )
        num_betas = len(names)
    if isinstance(num_betas, bool) or not isinstance(num_betas, numbers.Integral) or not 2 <= int(num_betas) <= 300:
        raise AttributesError(f"num_betas={num_betas!r}: use an integer in [2, 300] (SMPL-X files have 10 or 300).")
    betas = torch.zeros(int(num_betas), dtype=torch.float64)
    target = attrs.stature_m
    w = 4.0 * (attrs.weight - 0.5)
    if model is None:
        adult = _median_stature(attrs.gender, 40.0)
        betas[0] = (target / adult - 1.0) / STATURE_CV
        betas[1] = w
        return file_name, betas.clamp(-3.0, 3.0).to(torch.float32)
    probe = torch.zeros(2, int(num_betas), dtype=torch.float64)
    probe[0, 1], probe[1, 1] = -1.0, 1.0
    g = _girth(model, probe)
    betas[1] = max(-3.0, min(3.0, w if float(g[1]) >= float(g[0]) else -w))
    ends = betas.repeat(2, 1)
    ends[0, 0], ends[1, 0] = -1.0, 1.0
    s_lo, s_hi = _statures(model, ends).tolist()
    if abs(s_hi - s_lo) > 1e-6:
        b0 = -1.0 + 2.0 * (target - s_lo) / (s_hi - s_lo)
        betas[0] = max(-3.0, min(3.0, b0))
    return file_name, betas.to(device=model.device, dtype=model.dtype)


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------


def _unit(seed: int, image_index: int, person_index: int, key: str) -> float:
    """A uniform number in [0, 1) determined only by (seed, image, person, key)."""
    digest = hashlib.blake2b(
        f"{seed}:{image_index}:{person_index}:{key}".encode(), digest_size=8, person=b"refsd-attrs"
    ).digest()
    return (int.from_bytes(digest, "big") >> 11) * 2.0**-53


def _indices(seed: Any, image_index: Any, person_index: Any) -> tuple[int, int, int]:
    for name, v in (("seed", seed), ("image_index", image_index), ("person_index", person_index)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise AttributesError(f"{name} must be an integer, got {v!r}.")
    if int(image_index) < 0 or int(person_index) < 0:
        raise AttributesError(f"image_index and person_index must be >= 0, got {image_index}, {person_index}.")
    return int(seed), int(image_index), int(person_index)


def _categorical(u: float, allowed: Iterable[str], weights: Mapping[str, float]) -> str:
    items = [(a, float(weights.get(a, 0.0))) for a in allowed]  # canonical order: dict order is irrelevant
    total = math.fsum(w for _, w in items)
    acc = 0.0
    last = None
    for name, w in items:
        if w <= 0.0:
            continue
        last = name
        acc += w
        if u * total < acc:
            return name
    assert last is not None  # weights were validated
    return last


_WEIGHT_TABLES: dict[str, tuple[tuple[str, ...], Mapping[str, str] | None]] = {
    "skin_tones": (tuple(SKIN_TONES), None),
    "hair_colors": (tuple(HAIR_COLORS), _HAIR_COLOR_ALIASES),
    "hair_lengths": (HAIR_LENGTHS, _HAIR_LENGTH_ALIASES),
    "tops": (TOPS, _TOP_ALIASES),
    "bottoms": (BOTTOMS, _BOTTOM_ALIASES),
    "shoes": (SHOES, _SHOE_ALIASES),
    "colors": (tuple(COLORS), _COLOR_ALIASES),
    "bottom_colors": (tuple(COLORS), _COLOR_ALIASES),
    "shoes_colors": (tuple(COLORS), _COLOR_ALIASES),
}
_RANGES: dict[str, tuple[float, float]] = {
    "age_range": AGE_RANGE,
    "weight_range": (0.0, 1.0),
    "muscle_range": (0.0, 1.0),
    "height_range": (0.0, 1.0),
}


def _check_weights(name: str, table: Any) -> dict[str, float] | None:
    if table is None:
        return None
    allowed, aliases = _WEIGHT_TABLES[name]
    if not isinstance(table, Mapping) or not table:
        raise AttributesError(
            f"{name} must be a non-empty dict of weights (or None for the defaults), e.g. "
            f"{{{allowed[0]!r}: 1.0}}; allowed keys: {', '.join(allowed)}."
        )
    out: dict[str, float] = {}
    for key, w in table.items():
        canon = _choose(key, allowed, f"{name} entry", aliases)
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(float(w)) or float(w) < 0:
            raise AttributesError(f"{name}[{key!r}] = {w!r}: weights must be finite numbers >= 0.")
        out[canon] = out.get(canon, 0.0) + float(w)
    if math.fsum(out.values()) <= 0.0:
        raise AttributesError(f"{name}: the weights sum to 0; give at least one value a positive weight.")
    return out


@dataclass
class AttributeDistribution:
    """Distributions from which :meth:`sample_person` draws :class:`PersonAttributes`.

    Numbers are drawn uniformly from their ``*_range`` (inclusive; ``(x, x)`` pins a value;
    age rounded to 0.1 year, the 0..1 values to 0.001). Names are drawn from weight tables
    ``{name: weight}`` (weights >= 0, not all 0; missing names weigh 0); a table left None
    uses RefSD's default (``DEFAULT_*`` in :mod:`refsd.attributes`):

    * ``skin_tones``: uniform over the 10 Monk steps.
    * ``hair_colors``: :data:`DEFAULT_HAIR_COLORS`. With ``gray_hair_with_age`` (default True)
      a person may then turn gray or white with age, whatever the table: probability
      ``clamp((age - 40) / 40, 0, 0.8)``, white rather than gray with probability
      ``clamp((age - 55) / 50, 0, 0.6)``.
    * ``hair_lengths``: gender-dependent :data:`DEFAULT_HAIR_LENGTHS` (a given table applies
      to everyone).
    * ``tops`` / ``bottoms`` / ``shoes``: :data:`DEFAULT_TOPS` etc. (no ``"none"`` top or
      shoes by default). ``dresses_and_skirts`` (``"female"`` default, ``"anyone"``,
      ``"never"``) decides who may get a dress or a skirt, for default and given tables.
      With a dress, ``bottom`` and ``bottom_color`` are None.
    * ``colors``: garment colours (:data:`DEFAULT_TOP_COLORS` when None); ``bottom_colors`` /
      ``shoes_colors`` override it for bottoms / shoes (defaults
      :data:`DEFAULT_BOTTOM_COLORS` / :data:`DEFAULT_SHOES_COLORS` when both they and
      ``colors`` are None; ``colors`` when only ``colors`` is set).
    * Gender is female with probability ``female_probability``; the other draws are
      independent of each other except as stated above (hair length by gender, gray hair by
      age, dresses/skirts by gender, no bottom with a dress).

    ``fixed`` pins any PersonAttributes fields (``{"gender": "female", "top": "dress"}``);
    pinned values take part in the dependent draws (a pinned age ages the hair).

    Each attribute has its own random stream derived from a hash of ``(seed, image_index,
    person_index, attribute)`` (BLAKE2b), so results are identical on every platform and
    version, a person does not change when other people are added, and pinning one
    attribute leaves the others' draws unchanged.
    """

    female_probability: float = 0.5
    age_range: tuple[float, float] = (18.0, 70.0)
    weight_range: tuple[float, float] = (0.2, 0.8)
    muscle_range: tuple[float, float] = (0.2, 0.8)
    height_range: tuple[float, float] = (0.15, 0.85)
    skin_tones: dict[str, float] | None = None
    hair_colors: dict[str, float] | None = None
    hair_lengths: dict[str, float] | None = None
    tops: dict[str, float] | None = None
    bottoms: dict[str, float] | None = None
    shoes: dict[str, float] | None = None
    colors: dict[str, float] | None = None
    bottom_colors: dict[str, float] | None = None
    shoes_colors: dict[str, float] | None = None
    dresses_and_skirts: str = "female"
    gray_hair_with_age: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> AttributeDistribution:
        """Check and canonicalise every field (in place); returns self."""
        self.female_probability = _number(self.female_probability, "female_probability", 0.0, 1.0)
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable) or len(tuple(value)) != 2:
                raise AttributesError(f"{name} must be a pair (low, high) within [{lo:g}, {hi:g}], got {value!r}.")
            a, b = (_number(v, name, lo, hi) for v in value)
            if a > b:
                raise AttributesError(f"{name}=({a:g}, {b:g}): low is above high; swap them.")
            setattr(self, name, (a, b))
        for name in _WEIGHT_TABLES:
            setattr(self, name, _check_weights(name, getattr(self, name)))
        self.dresses_and_skirts = _choose(self.dresses_and_skirts, DRESSES_AND_SKIRTS, "dresses_and_skirts")
        if not isinstance(self.gray_hair_with_age, bool):
            raise AttributesError(f"gray_hair_with_age must be True or False, got {self.gray_hair_with_age!r}.")
        if not isinstance(self.fixed, Mapping):
            raise AttributesError(f"fixed must be a dict {{attribute: value}}, got {type(self.fixed).__name__}.")
        pinned = {}
        for key, value in self.fixed.items():
            if key not in PERSON_FIELDS:
                raise AttributesError(f"fixed: unknown person attribute {key!r}. Use: {', '.join(PERSON_FIELDS)}.")
            pinned[key] = _check_field(key, value)
        self.fixed = pinned
        # Every gender that can occur must have something to wear.
        genders = [g for g, p in (("female", self.female_probability), ("male", 1 - self.female_probability)) if p > 0]
        if "gender" in pinned:
            genders = [pinned["gender"]]
        for g in genders:
            if "top" not in pinned and not any(w > 0 for w in self._tops(g).values()):
                raise AttributesError(
                    f"tops: no top has a positive weight for {g} people (dresses_and_skirts="
                    f"{self.dresses_and_skirts!r}). Add another top or set dresses_and_skirts='anyone'."
                )
            if "bottom" not in pinned and not any(w > 0 for w in self._bottoms(g).values()):
                possible_tops = {pinned["top"]} if "top" in pinned else {k for k, w in self._tops(g).items() if w > 0}
                if possible_tops == {"dress"}:
                    continue
                raise AttributesError(
                    f"bottoms: no bottom has a positive weight for {g} people (dresses_and_skirts="
                    f"{self.dresses_and_skirts!r}). Add another bottom or set dresses_and_skirts='anyone'."
                )
        return self

    # -- tables ----------------------------------------------------------------------------
    def _allows_dress(self, gender: str) -> bool:
        return self.dresses_and_skirts == "anyone" or (self.dresses_and_skirts == "female" and gender == "female")

    def _tops(self, gender: str) -> dict[str, float]:
        t = dict(self.tops if self.tops is not None else DEFAULT_TOPS)
        if not self._allows_dress(gender):
            t["dress"] = 0.0
        return t

    def _bottoms(self, gender: str) -> dict[str, float]:
        t = dict(self.bottoms if self.bottoms is not None else DEFAULT_BOTTOMS)
        if not self._allows_dress(gender):
            t["skirt"] = 0.0
        return t

    def _colors(self, garment: str) -> dict[str, float]:
        own = {"top": None, "bottom": self.bottom_colors, "shoes": self.shoes_colors}[garment]
        if own is not None:
            return own
        if self.colors is not None:
            return self.colors
        return {"top": DEFAULT_TOP_COLORS, "bottom": DEFAULT_BOTTOM_COLORS, "shoes": DEFAULT_SHOES_COLORS}[garment]

    # -- sampling --------------------------------------------------------------------------
    def sample_person(self, seed: int, image_index: int = 0, person_index: int = 0) -> PersonAttributes:
        """The attributes of person ``person_index`` in image ``image_index`` for ``seed``."""
        self.validate()
        return self._draw(*_indices(seed, image_index, person_index))

    def sample(self, seed: int, n: int, image_index: int = 0) -> list[PersonAttributes]:
        """``n`` people of image ``image_index``: ``[sample_person(seed, image_index, i) for i < n]``."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise AttributesError(f"n must be an integer >= 0 (number of people), got {n!r}.")
        self.validate()
        return [self._draw(*_indices(seed, image_index, i)) for i in range(int(n))]

    def _draw(self, seed: int, image_index: int, person_index: int) -> PersonAttributes:
        fx = self.fixed

        def u(key: str) -> float:
            return _unit(seed, image_index, person_index, key)

        def uniform(key: str, rng: tuple[float, float], digits: int) -> float:
            lo, hi = rng
            return min(hi, max(lo, round(lo + u(key) * (hi - lo), digits)))

        out: dict[str, Any] = {}
        out["gender"] = fx.get("gender", "female" if u("gender") < self.female_probability else "male")
        g = out["gender"]
        out["age"] = fx.get("age", uniform("age", self.age_range, 1))
        for name in ("weight", "muscle", "height"):
            out[name] = fx.get(name, uniform(name, getattr(self, f"{name}_range"), 3))
        out["skin_tone"] = fx.get(
            "skin_tone", _categorical(u("skin_tone"), SKIN_TONES, self.skin_tones or dict.fromkeys(SKIN_TONES, 1.0))
        )
        if "hair_color" in fx:
            out["hair_color"] = fx["hair_color"]
        else:
            hair = _categorical(u("hair_color"), HAIR_COLORS, self.hair_colors or DEFAULT_HAIR_COLORS)
            if self.gray_hair_with_age and hair not in ("gray", "white"):
                age = out["age"]
                if u("graying") < min(0.8, max(0.0, (age - 40.0) / 40.0)):
                    hair = "white" if u("white_hair") < min(0.6, max(0.0, (age - 55.0) / 50.0)) else "gray"
            out["hair_color"] = hair
        out["hair_length"] = fx.get(
            "hair_length", _categorical(u("hair_length"), HAIR_LENGTHS, self.hair_lengths or DEFAULT_HAIR_LENGTHS[g])
        )
        out["top"] = fx.get("top", _categorical(u("top"), TOPS, self._tops(g)))
        out["top_color"] = fx.get(
            "top_color", None if out["top"] == "none" else _categorical(u("top_color"), COLORS, self._colors("top"))
        )
        if "bottom" in fx:
            out["bottom"] = fx["bottom"]
        elif out["top"] == "dress":
            out["bottom"] = None
        else:
            out["bottom"] = _categorical(u("bottom"), BOTTOMS, self._bottoms(g))
        out["bottom_color"] = fx.get(
            "bottom_color",
            None if out["bottom"] is None else _categorical(u("bottom_color"), COLORS, self._colors("bottom")),
        )
        out["shoes"] = fx.get("shoes", _categorical(u("shoes"), SHOES, self.shoes or DEFAULT_SHOES))
        out["shoes_color"] = fx.get(
            "shoes_color",
            None if out["shoes"] == "none" else _categorical(u("shoes_color"), COLORS, self._colors("shoes")),
        )
        return PersonAttributes(**out)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ranges as lists); ``from_dict(to_dict())`` is equal."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributeDistribution:
        """Build from a dict such as :meth:`to_dict` returns; missing keys take the defaults."""
        names = tuple(f.name for f in fields(cls))
        if not isinstance(data, Mapping):
            raise AttributesError(f"An attribute distribution must be a dict/JSON object, got {type(data).__name__}.")
        unknown = set(data) - set(names)
        if unknown:
            raise AttributesError(
                f"Unknown distribution field(s) {sorted(map(str, unknown))}. Use: {', '.join(names)}."
            )
        kw = dict(data)
        for name in _RANGES:
            if name in kw and isinstance(kw[name], list):
                kw[name] = tuple(kw[name])
        return cls(**kw)


# ---------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _article(phrase: str) -> str:
    first = phrase.split()[0] if phrase.split() else ""
    if first.isdigit():
        n = int(first)
        vowel = n == 8 or n == 11 or n == 18 or 80 <= n <= 89 or 800 <= n <= 899
    else:
        vowel = first[:1].lower() in "aeiou"
    return ("an " if vowel else "a ") + phrase


def _body_words(a: PersonAttributes) -> list[str]:
    out, seen = [], set()
    for attr, op, thr, word in BODY_WORDS:
        if attr in seen:
            continue
        v = getattr(a, attr)
        if (v >= thr) if op == ">=" else (v <= thr):
            out.append(word)
            seen.add(attr)
    return out


def _hair_phrase(a: PersonAttributes) -> str:
    if a.hair_length == "bald":
        return "bald"
    length = {"short": "short", "medium": "medium-length", "long": "long"}[a.hair_length]
    return f"{length} {a.hair_color.replace('_', ' ')} hair"


def _clothing(a: PersonAttributes) -> list[str]:
    """Clothing phrases: [top/bottom phrase, shoes phrase]."""
    worn: list[str] = []
    bare = ""
    if a.top == "none":
        bare = "shirtless"
    else:
        noun = {
            "t-shirt": "t-shirt",
            "long-sleeve": "long-sleeve shirt",
            "jacket": "jacket",
            "dress": "knee-length dress",
        }
        worn.append(_article(f"{color_word(a.top_color)} {noun[a.top]}"))
    bottom = a.effective_bottom
    if bottom is not None:
        word = color_word(a.bottom_color)
        if bottom == "trousers":
            worn.append("jeans" if word == "denim" else f"{word} jeans" if word in ("blue", "light blue", "navy")
                        else f"{word} trousers")  # fmt: skip
        elif bottom == "shorts":
            worn.append(f"{word} shorts")
        else:
            worn.append(_article(f"{word} skirt"))
    phrases = []
    if bare:
        phrases.append(bare)
    if worn:
        phrases.append("wearing " + " and ".join(worn))
    if a.shoes == "none":
        phrases.append("barefoot")
    else:
        noun = {"sneakers": "sneakers", "boots": "boots", "dress_shoes": "dress shoes", "sandals": "sandals"}
        phrases.append(f"{color_word(a.shoes_color)} {noun[a.shoes]}")
    return phrases


def person_description(attrs: PersonAttributes | Mapping[str, Any]) -> str:
    """Comma-separated tags describing one person, most important first, e.g.
    ``"34 year old woman, medium skin, slim, long blonde hair, wearing a red t-shirt and blue
    jeans, white sneakers"`` (no article, no style tags)."""
    a = _as_attrs(attrs)
    _, female_noun, male_noun = age_group(a.age)
    years = int(math.floor(a.age + 0.5))
    tags = [f"{years} year old {female_noun if a.gender == 'female' else male_noun}"]
    tags.append(f"{SKIN_TONE_WORDS[a.skin_tone]} skin")
    tags += _body_words(a)
    tags.append(_hair_phrase(a))
    tags += _clothing(a)
    return ", ".join(tags)


def _person_negative(a: PersonAttributes) -> list[str]:
    out = []
    if a.gender == "female" or a.age < 16:
        out += ["beard", "mustache"]
    if a.hair_length in ("bald", "short"):
        out.append("long hair")
    elif a.hair_length == "long":
        out += ["short hair", "bald"]
    return out


def _person_traits(a: PersonAttributes) -> set[str]:
    """Negative-prompt terms this person must not be steered away from (for group prompts)."""
    out = (
        {"long hair"}
        if a.hair_length in ("medium", "long")
        else {"short hair"}
        if a.hair_length == "short"
        else {"bald"}
    )
    if a.gender == "male" and a.age >= 16:
        out |= {"beard", "mustache"}
    return out


def _clean(text: Any, what: str) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise AttributesError(f"{what} must be text, got {type(text).__name__}.")
    return text.strip().strip(",").strip()


def _join(*parts: Iterable[str] | str) -> str:
    out: list[str] = []
    for p in parts:
        for t in [p] if isinstance(p, str) else p:
            if t and t not in out:
                out.append(t)
    return ", ".join(out)


def build_prompt(
    attrs: PersonAttributes | Mapping[str, Any], extra_positive: str = "", extra_negative: str = ""
) -> tuple[str, str]:
    """``(positive, negative)`` prompt text for one person, SD1.5 style.

    Positive: ``"a photo of a <person_description>, <extra_positive>, natural light, realistic,
    detailed skin, high quality"`` -- e.g. ``"a photo of a 34 year old woman, medium skin,
    long blonde hair, wearing a red t-shirt and blue jeans, white sneakers, natural light,
    realistic, detailed skin, high quality"`` (about 45 CLIP tokens; typical people stay
    under 77, see :func:`estimate_clip_tokens`). Negative: person-specific terms (e.g.
    ``beard`` for women, ``short hair`` for long hair), :data:`NEGATIVE_TAGS`, then
    ``extra_negative``. User text is kept verbatim (trimmed of surrounding commas/spaces).
    """
    a = _as_attrs(attrs)
    pos = _join("a photo of " + _article(person_description(a)), _clean(extra_positive, "extra_positive"), QUALITY_TAGS)
    neg = _join(_person_negative(a), NEGATIVE_TAGS, _clean(extra_negative, "extra_negative"))
    return pos, neg


def build_image_prompt(
    people: Iterable[PersonAttributes | Mapping[str, Any]], extra_positive: str = "", extra_negative: str = ""
) -> tuple[str, str]:
    """``(positive, negative)`` for a whole image. One person: :func:`build_prompt`. Several:
    ``"a photo of two people: <person 1>; <person 2>, <extra>, <quality tags>"`` (people in
    the given order, counts one..ten in words), negative = the union of the people's
    negatives. Long groups exceed CLIP's 77 tokens; ComfyUI then encodes the text in
    several 77-token chunks."""
    if isinstance(people, (PersonAttributes, Mapping)):
        people = [people]
    items = [_as_attrs(p) for p in people]
    if not items:
        raise AttributesError("build_image_prompt got no people; pass at least one PersonAttributes.")
    if len(items) == 1:
        return build_prompt(items[0], extra_positive, extra_negative)
    count = _NUMBER_WORDS[len(items)] if len(items) < len(_NUMBER_WORDS) else str(len(items))
    body = f"a photo of {count} people: " + "; ".join(_article(person_description(a)) for a in items)
    pos = _join(body, _clean(extra_positive, "extra_positive"), QUALITY_TAGS)
    negs: list[str] = []
    for a in items:
        negs += [t for t in _person_negative(a) if t not in negs]
    # A term that would fight one of the people is dropped (e.g. "long hair" when someone has it).
    traits = set().union(*(_person_traits(a) for a in items))
    negs = [t for t in negs if t not in traits]
    neg = _join(negs, NEGATIVE_TAGS, _clean(extra_negative, "extra_negative"))
    return pos, neg


def estimate_clip_tokens(text: str) -> int:
    """Rough CLIP token count of ``text`` (without the start/end tokens; SD1.5 encodes 75 per
    chunk): one per word, number and punctuation mark, one more for each 8 letters beyond the
    first 8 of a long word. CLIP's BPE usually gives the same or fewer."""
    n = 0
    for tok in re.findall(r"[a-z]+|\d+|[^\sa-z\d]", str(text).lower()):
        n += 1 + (max(0, len(tok) - 8) + 7) // 8 if tok.isalpha() else 1
    return n


def parse_choice_weights(text: str | None, allowed: Iterable[str], what: str) -> dict[str, float] | None:
    """A weight table from text, as the nodes and the command line take it: ``"all"`` / ``""``
    -> None (RefSD's default table); ``"a, b, c"`` -> equal weights; ``"a:2, b:1"`` -> weights.
    Unknown names and non-numeric weights raise :class:`AttributesError` listing the allowed values."""
    allowed = list(allowed)
    text = (text or "").strip()
    if text.lower() in ("", "all", "default"):
        return None
    out: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, w = item.partition(":")
        name = name.strip()
        if name not in allowed:
            raise AttributesError(f"{what}: unknown value {name!r}; allowed: {', '.join(allowed)}")
        try:
            out[name] = float(w) if w.strip() else 1.0
        except ValueError as e:
            raise AttributesError(f"{what}: weight {w!r} of {name!r} is not a number (write name:weight)") from e
    return out

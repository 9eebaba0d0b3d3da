"""Person-attribute vocabulary: the allowed names and the parsers every attribute goes through.

The tables of allowed values (all colours are sRGB, ``#rrggbb``):

* Gender: :data:`GENDERS`; age in years: :data:`AGE_RANGE`.
* Skin tone: :data:`SKIN_TONES` -- the 10 steps of the **Monk Skin Tone (MST) Scale**
  (Google's Monk Skin Tone Scale by Dr. Ellis Monk, https://skintone.google, licensed
  CC-BY-4.0), named ``mst1`` (lightest) .. ``mst10`` (darkest); their prompt words are
  :data:`refsd.people.prompt.SKIN_TONE_WORDS`.
* Hair: :data:`HAIR_COLORS` (name -> sRGB), :data:`HAIR_LENGTHS`.
* Clothing: :data:`TOPS`, :data:`BOTTOMS`, :data:`SHOES`; garment colours from the named
  palette :data:`COLORS` or any ``"#rrggbb"`` (prompt text then uses the nearest palette
  name, CIELAB distance, :func:`color_word`). What each garment covers on the body is
  documented in :mod:`refsd.people.materials`.

Every unknown name or out-of-range number raises :class:`AttributesError` (a
:class:`~refsd.errors.RefSDError`, i.e. a ``ValueError``) that lists the allowed values.
Names are matched case-insensitively and ignoring ``-``, ``_`` and spaces
(``"T_Shirt"`` = ``"t-shirt"``, ``"dress shoes"`` = ``"dress_shoes"``), plus a few aliases
(``grey`` -> ``gray``, ``blond`` -> ``blonde``, ``pants`` / ``jeans`` -> ``trousers``, ...);
values are stored in their canonical spelling. :func:`parse_choice_weights` reads a weight
table over these names from text (nodes, command line).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import RefSDError

__all__ = [
    "AttributesError",
    "GENDERS",
    "AGE_RANGE",
    "SKIN_TONES",
    "SKIN_TONE_SOURCE",
    "HAIR_COLORS",
    "HAIR_LENGTHS",
    "TOPS",
    "BOTTOMS",
    "SHOES",
    "COLORS",
    "parse_color",
    "color_rgb",
    "color_word",
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

"""Person attributes: who one synthetic replacement person is, and what ``height`` means.

A :class:`PersonAttributes` is a typed, validated, JSON-safe description of one synthetic
person (gender, age, body shape, skin tone, hair, clothing) over the vocabulary of
:mod:`refsd.people.vocabulary`. It maps to a body shape (:mod:`refsd.people.shape`), render
materials (:mod:`refsd.people.materials`) and prompt text (:mod:`refsd.people.prompt`);
:class:`refsd.people.distribution.AttributeDistribution` draws them for a dataset.

Height: ``height`` is 0..1 with 0.5 = the median height for the person's gender and age
(:data:`STATURE_TABLE`), see :func:`stature_m` and its inverse :func:`height_from_stature`.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .vocabulary import (
    _BOTTOM_ALIASES,
    _GENDER_ALIASES,
    _HAIR_COLOR_ALIASES,
    _HAIR_LENGTH_ALIASES,
    _SHOE_ALIASES,
    _TOP_ALIASES,
    AGE_RANGE,
    BOTTOMS,
    GENDERS,
    HAIR_COLORS,
    HAIR_LENGTHS,
    SHOES,
    SKIN_TONES,
    TOPS,
    AttributesError,
    _canon_color,
    _choose,
    _number,
)

__all__ = [
    "PersonAttributes",
    "PERSON_FIELDS",
    "STATURE_TABLE",
    "STATURE_CV",
    "STATURE_SD_RANGE",
    "stature_m",
    "height_from_stature",
]

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

"""Seeded sampling of person attributes for a whole dataset.

:class:`AttributeDistribution` draws :class:`~refsd.people.spec.PersonAttributes` from
user-set distributions with a seed (same seed, same attributes, bit for bit; a person's
attributes depend only on ``(seed, image_index, person_index)``, through a BLAKE2b hash per
attribute). Weight tables left None use RefSD's defaults, the ``DEFAULT_*`` tables here;
:data:`DRESSES_AND_SKIRTS` says who may get dresses and skirts.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .spec import PERSON_FIELDS, PersonAttributes, _check_field
from .vocabulary import (
    _BOTTOM_ALIASES,
    _COLOR_ALIASES,
    _HAIR_COLOR_ALIASES,
    _HAIR_LENGTH_ALIASES,
    _SHOE_ALIASES,
    _TOP_ALIASES,
    AGE_RANGE,
    BOTTOMS,
    COLORS,
    HAIR_COLORS,
    HAIR_LENGTHS,
    SHOES,
    SKIN_TONES,
    TOPS,
    AttributesError,
    _choose,
    _number,
)

__all__ = [
    "AttributeDistribution",
    "DRESSES_AND_SKIRTS",
    "DEFAULT_HAIR_COLORS",
    "DEFAULT_HAIR_LENGTHS",
    "DEFAULT_TOPS",
    "DEFAULT_BOTTOMS",
    "DEFAULT_SHOES",
    "DEFAULT_TOP_COLORS",
    "DEFAULT_BOTTOM_COLORS",
    "DEFAULT_SHOES_COLORS",
]

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
    uses RefSD's default (``DEFAULT_*`` in :mod:`refsd.people.distribution`):

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

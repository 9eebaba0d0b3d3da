"""Prompt text for Stable Diffusion 1.5 from person attributes.

:func:`build_prompt` gives the ``(positive, negative)`` prompt of one person
(:func:`person_description` plus style tags), :func:`build_image_prompt` that of everyone in an
image; :func:`estimate_clip_tokens` estimates their CLIP length. The words: skin tones
:data:`SKIN_TONE_WORDS` (per Monk step), age groups :data:`AGE_GROUPS` (:func:`age_group`),
body words :data:`BODY_WORDS`, and the style tags :data:`QUALITY_TAGS` / :data:`NEGATIVE_TAGS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .spec import PersonAttributes, _as_attrs
from .vocabulary import AGE_RANGE, AttributesError, _number, color_word

__all__ = [
    "SKIN_TONE_WORDS",
    "AGE_GROUPS",
    "BODY_WORDS",
    "QUALITY_TAGS",
    "NEGATIVE_TAGS",
    "age_group",
    "body_words",
    "person_description",
    "build_prompt",
    "build_image_prompt",
    "estimate_clip_tokens",
]

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

#: Appended to every positive prompt (style for SD1.5 photo checkpoints).
QUALITY_TAGS: tuple[str, ...] = ("natural light", "realistic", "detailed skin", "high quality")
#: Every negative prompt (the render is a flat-shaded 3D body: steer away from CGI looks).
NEGATIVE_TAGS: tuple[str, ...] = (
    "cartoon", "anime", "illustration", "painting", "3d render", "cgi", "plastic skin",
    "blurry", "lowres", "low quality", "jpeg artifacts", "deformed", "disfigured", "bad anatomy",
    "bad proportions", "extra limbs", "extra arms", "extra legs", "extra fingers", "missing fingers",
    "fused fingers", "bad hands", "long neck", "cross-eyed", "watermark", "text", "nsfw", "nude",
)  # fmt: skip


def age_group(years: float) -> tuple[str, str, str]:
    """``(group, female noun, male noun)`` of :data:`AGE_GROUPS` for an age in years."""
    years = _number(years, "age", *AGE_RANGE, " years")
    row = AGE_GROUPS[0]
    for r in AGE_GROUPS:
        if years >= r[0]:
            row = r
    return row[1], row[2], row[3]


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _article(phrase: str) -> str:
    first = phrase.split()[0] if phrase.split() else ""
    if first.isdigit():
        n = int(first)
        vowel = n == 8 or n == 11 or n == 18 or 80 <= n <= 89 or 800 <= n <= 899
    else:
        vowel = first[:1].lower() in "aeiou"
    return ("an " if vowel else "a ") + phrase


def body_words(a: PersonAttributes) -> list[tuple[str, str]]:
    """``(attribute, word)`` of the body words the prompt uses for ``a`` (first match of
    :data:`BODY_WORDS` per attribute; none for middling values)."""
    out, seen = [], set()
    for attr, op, thr, word in BODY_WORDS:
        if attr in seen:
            continue
        v = getattr(a, attr)
        if (v >= thr) if op == ">=" else (v <= thr):
            out.append((attr, word))
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
    tags += [word for _, word in body_words(a)]
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

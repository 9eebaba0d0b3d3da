"""The questions of a study: statements rated on a 1-5 agreement scale.

* psi-A (privacy): the original person and the replacement, both cut out on neutral grey:
  "The two pictures show the same person."
* psi-B (pose): original | output side by side: "The person on the right is in the same pose ...".
* psi-C (realism, satisfaction): the output alone.
* phi (attribute fidelity): the output alone, one statement per requested attribute, worded as
  the generator's prompt words it (:mod:`refsd.people.prompt`): gender, the age's decade, the
  Monk skin tone word (with a swatch), hair length and colour, the body words the prompt used
  (tall, slim, ...), top, bottom and shoes with their colour words.
* attention checks: "please answer N for this question".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..people import HAIR_COLORS, SKIN_TONE_WORDS, SKIN_TONES, PersonAttributes, body_words, color_word, parse_color
from .definition import StudyError

__all__ = [
    "PHI_ATTRIBUTES",
    "PHI_LABELS",
    "phi_statements",
    "psi_items",
    "attention_item",
]

#: What phi can ask about, in screen order (``body`` stands for height, weight and muscle: asked
#: only when the prompt used a word for them).
PHI_ATTRIBUTES = ("gender", "age", "skin_tone", "hair_length", "hair_color", "body", "top", "bottom", "shoes")
#: Report labels of the phi aspects.
PHI_LABELS = {
    "gender": "gender", "age": "age", "skin_tone": "skin tone", "hair_length": "hair length",
    "hair_color": "hair colour", "height": "height", "weight": "weight", "muscle": "muscle",
    "top": "top", "bottom": "bottom", "shoes": "shoes",
}  # fmt: skip


def _hex(color: str) -> str:
    r, g, b = parse_color(color)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _age_phrase(age: float) -> str:
    lo = int(math.floor(age / 10.0)) * 10
    if lo <= 0:
        return "younger than 10 years old"
    return f"between {lo} and {lo + 10} years old"


def _top(a: PersonAttributes) -> tuple[str, str | None]:
    if a.top == "none":
        return "This person is shirtless.", None
    noun = {"t-shirt": "t-shirt", "long-sleeve": "long-sleeve shirt", "jacket": "jacket", "dress": "knee-length dress"}
    return f"This person is wearing {_article(f'{color_word(a.top_color)} {noun[a.top]}')}.", _hex(a.top_color)


def _bottom(a: PersonAttributes) -> tuple[str, str | None] | None:
    bottom = a.effective_bottom
    if bottom is None:
        return None
    word = color_word(a.bottom_color)
    if bottom == "trousers":
        phrase = "jeans" if word == "denim" else f"{word} jeans" if word in ("blue", "light blue", "navy") \
            else f"{word} trousers"
    elif bottom == "shorts":
        phrase = f"{word} shorts"
    else:
        phrase = _article(f"{word} skirt")
    return f"This person is wearing {phrase}.", _hex(a.bottom_color)


def _shoes(a: PersonAttributes) -> tuple[str, str | None]:
    if a.shoes == "none":
        return "This person is barefoot.", None
    noun = {"sneakers": "sneakers", "boots": "boots", "dress_shoes": "dress shoes", "sandals": "sandals"}
    return f"This person is wearing {color_word(a.shoes_color)} {noun[a.shoes]}.", _hex(a.shoes_color)


def _body(a: PersonAttributes) -> list[tuple[str, str, None]]:
    """The body words of the prompt (:func:`refsd.people.body_words`) as statements."""
    return [(attr, f"This person looks {word}.", None) for attr, word in body_words(a)]


def phi_statements(attrs: PersonAttributes | dict, which: Sequence[str] = PHI_ATTRIBUTES) -> list[tuple[str, str, Any]]:
    """``(aspect, statement, swatch colour or None)`` for one person's requested attributes.

    Attributes that were not requested of the generator are not asked: a bottom under a dress,
    the hair colour of a bald person, body words for an average build.
    """
    a = attrs if isinstance(attrs, PersonAttributes) else PersonAttributes.from_dict(attrs)
    unknown = [w for w in which if w not in PHI_ATTRIBUTES]
    if unknown:
        raise StudyError(f"unknown phi attribute(s) {unknown}; choose from {', '.join(PHI_ATTRIBUTES)}")
    out: list[tuple[str, str, Any]] = []
    for w in which:
        if w == "gender":
            out.append(("gender", f"This person looks {a.gender}.", None))
        elif w == "age":
            out.append(("age", f"This person looks {_age_phrase(a.age)}.", None))
        elif w == "skin_tone":
            step = int(a.skin_tone[3:])
            out.append(("skin_tone", f"This person has {SKIN_TONE_WORDS[a.skin_tone]} skin "
                        f"(about step {step} of 10 on the Monk skin tone scale, 1 = lightest).", SKIN_TONES[a.skin_tone]))
        elif w == "hair_length":
            text = "This person is bald." if a.hair_length == "bald" else \
                f"This person has {'medium-length' if a.hair_length == 'medium' else a.hair_length} hair."
            out.append(("hair_length", text, None))
        elif w == "hair_color" and a.hair_length != "bald":
            out.append(("hair_color", f"This person has {a.hair_color.replace('_', ' ')} hair.", HAIR_COLORS[a.hair_color]))
        elif w == "body":
            out += _body(a)
        elif w == "top":
            out.append(("top", *_top(a)))
        elif w == "bottom":
            b = _bottom(a)
            if b is not None:
                out.append(("bottom", *b))
        elif w == "shoes":
            out.append(("shoes", *_shoes(a)))
    return out


def psi_items(pid: str, crops: dict[str, str]) -> list[dict[str, Any]]:
    """The psi-A/B/C items of one person (``crops``: the picture paths of :mod:`.crops`)."""
    def item(family: str, aspect: str, text: str, image: str, title: str | None = None) -> dict[str, Any]:
        return {"id": f"{pid}-{family}" + ("" if aspect in ("identity", "pose") else f"-{aspect}"),
                "family": family, "aspect": aspect, "person": pid, "text": text, "images": [image],
                "title": title, "swatch": None, "expected": None}

    return [
        item("psi_a", "identity", "The two pictures show the same person.", crops["identity"]),
        item("psi_b", "pose", "The person on the right is in the same pose as the person on the left.", crops["pose"]),
        item("psi_c", "realism", "This person looks like a real person in a real photo.", crops["output"], "Realistic?"),
        item("psi_c", "satisfaction",
             "I would be satisfied with this picture as a pseudonymized replacement of the original.",
             crops["output"], "Satisfied?"),
    ]


def phi_items(pid: str, attrs: dict, which: Iterable[str], image: str) -> list[dict[str, Any]]:
    """One phi item per requested attribute of one person."""
    return [
        {"id": f"{pid}-phi-{aspect}", "family": "phi", "aspect": aspect, "person": pid, "text": text,
         "images": [image], "title": None, "swatch": swatch, "expected": None}
        for aspect, text, swatch in phi_statements(attrs, tuple(which))
    ]


def attention_item(index: int, expected: int, image: str) -> dict[str, Any]:
    """An attention check: a picture like the others and a statement asking for one answer."""
    return {"id": f"check-{index + 1}", "family": "attention", "aspect": "attention", "person": None,
            "text": f"Attention check: please answer {expected} for this question, whatever the picture shows.",
            "images": [image], "title": None, "swatch": None, "expected": int(expected)}

"""The study definition: ``study.json`` in a study folder, its validation and per-rater order.

A study folder (``refsd study create``) holds::

    study.json          # this definition (format "refsd-study", version 1)
    crops/<person>/...  # the pictures the questions show
    answers.sqlite      # the answers (refsd.study.store), created by ``refsd study serve``
    report/             # ``refsd study report``

``study.json``::

    {"format": "refsd-study", "version": 1, "study_id": "<hex>", "title": "...", "seed": 0,
     "created": "...", "manifest": "/abs/OUT/manifest.jsonl",
     "scale": {"min": 1, "max": 5, "labels": ["Strongly disagree", ..., "Strongly agree"]},
     "families": {"psi_a": {"title": ..., "help": ...}, ...},
     "raters": [{"id": "r01", "token": "..."}, ...],    # empty: raters sign in with their name
     "people": [{"id": "p01", "image": "camera.png", "person": 0, "attributes": {...},
                 "box": [x0, y0, x1, y1], "mask": {"original": "detector", "output": "detector"}}],
     "items": [{"id": "p01-phi-gender", "family": "phi", "aspect": "gender", "person": "p01",
                "text": "This person looks male.", "images": ["crops/p01/output.png"],
                "swatch": null, "expected": null}],      # expected: the answer an attention check asks for
     "skipped": [{"image": "x.png", "reason": "..."}]}

Every rater sees every item once, in an order shuffled with a seed derived from the study's
seed and the rater's token (or name): the same rater always gets the same order, so a reload
continues where they left off.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RefSDError

__all__ = [
    "StudyError",
    "Study",
    "FAMILIES",
    "FAMILY_ORDER",
    "LIKERT_LABELS",
    "STUDY_FILE",
    "DB_FILE",
    "normalize_name",
]

STUDY_FORMAT = "refsd-study"
STUDY_VERSION = 1
STUDY_FILE = "study.json"
DB_FILE = "answers.sqlite"

LIKERT_LABELS = ("Strongly disagree", "Disagree", "Neither agree nor disagree", "Agree", "Strongly agree")

#: Question families: what the rater is shown and asked (the paper's psi A/B/C and phi).
FAMILIES: dict[str, dict[str, str]] = {
    "psi_a": {
        "name": "psi-A privacy",
        "title": "Same person?",
        "help": "Both pictures show a person without the background. Judge the person only: face, hair, build.",
        "direction": "lower is better (the replacement should not look like the original person)",
    },
    "psi_b": {
        "name": "psi-B pose",
        "title": "Same pose?",
        "help": "Left: the original photo. Right: the same spot after replacement. Compare the body pose only.",
        "direction": "higher is better (the pose is kept)",
    },
    "psi_c": {
        "name": "psi-C realism and satisfaction",
        "title": "Realistic?",
        "help": "Judge the person in the middle of the picture.",
        "direction": "higher is better",
    },
    "phi": {
        "name": "phi attribute fidelity",
        "title": "Does the description fit?",
        "help": "Judge the person in the middle of the picture.",
        "direction": "higher is better (the requested attribute is visible)",
    },
    "attention": {
        "name": "attention check",
        "title": "Please read carefully",
        "help": "This question checks that the questions are being read.",
        "direction": "must equal the requested answer",
    },
}
FAMILY_ORDER = ("psi_a", "psi_b", "psi_c", "phi")


class StudyError(RefSDError):
    """A study cannot be built, served or reported; the message names the problem and the fix."""


_NAME_OK = re.compile(r"^[\w .'-]{1,40}$", re.UNICODE)


def normalize_name(name: Any) -> str:
    """A rater's name as the key it is stored under (trimmed, inner spaces collapsed, lower case).
    Raises StudyError for an empty or odd name."""
    if not isinstance(name, str):
        raise StudyError("a rater name must be text")
    clean = " ".join(name.split())
    if not clean or not _NAME_OK.match(clean):
        raise StudyError("enter a name of 1 to 40 letters, digits, spaces, dots, dashes or apostrophes")
    return clean.lower()


def _seed_of(*parts: Any) -> int:
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


@dataclass
class Study:
    """A loaded, validated study definition (``Study.load(folder)``)."""

    folder: Path
    data: dict[str, Any]
    items: list[dict[str, Any]] = field(init=False)
    by_id: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        _validate(self.data, self.folder)
        self.items = list(self.data["items"])
        self.by_id = {it["id"]: it for it in self.items}

    # -- files ------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path) -> Study:
        folder = Path(folder).expanduser()
        path = folder / STUDY_FILE
        if folder.is_file() and folder.name == STUDY_FILE:
            folder, path = folder.parent, folder
        if not path.is_file():
            raise StudyError(
                f"{folder} is not a study folder (no {STUDY_FILE}); build one with "
                "`refsd study create OUT/manifest.jsonl -o STUDY/`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StudyError(f"{path} is not valid JSON ({e}); rebuild it with `refsd study create`") from e
        return cls(folder, data)

    def save(self) -> Path:
        """Write ``study.json`` atomically."""
        path = self.folder / STUDY_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    # -- properties -------------------------------------------------------------------
    @property
    def study_id(self) -> str:
        return self.data["study_id"]

    @property
    def title(self) -> str:
        return self.data.get("title") or "RefSD perception study"

    @property
    def seed(self) -> int:
        return int(self.data.get("seed", 0))

    @property
    def scale(self) -> tuple[int, int]:
        s = self.data["scale"]
        return int(s["min"]), int(s["max"])

    @property
    def raters(self) -> list[dict[str, str]]:
        return list(self.data.get("raters") or [])

    @property
    def uses_tokens(self) -> bool:
        return bool(self.raters)

    @property
    def people(self) -> dict[str, dict[str, Any]]:
        return {p["id"]: p for p in self.data.get("people", [])}

    def images(self) -> set[str]:
        """Every picture path (relative to the folder) an item shows: the only files served."""
        return {img for it in self.items for img in it["images"]}

    # -- raters -----------------------------------------------------------------------
    def rater_for_token(self, token: Any) -> str | None:
        """The rater id of a token, or None."""
        if not isinstance(token, str):
            return None
        for r in self.raters:
            if r["token"] == token:
                return r["id"]
        return None

    def order_for(self, key: str) -> list[str]:
        """Item ids in the order the rater identified by ``key`` (their token, or their name's
        normalized form) answers them: a shuffle seeded from the study and ``key``."""
        ids = [it["id"] for it in self.items]
        random.Random(_seed_of(self.seed, self.study_id, key)).shuffle(ids)
        return ids


def _validate(d: Any, folder: Path) -> None:
    """Raise StudyError when the definition is not one ``refsd study create`` writes."""
    rebuild = "rebuild it with `refsd study create`"
    if not isinstance(d, dict) or d.get("format") != STUDY_FORMAT:
        raise StudyError(f"{folder / STUDY_FILE} is not a RefSD study definition; {rebuild}")
    if int(d.get("version", 0)) > STUDY_VERSION:
        raise StudyError(f"study format version {d.get('version')} is newer than this RefSD ({STUDY_VERSION}); update RefSD")
    for key in ("study_id", "scale", "items"):
        if key not in d:
            raise StudyError(f"{folder / STUDY_FILE} lacks {key!r}; {rebuild}")
    items = d["items"]
    if not isinstance(items, list) or not items:
        raise StudyError(f"{folder / STUDY_FILE} has no questions; {rebuild}")
    seen: set[str] = set()
    lo, hi = int(d["scale"]["min"]), int(d["scale"]["max"])
    for it in items:
        if not isinstance(it, dict) or not isinstance(it.get("id"), str) or it.get("family") not in FAMILIES:
            raise StudyError(f"{folder / STUDY_FILE}: malformed item {str(it)[:120]}; {rebuild}")
        if it["id"] in seen:
            raise StudyError(f"{folder / STUDY_FILE}: item id {it['id']!r} appears twice; {rebuild}")
        seen.add(it["id"])
        images = it.get("images")
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            raise StudyError(f"{folder / STUDY_FILE}: item {it['id']} has no image list; {rebuild}")
        for p in images:
            rel = Path(p)
            if rel.is_absolute() or ".." in rel.parts:
                raise StudyError(f"{folder / STUDY_FILE}: item {it['id']} points outside the study folder ({p})")
            if not (folder / rel).is_file():
                raise StudyError(f"{folder / rel} is missing (item {it['id']}); copy the whole study folder, or {rebuild}")
        exp = it.get("expected")
        if exp is not None and not (isinstance(exp, int) and lo <= exp <= hi):
            raise StudyError(f"{folder / STUDY_FILE}: item {it['id']} expects {exp!r}, outside {lo}..{hi}")
    tokens = [r.get("token") for r in d.get("raters") or []]
    if len(set(tokens)) != len(tokens) or not all(isinstance(t, str) and t for t in tokens):
        raise StudyError(f"{folder / STUDY_FILE}: rater tokens must be distinct, non-empty text")

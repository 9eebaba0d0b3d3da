"""The answers of a study: ``answers.sqlite`` (WAL mode, one transaction per answer).

Tables::

    meta(key PRIMARY KEY, value)        -- study_id: the study these answers belong to
    raters(id PRIMARY KEY, kind, order_key, label, created)
    answers(id, rater, item, value CHECK 1..5, position, ms, answered, UNIQUE(rater, item))

A rater answers each item once: the UNIQUE constraint refuses a second answer (the first is
kept) even when two requests race. :meth:`AnswerStore.answer` checks, inside one
``BEGIN IMMEDIATE`` transaction, that the item is the rater's next unanswered one in their
order, so two tabs or a replayed request cannot skip or reorder questions. Every connection is
opened per call (thread-safe under a threading HTTP server); concurrent writers wait on
SQLite's lock (``busy_timeout``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .definition import DB_FILE, Study, StudyError

__all__ = ["AnswerStore", "AnswerRefused"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters(
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, order_key TEXT NOT NULL, label TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers(
    id INTEGER PRIMARY KEY,
    rater TEXT NOT NULL REFERENCES raters(id),
    item TEXT NOT NULL,
    value INTEGER NOT NULL CHECK(value BETWEEN 1 AND 5),
    position INTEGER NOT NULL,
    ms INTEGER,
    answered TEXT NOT NULL,
    UNIQUE(rater, item));
"""


class AnswerRefused(StudyError):
    """An answer that is not stored; ``status`` is the HTTP status the server sends with it."""

    def __init__(self, message: str, status: int = 400, **extra: Any):
        super().__init__(message)
        self.status = status
        self.extra = extra


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class AnswerStore:
    """The answer database of one study (created on first use)."""

    def __init__(self, study: Study, path: str | Path | None = None):
        self.study = study
        self.path = Path(path) if path else study.folder / DB_FILE
        self._orders: dict[str, list[str]] = {}
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key='study_id'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta(key, value) VALUES('study_id', ?)", (study.study_id,))
            elif row[0] != study.study_id:
                raise StudyError(
                    f"{self.path} holds the answers of another study (id {row[0]}, this study.json is "
                    f"{study.study_id}); nothing was changed. Restore the study.json these answers belong to, "
                    "or serve the new study from its own folder")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    # -- raters -----------------------------------------------------------------------
    def sign_in(self, kind: str, rater_id: str, order_key: str, label: str) -> None:
        """Register a rater (once; a second sign-in changes nothing)."""
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO raters(id, kind, order_key, label, created) VALUES(?, ?, ?, ?, ?)",
                        (rater_id, kind, order_key, label, _now()))

    def rater(self, rater_id: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT id, kind, order_key, label FROM raters WHERE id=?", (rater_id,)).fetchone()
        return None if row is None else dict(zip(("id", "kind", "order_key", "label"), row, strict=True))

    def order(self, rater: dict[str, Any]) -> list[str]:
        key = rater["order_key"]
        if key not in self._orders:
            self._orders[key] = self.study.order_for(key)
        return self._orders[key]

    # -- answers ----------------------------------------------------------------------
    def answered(self, rater_id: str, con: sqlite3.Connection | None = None) -> dict[str, int]:
        """item -> value of one rater's answers."""
        if con is None:
            with self._connect() as c:
                return self.answered(rater_id, c)
        return dict(con.execute("SELECT item, value FROM answers WHERE rater=?", (rater_id,)).fetchall())

    def progress(self, rater: dict[str, Any]) -> dict[str, Any]:
        """``{"done": n answered, "total": n items, "next": item id or None, "position": index}``."""
        done = self.answered(rater["id"])
        return self._progress(rater, done)

    def _progress(self, rater: dict[str, Any], done: dict[str, int]) -> dict[str, Any]:
        order = self.order(rater)
        nxt = next(((i, item) for i, item in enumerate(order) if item not in done), (len(order), None))
        answered = sum(1 for item in order if item in done)
        return {"done": answered, "total": len(order), "next": nxt[1], "position": nxt[0]}

    def answer(self, rater: dict[str, Any], item: Any, value: Any, ms: Any = None) -> dict[str, Any]:
        """Store one answer (one transaction); returns the rater's progress after it.

        Raises :class:`AnswerRefused` (nothing stored, nothing changed) for an unknown item,
        a value off the scale, an item answered before (409, the first answer kept) or an item
        that is not the rater's next one (409: the page is out of date).
        """
        lo, hi = self.study.scale
        if not isinstance(item, str) or item not in self.study.by_id:
            raise AnswerRefused(f"unknown question id {str(item)[:80]!r}: it is not part of this study. "
                                "Reload the page to get your next question.", 400)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise AnswerRefused(f"the answer must be a whole number from {lo} to {hi}, got {str(value)[:20]!r}", 400)
        ms = int(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) and 0 <= ms < 1e9 else None
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                done = self.answered(rater["id"], con)
                if item in done:
                    raise AnswerRefused(f"you already answered this question (your answer {done[item]} is kept); "
                                        "each question is answered once", 409, kept=done[item])
                prog = self._progress(rater, done)
                if item != prog["next"]:
                    raise AnswerRefused("this page is out of date (the question was answered or skipped in another "
                                        "window); reload to continue with your next question", 409)
                try:
                    con.execute("INSERT INTO answers(rater, item, value, position, ms, answered) "
                                "VALUES(?, ?, ?, ?, ?, ?)", (rater["id"], item, value, prog["position"], ms, _now()))
                except sqlite3.IntegrityError as e:  # UNIQUE(rater, item): the last line of defence
                    raise AnswerRefused(f"you already answered this question ({e}); the first answer is kept", 409) from e
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        done[item] = value
        return self._progress(rater, done)

    def all_answers(self) -> list[dict[str, Any]]:
        """Every stored answer with its rater's label, in the order they were given."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT a.rater, r.kind, r.label, a.item, a.value, a.position, a.ms, a.answered "
                "FROM answers a JOIN raters r ON r.id = a.rater ORDER BY a.id").fetchall()
        keys = ("rater", "kind", "label", "item", "value", "position", "ms", "answered")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as con:
            return {"raters": con.execute("SELECT COUNT(*) FROM raters").fetchone()[0],
                    "answers": con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]}

"""Dataset runs: the input folder scan, per-image seeds and the JSONL manifest.

Shared by ``refsd run`` (ComfyUI servers) and ``refsd pseudonymize`` (diffusers, Ray), so
both write the same schema. One JSON object per line, one line per image once the run
is compacted::

    {"image": "sub/photo.png",          # relative to the input folder, '/'-separated
     "status": "ok" | "error" | "skipped",
     "outputs": ["sub__photo/pseudonymized.png"],  # relative to the output folder
     "seed": 123,                        # the per-image seed actually used
     "attributes": [[{...}, ...]],       # sampled attributes, per image of the batch, per person
     "fit": {"people": 1, "rms_px": [13.1], "quality": ["good"]},
     "people_source": "file" | "detect",  # the keypoint file, or the person detector (None: neither)
     "detections": [[{"score": 0.91, "presence": 1.0, "box": [x0, y0, x1, y1]}, ...]],
                                         # detector scores, per image of the batch, per person (null: file)
     "leak_ratio": 0.0, "privacy_passed": true,
     "identity": [{"faces": [...], "leaks": 0, "passed": true, ...}],  # faces vs output, per image (null: unchecked)
     "source": "/abs/photos/sub/photo.png",  # the input photo; "keypoints": its keypoint file (null: detected)
     "distribution": {...},              # the requested AttributeDistribution (to_dict), when one was sampled
     "error": null,                      # the message when status != "ok"
     "attempts": 1, "seconds": 4.2, "worker": "http://127.0.0.1:8188",
     "finished": "2026-11-27T21:00:00+00:00"}

Resuming: records are appended (flushed and fsynced line by line), the last record of an
image wins, a half-written last line (a killed run) is ignored, and an image counts as
finished only when its record says ``ok`` and every listed output file exists (and, when the
run says where the people come from, its ``people_source`` is that one: an image detected
before is redone once it has a keypoint file). At the start of a run the manifest is
rewritten (atomically) with one line per image.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "IMAGE_SUFFIXES",
    "Manifest",
    "image_seed",
    "list_images",
    "keypoints_for",
    "output_stem",
    "now_iso",
    "privacy_error",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
STATUSES = ("ok", "error", "skipped")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def list_images(folder: str | Path, recursive: bool = True, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder`` (by ``suffixes``, sorted, hidden files skipped).

    Non-image files are not listed; whether an image file can actually be decoded is
    checked per image by the run (a corrupt file becomes an ``error`` record).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist (pass a folder of images)")
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        p for p in it
        if p.is_file() and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def keypoints_for(image: Path, image_root: Path, keypoint_root: Path | None) -> Path | None:
    """The keypoint JSON with the image's name: ``<stem>.json`` beside the image (same
    relative path under ``keypoint_root`` when given), or ``<image name>.json``."""
    rel = image.relative_to(image_root)
    base = (keypoint_root / rel) if keypoint_root is not None else image
    for cand in (base.with_suffix(".json"), base.with_name(base.name + ".json")):
        if cand.is_file():
            return cand
    return None


def image_seed(base_seed: int, image_key: str) -> int:
    """A per-image seed from the run's seed and the image's relative path.

    Independent of the order, the worker and the number of workers, so a resumed, a
    distributed and a single-process run give every image the same seed.
    """
    h = hashlib.blake2b(f"{int(base_seed)}:{image_key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0xFFFFFFFF  # fits every seed widget (RefSD: 32 bit)


def output_stem(image_key: str) -> str:
    """A flat, collision-free file stem for an image key (``a/b.png`` -> ``a__b``)."""
    stem = image_key.rsplit(".", 1)[0] if "." in image_key.rsplit("/", 1)[-1] else image_key
    return stem.replace("/", "__")


def privacy_error(
    privacy_passed: bool | None, leak_ratio: float | None, unfitted: int, allow_unfitted: bool, detail: str = "",
    identity: list | None = None,
) -> str | None:
    """Why an output must not be shared, or None: people of the keypoints the fit had to skip
    (they were not replaced; accepted with ``allow_unfitted``), a failed pixel check
    (``privacy_passed`` False) and faces still recognisable (``identity``: per image of the batch
    an :meth:`refsd.evaluate.IdentityResult.to_dict` or None).
    Both ``refsd run`` and ``refsd pseudonymize`` record this as the image's ``error``."""
    problems = []
    if unfitted and not allow_unfitted:
        problems.append(f"{unfitted} person(s) in the keypoints could not be fitted and would stay in the image"
                        f"{f' ({detail})' if detail else ''}; --allow-unfitted accepts that")
    if privacy_passed is False:
        problems.append(f"privacy check failed: leak ratio {float(leak_ratio or 0.0):.6f}")
    faces = [f for r in (identity or []) if r for f in (r.get("faces") or []) if f.get("leak")]
    if faces:
        worst = max(float(f["similarity"]) for f in faces)
        problems.append(f"identity check failed: {len(faces)} face(s) of the photo still recognisable in the output "
                        f"(face similarity up to {worst:.3f} >= {float(identity_threshold(identity)):.3f})")
    return "; ".join(problems) or None


def identity_threshold(identity: list | None) -> float:
    """The face threshold recorded with per-image identity results (SFace's 0.363 when none is)."""
    return next((float(r["threshold"]) for r in identity or [] if r and r.get("threshold") is not None), 0.363)


class Manifest:
    """The JSONL manifest of one output folder (thread-safe appends)."""

    def __init__(self, path: str | Path, output_dir: str | Path | None = None):
        self.path = Path(path)
        self.output_dir = Path(output_dir) if output_dir is not None else self.path.parent
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        self.skipped_lines += 1  # a line cut short by a killed run
                        continue
                    if isinstance(rec, dict) and isinstance(rec.get("image"), str):
                        self.records[rec["image"]] = rec

    def is_done(self, image_key: str, people_source: str | None = None) -> bool:
        """The image's record is ``ok`` with every output present (and, with ``people_source``, its
        people came from there; records from before detection existed count as ``"file"``)."""
        rec = self.records.get(image_key)
        if not rec or rec.get("status") != "ok":
            return False
        if people_source is not None and (rec.get("people_source") or "file") != people_source:
            return False
        return all((self.output_dir / o).is_file() for o in rec.get("outputs", []))

    def compact(self, keep: Iterable[str] | None = None) -> None:
        """Rewrite the file with one line per image (the last record), atomically."""
        with self._lock:
            keys = list(self.records) if keep is None else [k for k in keep if k in self.records]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for k in keys:
                    f.write(json.dumps(self.records[k], sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one record (fills defaults, validates ``status``) and flush it to disk."""
        if record.get("status") not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {record.get('status')!r}")
        rec = {
            "image": record["image"], "status": record["status"], "outputs": [], "seed": None,
            "attributes": None, "fit": None, "people_source": None, "detections": None,
            "leak_ratio": None, "privacy_passed": None, "identity": None, "error": None,
            "attempts": 1, "seconds": None, "worker": None, "finished": now_iso(),
        }
        rec.update(record)
        return self.append(rec)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` as it is (a dict with an ``image`` key; no defaults, no status check),
        flushed and fsynced: a killed process loses at most this line. Used by :meth:`write` and
        by other per-image logs of the same shape (``refsd eval``'s ``images.jsonl``)."""
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.records[record["image"]] = record
        return record

    def summary(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for rec in self.records.values():
            out[rec.get("status", "error")] = out.get(rec.get("status", "error"), 0) + 1
        return out

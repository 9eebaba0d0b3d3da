"""``refsd pseudonymize`` on video files: :func:`process_video`, chunk by chunk, resumable.

A video is read in chunks of ``--chunk-frames`` frames (memory bounded by the chunk); each
chunk goes through :func:`refsd.pipeline.video.pseudonymize_frames` (people tracked and fitted
coherently, one look and one seed per track) and its frames are written as PNGs into
``OUT/<stem>/.chunks/``, with the tracks, warm-start fits and shapes in
``OUT/<stem>/.video_state.json`` (the background memory beside it as ``.npz``: the last clean
background and the last frame with its people blanked, no person pixel), all replaced
atomically after every chunk: a killed run
goes on from its last finished chunk. At the end ``OUT/<stem>/pseudonymized.mp4`` (H.264, the
input's frame rate) is encoded from them, and with ``--save-frames``
the frames are kept as ``OUT/<stem>/frames/000000.png`` ... Keypoints: ``<stem>.json`` beside
the video (POSE_KEYPOINT with one frame per video frame), else the person detector. The
manifest line of a video has ``video`` (frames, frame rate, chunks, each track's frames and
attributes) and per-frame privacy results; a frame that fails the privacy check fails the
video.

Audio: by default the output has none, as a voice identifies a person as well as a face does
(personal data under the GDPR, like the picture). ``--keep-audio`` copies the input's first audio
stream (:mod:`refsd.pipeline.audio`: remuxed when MP4 carries its codec, else AAC; from the first
frame, trimmed to the video's length). The record's ``audio`` says what happened: ``copied``,
``none`` (the input has no audio), ``dropped`` (it has, without ``--keep-audio``) or ``failed``
(unreadable: the video is written without it); ``notes`` say how.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["process_video", "OUTPUT_VIDEO"]

OUTPUT_VIDEO = "pseudonymized.mp4"
STATE = ".video_state.json"


def _audio(writer, info: dict) -> tuple[str, list[str]]:
    """The record's ``audio`` ("copied", "none", "dropped", "failed") and its notes."""
    if writer.audio is not None:  # --keep-audio
        return writer.audio.status, list(writer.audio.notes)
    if info.get("audio"):
        return "dropped", [f"the input's {info['audio']} audio was left out (voices identify people too; "
                           "--keep-audio copies it)"]
    return "none", []


def process_video(pipe, item: dict, options: dict, worker: str) -> dict:
    """One video of ``refsd pseudonymize`` (module docstring); returns its manifest record (the
    files are written into ``options["output_dir"]``). Never raises for a per-video problem."""
    import numpy as np
    from PIL import Image

    from ..comfyapi import output_stem, privacy_error
    from ..keypoints import load_pose_keypoint_file
    from ..pipeline import to_uint8
    from ..pipeline.video import VideoState, VideoWriter, pseudonymize_frames, read_video, video_info

    t0 = time.perf_counter()
    key, out_dir = item["image"], Path(options["output_dir"])
    stem = output_stem(key)
    vdir = out_dir / stem
    chunks_dir = vdir / ".chunks"
    rec: dict[str, Any] = {"image": key, "seed": item["seed"], "attempts": item.get("attempts", 1), "worker": worker,
                           "source": str(Path(item["path"]).resolve()), "people_source": item.get("people") or "detect",
                           "distribution": options.get("distribution")}
    chunk = int(options.get("chunk_frames") or 48)
    try:
        info = video_info(item["path"])
        kps = load_pose_keypoint_file(item["keypoints"]) if item.get("keypoints") else None
        chunks_dir.mkdir(parents=True, exist_ok=True)
        state_file = vdir / STATE
        state, saved = VideoState.load(state_file, pipe.device) if state_file.is_file() else (VideoState(), None)
        frames_meta = saved["frames_meta"] if saved else []  # the finished frames' privacy results
        for frames in read_video(item["path"], chunk, start=state.frames_done):
            start = state.frames_done
            k = None if kps is None else kps[start:start + len(frames)]
            if k is not None and len(k) < len(frames):
                raise ValueError(f"{Path(item['keypoints']).name} has {len(kps)} keypoint frames but the video has "
                                 f"more frames; give one frame per video frame")
            results = pseudonymize_frames(pipe, frames, item["seed"], state, keypoints=k,
                                          people=item.get("people") or "auto")
            for j, r in enumerate(results):
                if isinstance(r, Exception):
                    raise RuntimeError(f"frame {start + j}: {type(r).__name__}: {r}") from r
                Image.fromarray(to_uint8(r.image)).save(chunks_dir / f"{start + j:06d}.png")
                ident = r.identity.to_dict() if r.identity is not None else None
                frames_meta.append({"leak_ratio": r.leak_ratio, "privacy_passed": r.privacy_passed,
                                    "unfitted": len(r.unfitted), "people": r.num_people,
                                    "identity": None if ident is None else {k2: ident[k2] for k2 in
                                                                          ("leaks", "max_similarity", "passed",
                                                                           "threshold")},
                                    "faces": None if ident is None else ident["faces"]})
            state.save(state_file, {"frames_meta": frames_meta})  # JSON last: consistent on a kill
        if state.frames_done == 0:
            raise ValueError("the video has no frames")
        keep_audio = bool(options.get("keep_audio"))
        writer = VideoWriter(vdir / (OUTPUT_VIDEO + ".part"), info["fps"], audio=item["path"] if keep_audio else None)
        try:
            for n in range(state.frames_done):
                writer.write(np.asarray(Image.open(chunks_dir / f"{n:06d}.png").convert("RGB")))
        finally:
            writer.close()
        audio, notes = _audio(writer, info)
        os.replace(vdir / (OUTPUT_VIDEO + ".part"), vdir / OUTPUT_VIDEO)
    except Exception as e:  # per-video failure: recorded, not fatal; finished chunks are kept for a resume
        rec.update(status="error", error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 3))
        return rec
    outputs = [f"{stem}/{OUTPUT_VIDEO}"]
    if options.get("save_frames"):
        frames_dir = vdir / "frames"
        shutil.rmtree(frames_dir, ignore_errors=True)
        os.replace(chunks_dir, frames_dir)
        outputs += [f"{stem}/frames/{n:06d}.png" for n in range(state.frames_done)]
    else:
        shutil.rmtree(chunks_dir, ignore_errors=True)
    for f in [vdir / STATE, *vdir.glob(STATE + ".*.npz")]:
        f.unlink(missing_ok=True)
    leak = max(m["leak_ratio"] for m in frames_meta)
    pixel_ok = leak <= options.get("max_leak", 0.0)
    unfitted = sum(m["unfitted"] for m in frames_meta)
    identity = [{"faces": m["faces"], **m["identity"]} if m["identity"] else None for m in frames_meta]
    error = privacy_error(None if pixel_ok else False, leak, unfitted, bool(options.get("allow_unfitted")),
                          "see video.frames", identity)
    gaps = {str(k): t["missing"] for k, t in sorted(state.tracks.items()) if t.get("missing")}
    notes += [f"track {k} was not found in frame(s) {', '.join(map(str, v))} between frames where it was: a person "
              "hidden there, or one the detector missed and left unreplaced; check those frames" for k, v in gaps.items()]
    rec.update(
        status="error" if error else "ok", error=error, outputs=outputs, leak_ratio=leak,
        privacy_passed=all(m["privacy_passed"] for m in frames_meta),
        attributes=[[t["attributes"] for _tid, t in sorted(state.tracks.items())]],
        video={"frames": state.frames_done, "fps": info["fps"], "chunk_frames": chunk,
               "crops_refined": state.crops_refined, "crops_continued": state.crops_continued,
               "tracks": {str(k): v for k, v in sorted(state.tracks.items())},
               "frames_failed": [n for n, m in enumerate(frames_meta) if not m["privacy_passed"]], "gaps": gaps},
        identity=[{"leaks": sum((m["identity"] or {}).get("leaks", 0) for m in frames_meta),
                   "max_similarity": max([m["identity"]["max_similarity"] for m in frames_meta
                                          if m["identity"] and m["identity"]["max_similarity"] is not None],
                                         default=None)}],
        audio=audio, notes=notes, seconds=round(time.perf_counter() - t0, 3),
    )
    if error and not options.get("keep_failed"):
        (vdir / OUTPUT_VIDEO).unlink(missing_ok=True)
        shutil.rmtree(vdir / "frames", ignore_errors=True)
        rec["outputs"] = []
    return rec

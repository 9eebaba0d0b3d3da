"""Refinement across a video's frames (refsd.pipeline.video_refine): a tracked person's crop whose
pose changed little starts from their last refined crop at the lower strength; the real diffusers
refiner (tiny random models) on bus.jpg under a panning camera, people from the real detector."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require_detect_models
from PIL import Image

from refsd.comfyapi import PACK_ROOT
from refsd.pipeline import RefSDPipeline
from refsd.pipeline.video import VideoState, pseudonymize_frames
from refsd.pipeline.video_refine import CONTINUE_DENOISE, RefinedCrop, _shift, continue_start
from refsd.refine import DiffusersRefiner
from refsd.testing.video import pan_video

pytestmark = pytest.mark.slow


def test_continue_start_moves_the_last_crop_onto_the_new_silhouette():
    h, w = 40, 30
    prev_alpha = torch.zeros(h, w)
    prev_alpha[5:30, 8:20] = 1
    prev = RefinedCrop(torch.rand(h, w, 3, generator=torch.Generator().manual_seed(0)), prev_alpha)
    crop = torch.full((h, w, 3), 0.5)
    alpha = _shift(prev_alpha, 3, -2)  # the same pose, 3 px lower and 2 px left in the crop
    start, iou = continue_start(prev, crop, alpha)
    assert iou == 1.0 and start is not None
    inside = alpha > 0.5
    assert torch.equal(start[inside], _shift(prev.crop, 3, -2)[inside])  # the texture moved with the person
    assert torch.equal(start[~inside], crop[~inside])  # the rest: this frame's own crop
    turned = torch.zeros(h, w)
    turned[20:32, 2:28] = 1  # lying down: another silhouette
    start, iou = continue_start(prev, crop, turned)
    assert start is None and iou < 0.8
    assert continue_start(RefinedCrop(torch.zeros(8, 8, 3), torch.ones(8, 8)), crop, alpha)[0] is None  # other size


class _Seen(DiffusersRefiner):
    """The real refiner, remembering the strength and start of every call."""

    calls: list

    def refine(self, images, controls, masks, prompts, negatives, seeds, **kw):
        out, notes = super().refine(images, controls, masks, prompts, negatives, seeds, **kw)
        self.calls.append({"strength": kw["strength"], "starts": images.clone(), "out": out.clone(), "seeds": list(seeds),
                           "masks": masks.clone()})
        return out, notes


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    require_detect_models()
    bus = Path(os.environ.get("REFSD_CACHE_DIR") or PACK_ROOT / ".cache") / "photos" / "bus.jpg"
    photo = np.asarray(Image.open(bus).convert("RGB").resize((405, 540), Image.LANCZOS))
    return list(pan_video(photo, 3, (320, 480), (4, 0)))


def _pipe(tiny_models, anny_cache_dir) -> RefSDPipeline:
    from helpers import require_detect_models as dirs

    cn = tiny_models["controlnets"]
    ref = _Seen(tiny_models["model"], {"depth": cn["depth"], "openpose": cn["openpose"]}, device="cpu")
    ref.calls = []
    return RefSDPipeline(refiner=ref, detect=True, detect_dirs=[dirs()], device="cpu", anny_cache_dir=anny_cache_dir,
                         crop_size=(64, 128), steps=2, sd_removal=False, identity_check=False)


def test_tracked_people_continue_their_last_refined_crop(tiny_models, anny_cache_dir, frames, tmp_path):
    pipe = _pipe(tiny_models, anny_cache_dir)
    state = VideoState()
    results = pseudonymize_frames(pipe, frames, 7, state)
    assert all(not isinstance(r, Exception) and r.privacy_passed for r in results), results
    calls = pipe.refiner.calls
    assert calls[0]["strength"] == pipe.denoise  # the first frame: everyone new
    cont = [(k, c) for k, c in enumerate(calls) if c["strength"] == CONTINUE_DENOISE]
    assert cont and state.crops_continued == sum(len(c["seeds"]) for _, c in cont) > 0
    assert state.crops_refined == sum(len(r.crop_boxes) for r in results)
    tracks = {p.track_id for r in results for p in r.fit.people}
    assert set(state.refined) == tracks
    # a continued crop's start holds the last refined texture, not the avatar composite alone
    for k, c in cont:
        # (the refiner's float outputs are as good as unique: a start pixel equal to one of them was copied)
        prev_outs = torch.cat([x["out"] for x in calls[:k]]).reshape(-1, 3).numpy()
        seen = {bytes(v) for v in prev_outs}
        for start, mask in zip(c["starts"], c["masks"], strict=True):
            person = start[mask > 0.5].reshape(-1, 3).numpy()
            copied = np.mean([bytes(v) in seen for v in person])
            assert copied >= 0.8, copied  # the silhouettes share >= 80 % (IoU): that part is the moved last crop
    first = calls[0]["starts"][calls[0]["masks"] > 0.5].reshape(-1, 3).numpy()
    assert not any(bytes(v) in {bytes(w) for w in calls[0]["out"].reshape(-1, 3).numpy()} for v in first[:500])
    # the carried crops survive a save / load (resume)
    state.save(tmp_path / "s.json")
    back, _ = VideoState.load(tmp_path / "s.json")
    assert set(back.refined) == set(state.refined)
    for k, v in state.refined.items():
        assert torch.equal(back.refined[k].crop, v.crop) and torch.equal(back.refined[k].alpha, v.alpha)
    assert (back.crops_refined, back.crops_continued) == (state.crops_refined, state.crops_continued)


def test_refining_every_frame_alone_keeps_the_track_seeds(tiny_models, anny_cache_dir, frames):
    pipe = _pipe(tiny_models, anny_cache_dir)
    state = VideoState()
    results = pseudonymize_frames(pipe, frames, 7, state, refine_denoise=None)
    assert all(not isinstance(r, Exception) for r in results)
    assert {c["strength"] for c in pipe.refiner.calls} == {pipe.denoise}
    assert state.crops_continued == 0 and not state.refined
    # the per-crop seeds: one per track, the same in every frame
    tracks = {p.track_id for r in results for p in r.fit.people}
    seeds = [s for c in pipe.refiner.calls for s in c["seeds"]]
    assert len(seeds) == sum(len(r.crop_boxes) for r in results) > len(tracks) and len(set(seeds)) == len(tracks)

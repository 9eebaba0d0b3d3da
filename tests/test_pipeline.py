"""The library pipeline (refsd.pipeline) on a real photo, the real Anny body model and tiny
random diffusers models written to disk and loaded through the public loading path."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from refsd.attributes import PersonAttributes
from refsd.diffusion import (
    DiffusersRefiner,
    DiffusionModelError,
    check_model_path,
    img2img_steps,
    load_controlnet,
    run_in_batches,
)
from refsd.pipeline import STAGES, PipelineError, RefSDPipeline, load_image

# tiny_models, small_scene, no_network, anny_env (anny_cache_dir comes from conftest's _body_fixtures)
CROP = (64, 128)  # per-person crop (width, height): small, so CPU runs stay fast
pytestmark = pytest.mark.slow  # documentation only: these run in CI


def _refiner(models: dict, **kw) -> DiffusersRefiner:
    cn = models["controlnets"]
    return DiffusersRefiner(models["model"], {"depth": cn["depth"], "openpose": cn["openpose"]}, device="cpu", **kw)


def _check_privacy(photo, res):
    """Size kept, nothing outside the grown region changed, no original pixel survives inside."""
    src = np.asarray(photo)
    out = np.asarray(res.pil())
    assert out.shape == src.shape
    region = res.region.numpy() > 0.5
    assert region.any() and not region.all()
    assert np.array_equal(out[~region], src[~region])
    return src, out, region


def test_render_only_pipeline(small_scene, anny_cache_dir):
    photo, kp = small_scene
    pipe = RefSDPipeline(anny_cache_dir=anny_cache_dir, crop_size=CROP, device="cpu")
    res = pipe(photo, kp, seed=3)
    src, out, region = _check_privacy(photo, res)
    assert res.num_people == 1 and res.fit.people[0].quality == "good"
    assert res.leak_ratio == 0.0 and res.privacy_passed
    changed = (out[region] != src[region]).any(-1).mean()
    assert changed > 0.9
    assert set(res.timings) == set(STAGES) and res.timings["refine"] == 0.0
    assert res.fit_summary()["people"] == 1 and res.crop_boxes == []
    # same seed, same output; the attributes come from the seed
    again = pipe(photo, kp, seed=3)
    assert torch.equal(again.image, res.image) and again.people == res.people
    other = pipe(photo, kp, seed=4)
    assert other.people != res.people
    # an image without people passes through unchanged
    empty = pipe(photo, [{"canvas_width": 160, "canvas_height": 160, "people": []}], seed=3)
    assert empty.num_people == 0 and empty.leak_ratio == 0.0 and np.array_equal(np.asarray(empty.pil()), src)
    # fixed attributes for everyone
    fixed = RefSDPipeline(anny_cache_dir=anny_cache_dir, attributes=PersonAttributes(gender="male", age=40),
                          device="cpu")(photo, kp, seed=0)
    assert fixed.people[0].gender == "male" and fixed.people[0].age == 40


def test_diffusers_pipeline_offline(small_scene, anny_cache_dir, tiny_models, no_network):
    photo, kp = small_scene
    pipe = RefSDPipeline(anny_cache_dir=anny_cache_dir, refiner=_refiner(tiny_models), crop_size=CROP, steps=3,
                         device="cpu")
    res = pipe(photo, kp, seed=11)
    src, out, region = _check_privacy(photo, res)
    assert res.leak_ratio == 0.0 and res.privacy_passed
    assert len(res.crop_boxes) == 1 and res.timings["refine"] > 0
    assert res.prompts[0][0].startswith("a photo of a ")
    # the refined crop went in: differs from the render-only composite inside the avatar's mask
    render_only = RefSDPipeline(anny_cache_dir=anny_cache_dir, crop_size=CROP, device="cpu")(photo, kp, seed=11)
    inside = res.avatar_mask.numpy() > 0.5
    assert (np.asarray(render_only.pil())[inside] != out[inside]).any(-1).mean() > 0.5
    # same seed -> identical; another seed -> different people and pixels
    assert torch.equal(pipe(photo, kp, seed=11).image, res.image)
    other = pipe(photo, kp, seed=12)
    assert not torch.equal(other.image, res.image)
    # a batch gives each image the result of its own call
    both = pipe.batch([photo, photo], [kp, kp], [11, 12])
    assert torch.allclose(both[0].image, res.image, atol=1 / 255) and both[1].people == other.people


def test_single_file_checkpoints_load_the_same_weights(tiny_models, no_network):
    folder = _refiner(tiny_models)
    files = tiny_models["controlnet_files"]
    single = DiffusersRefiner(
        tiny_models["checkpoint"], {"depth": files["depth"], "openpose": files["openpose"]},
        config=tiny_models["config"], controlnet_configs=tiny_models["controlnet_configs"], device="cpu",
    )
    assert not any(tiny_models["config"].rglob("*.safetensors"))  # the weights can only come from the file
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(folder.pipe, name).state_dict(), getattr(single.pipe, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for na, nb in zip(folder.pipe.controlnet.nets, single.pipe.controlnet.nets, strict=True):
        a, b = na.state_dict(), nb.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(2, 128, 64, 3, generator=g)
    maps = {"depth": torch.rand(2, 128, 64, 3, generator=g), "openpose": torch.rand(2, 128, 64, 3, generator=g)}
    args = (crops, maps, None, ["a photo of a woman"] * 2, ["blurry"] * 2, [1, 2])
    a, _ = folder.refine(*args, steps=2)
    b, _ = single.refine(*args, steps=2)
    assert a.shape == (2, 128, 64, 3) and torch.equal(a, b)


def test_canny_inpaint_refiner(small_scene, anny_cache_dir, tiny_models, no_network):
    photo, kp = small_scene
    cn = tiny_models["controlnets"]
    refiner = DiffusersRefiner(tiny_models["model"], {"canny": cn["canny"]}, device="cpu", inpaint=True,
                               scheduler="ddim", attention_slicing=True, vae_slicing=True, vae_tiling=True)
    assert refiner.map_names == ("edges",)
    res = RefSDPipeline(anny_cache_dir=anny_cache_dir, refiner=refiner, crop_size=CROP, steps=2, device="cpu")(
        photo, kp, seed=5)
    _check_privacy(photo, res)
    assert res.leak_ratio == 0.0


def test_bad_model_paths_name_what_was_expected(tmp_path, tiny_models):
    with pytest.raises(DiffusionModelError, match="does not exist.*model_index.json, unet/"):
        check_model_path(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DiffusionModelError, match="lacks model_index.json, unet/config.json"):
        check_model_path(empty)
    ckpt = tmp_path / "v1-5.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(DiffusionModelError, match="pickle.*safetensors"):
        check_model_path(ckpt)
    with pytest.raises(DiffusionModelError, match="needs a local config folder"):
        check_model_path(tiny_models["checkpoint"])
    with pytest.raises(DiffusionModelError, match="lacks .*unet/config.json"):
        check_model_path(tiny_models["checkpoint"], config=empty)
    bin_cn = tmp_path / "cn"
    bin_cn.mkdir()
    (bin_cn / "config.json").write_text("{}")
    (bin_cn / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(DiffusionModelError, match="only pickle weights"):
        load_controlnet(bin_cn)
    with pytest.raises(DiffusionModelError, match="needs a local folder with its config.json"):
        load_controlnet(tiny_models["controlnet_files"]["depth"])
    with pytest.raises(DiffusionModelError, match="unknown control 'segmentation'"):
        DiffusersRefiner(tiny_models["model"], {"segmentation": tiny_models["controlnets"]["depth"]})
    with pytest.raises(PipelineError, match="denoise"):
        RefSDPipeline(denoise=0.0)
    with pytest.raises(PipelineError, match="not a readable image"):
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        load_image(broken)


def test_out_of_memory_halves_the_batch():
    """The retry logic, with the CUDA out-of-memory error raised for batches over 2 crops
    (no GPU here; the GPU test below provokes a real one)."""
    calls = []

    def fn(i, j):
        calls.append(j - i)
        if j - i > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return list(range(i, j))

    notes: list[str] = []
    out, bs = run_in_batches(fn, 7, 8, notes)
    assert out == list(range(7)) and bs == 2
    assert calls == [7, 4, 2, 2, 2, 1] and len(notes) == 2 and "retried with batches of 4" in notes[0]
    with pytest.raises(ValueError):
        run_in_batches(lambda i, j: (_ for _ in ()).throw(ValueError("other")), 3, 2)
    assert img2img_steps(20, 0.6) == 34 and int(34 * 0.6) == 20 and img2img_steps(5, 1.0) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_out_of_memory_is_retried(tiny_models):
    refiner = DiffusersRefiner(tiny_models["model"], {"depth": tiny_models["controlnets"]["depth"]},
                               device="cuda", batch_size=64)
    n, size = 64, (512, 512)
    crops = torch.rand(n, *size, 3)
    maps = {"depth": torch.rand(n, *size, 3)}
    args = (crops[:1], {"depth": maps["depth"][:1]}, None, ["a photo"], [""], [0])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    refiner.refine(*args, steps=1)
    one = torch.cuda.max_memory_allocated() - base
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + 6 * one) / total))
    try:
        refiner.batch_size = n
        out, notes = refiner.refine(crops, maps, None, ["a photo"] * n, [""] * n, list(range(n)), steps=1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert out.shape[0] == n and notes and refiner.batch_size < n


def test_tiny_tokenizer_keeps_prompt_words_whole(tiny_models):
    from transformers import CLIPTokenizer

    from refsd.attributes import AttributeDistribution, build_prompt

    tok = CLIPTokenizer.from_pretrained(tiny_models["model"] / "tokenizer", local_files_only=True)
    pos, _neg = build_prompt(AttributeDistribution().sample_person(1, 0, 0))
    tokens = tok.convert_ids_to_tokens(tok(pos).input_ids)
    assert tokens[0] == "<|startoftext|>" and tokens[-1] == "<|endoftext|>"
    assert len(tokens) < 77
    for word in re.findall(r"[a-z]+", pos):  # every word one token, as with CLIP's own vocabulary
        assert word + "</w>" in tokens, word


def test_stage_helpers_match_crop_and_paste():
    """refsd.stages (shared by the nodes and the pipeline) against the crop/paste primitives."""
    from refsd.composite import CompositeError
    from refsd.crop import crop, crop_boxes, paste
    from refsd.stages import crop_batch, crop_mask_batch, paste_crops, people_crop_boxes, pick

    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 96, 80, 3, generator=g)
    masks = torch.zeros(3, 96, 80)
    masks[0, 10:60, 10:30] = 1
    masks[1, 20:90, 40:70] = 1
    masks[2, 5:50, 20:60] = 1
    boxes = people_crop_boxes([2, 1], masks, 64, 64, 0.1)
    assert [(b.image_index, b.person_index) for b in boxes] == [(0, 0), (0, 1), (1, 0)]
    assert boxes[:2] == crop_boxes(masks[:2], 64, 64, 0.1, image_index=0)
    crops = crop_batch(images, boxes, "border")
    assert all(torch.equal(crops[k], crop(images[b.image_index], b, padding="border")) for k, b in enumerate(boxes))
    assert crop_batch(None, boxes).shape == (3, 64, 64, 3) and crop_mask_batch(None, boxes).shape == (3, 64, 64)
    m = crop_mask_batch(masks[:1], boxes)  # a batch of one is used for every image
    assert torch.equal(m[2], crop(masks[0][..., None], boxes[2], padding="zeros")[..., 0])
    pasted = paste_crops(images, 1 - crops, boxes, masks[:2])
    ref = paste(paste(images[0], 1 - crops[0], boxes[0], mask=masks[0]), 1 - crops[1], boxes[1], mask=masks[0])
    assert torch.equal(pasted[0], ref)
    with pytest.raises(CompositeError, match="3 person masks for 2 fitted people"):
        people_crop_boxes([2], masks)
    with pytest.raises(CompositeError, match="2 crops for 3 crop boxes"):
        paste_crops(images, crops[:2], boxes)
    with pytest.raises(CompositeError, match="a batch of 2"):
        pick(images, 2)


def test_importing_the_pipeline_is_light():
    import subprocess
    import sys

    code = ("import sys, refsd, refsd.pipeline, refsd.diffusion, refsd.testing, refsd.pseudonymize, refsd.cli; "
            "refsd.cli.build_parser(); "
            "print([m for m in ('diffusers', 'transformers', 'ray', 'accelerate') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

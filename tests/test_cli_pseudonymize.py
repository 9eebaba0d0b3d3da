"""``refsd pseudonymize`` in-process: records, skips, errors, resume, model-path errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import require_detect_models
from PIL import Image

from refsd.cli import main as cli
from refsd.comfyapi import PACK_ROOT

pytestmark = pytest.mark.slow  # documentation only: these run in CI


def _diffusers_args(models: dict) -> list[str]:
    cn = models["controlnets"]
    return ["--model", str(models["model"]), "--controlnet", f"depth={cn['depth']}",
            "--controlnet", f"openpose={cn['openpose']}", "--steps", "2", "--device", "cpu"]


def _records(out: Path) -> dict[str, dict]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert len(recs) == len({r["image"] for r in recs})  # compacted: one line per image
    return {r["image"]: r for r in recs}


def test_folder_run_records_everything_and_resumes(dataset, tmp_path, tiny_models, anny_env, no_network, capsys):
    out = tmp_path / "out"
    # --people file: keypoint JSONs only, an image without one is skipped (as before the detector)
    args = [str(dataset), "-o", str(out), "--seed", "7", "--crop-size", "64x128", "--no-progress", "--people", "file",
            *_diffusers_args(tiny_models)]
    assert cli(["pseudonymize", *args]) == 1  # the corrupt image is an error (recorded, not fatal)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary == {"ok": 3, "error": 1, "skipped": 2}
    recs = _records(out)
    assert sorted(recs) == ["a.png", "broken.png", "c.png", "nokp.png", "notes.txt", "sub/b.jpg"]
    assert recs["notes.txt"]["status"] == "skipped" and "not an image" in recs["notes.txt"]["error"]
    assert recs["nokp.png"]["status"] == "skipped" and "no keypoint file" in recs["nokp.png"]["error"]
    assert "--people auto detects" in recs["nokp.png"]["error"]
    assert recs["broken.png"]["status"] == "error" and "not a readable image" in recs["broken.png"]["error"]
    for key, stem in (("a.png", "a"), ("sub/b.jpg", "sub__b"), ("c.png", "c")):
        r = recs[key]
        assert r["status"] == "ok" and r["outputs"] == [f"{stem}/pseudonymized.png"], r
        assert r["leak_ratio"] == 0.0 and r["privacy_passed"] is True
        assert r["fit"]["people"] == 1 and len(r["attributes"]) == 1 and len(r["attributes"][0]) == 1
        assert set(r["timings"]) == {"detect", "fit", "render", "remove", "refine", "composite", "identity"}
        assert r["identity"][0]["passed"] and Path(r["source"]) == (dataset / key).resolve()
        assert r["people_source"] == "file" and r["detections"] is None
        assert r["worker"].startswith("local:") and isinstance(r["seed"], int)
        src = Image.open(dataset / key)
        got = Image.open(out / r["outputs"][0])
        assert got.size == src.size and got.mode == "RGB"
    # resume: nothing is redone for finished images; the failed one is tried again
    before = {k: r["finished"] for k, r in recs.items()}
    first_png = (out / "a" / "pseudonymized.png").read_bytes()
    assert cli(["pseudonymize", *args]) == 1
    again = _records(out)
    assert all(again[k]["finished"] == before[k] for k in ("a.png", "sub/b.jpg", "c.png"))
    assert again["broken.png"]["attempts"] == 2
    # a fresh run (no resume) reproduces the same files for the same seed
    assert cli(["pseudonymize", *args, "--no-resume"]) == 1
    assert (out / "a" / "pseudonymized.png").read_bytes() == first_png
    assert _records(out)["a.png"]["finished"] >= before["a.png"]


def test_unfitted_people_are_not_silently_kept(tmp_path, small_scene, anny_env, capsys):
    photo, kp = small_scene
    data = tmp_path / "in"
    data.mkdir()
    photo.save(data / "two.png")
    kp2 = json.loads(json.dumps(kp))
    ghost = [0.0] * 54
    ghost[0:3] = [60, 40, 0.9]  # a second person with two confident joints: cannot be fitted
    ghost[3:6] = [62, 60, 0.9]
    kp2[0]["people"].append({"pose_keypoints_2d": ghost})
    (data / "two.json").write_text(json.dumps(kp2))
    out = tmp_path / "out"
    base = [str(data / "two.png"), "-o", str(out), "--refiner", "none", "--no-progress", "--save-extras"]
    assert cli(["pseudonymize", *base]) == 1
    rec = _records(out)["two.png"]
    assert rec["status"] == "error" and "could not be fitted" in rec["error"] and rec["outputs"] == []
    assert not (out / "two" / "pseudonymized.png").exists()
    assert cli(["pseudonymize", *base, "--allow-unfitted"]) == 0
    rec = _records(out)["two.png"]
    assert rec["status"] == "ok" and rec["outputs"] == ["two/body_fit.json", "two/pseudonymized.png", "two/region.png"]
    assert rec["fit"]["people"] == 1 and rec["fit"]["skipped"][0][0] == 1
    region = np.asarray(Image.open(out / "two" / "region.png"))
    assert region.shape == (160, 160, 3) and region.max() == 255
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "/nonexistent/sd15", "--controlnet", "depth=/nonexistent/cn"], "does not exist"),
        (["--model", "{checkpoint}", "--controlnet", "depth={cn}"], "needs a local config folder"),
        (["--model", "{model}"], "at least one --controlnet"),
        (["--model", "{model}", "--controlnet", "pose={cn}"], "unknown control"),
        (["--model", "{model}", "--controlnet", "depth={cn_file}"], "needs a local folder with its config.json"),
    ],
)
def test_bad_model_paths_exit_with_the_expected_layout(extra, message, dataset, tmp_path, tiny_models, capsys):
    fill = {"checkpoint": tiny_models["checkpoint"], "model": tiny_models["model"],
            "cn": tiny_models["controlnets"]["depth"], "cn_file": tiny_models["controlnet_files"]["depth"]}
    extra = [e.format(**fill) for e in extra]
    assert cli(["pseudonymize", str(dataset), "-o", str(tmp_path / "o"), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert "refsd pseudonymize: error:" in err and message in err


def test_images_without_keypoints_are_detected(tmp_path, tiny_models, anny_env, no_network, capsys):
    """--people auto (default): the JSON where there is one, the real detector where not; --people detect
    redoes the image that had used its JSON; no detector files: a clear error before any work."""
    require_detect_models()
    data = tmp_path / "in"
    data.mkdir()
    Image.open(PACK_ROOT / "samples" / "camera.png").convert("RGB").resize((160, 160)).save(data / "camera.png")
    (data / "camera.json").write_text((PACK_ROOT / "samples" / "camera.json").read_text())
    astronaut = Path(os.environ.get("REFSD_CACHE_DIR", PACK_ROOT / ".cache")) / "photos" / "astronaut.png"
    if not astronaut.is_file():
        pytest.skip(f"{astronaut} is not there: run `make setup` (it fetches the sample photos)")
    Image.open(astronaut).convert("RGB").resize((160, 160)).save(data / "astronaut.png")  # no JSON
    out = tmp_path / "out"
    args = [str(data), "-o", str(out), "--seed", "2", "--crop-size", "64x128", "--no-progress",
            "--detect-model", "lite", *_diffusers_args(tiny_models)]
    assert cli(["pseudonymize", *args]) == 0
    recs = _records(out)
    file_rec, det = recs["camera.png"], recs["astronaut.png"]
    assert file_rec["people_source"] == "file" and file_rec["detections"] is None
    assert det["people_source"] == "detect" and len(det["detections"]) == 1 and len(det["detections"][0]) == 1
    person = det["detections"][0][0]
    assert person["score"] >= 0.5 and person["presence"] >= 0.5 and len(person["box"]) == 4
    for key, r in recs.items():
        assert r["status"] == "ok" and r["leak_ratio"] == 0.0 and r["privacy_passed"] is True, r
        assert r["fit"]["people"] == 1 and r["timings"]["refine"] > 0
        src = np.asarray(Image.open(data / key).convert("RGB"))
        got = np.asarray(Image.open(out / r["outputs"][0]))
        assert got.shape == src.shape and (got != src).any(-1).mean() > 0.2  # the person was replaced
    assert det["timings"]["detect"] > 0 and file_rec["timings"]["detect"] == 0
    # --people detect: the JSON is ignored, so camera.png (from its file before) is redone, astronaut.png is not
    assert cli(["pseudonymize", *args, "--people", "detect"]) == 0
    again = _records(out)
    assert again["astronaut.png"]["finished"] == det["finished"]
    assert again["camera.png"]["people_source"] == "detect" and again["camera.png"]["detections"][0][0]["score"] >= 0.5
    capsys.readouterr()
    # the detector's files missing: exit 2 naming the fetch command (nothing is downloaded)
    empty = tmp_path / "empty"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFSD_DETECT_DIR", str(empty))
        mp.setenv("REFSD_CACHE_DIR", str(empty))
        mp.setenv("HOME", str(empty))
        assert cli(["pseudonymize", str(data / "astronaut.png"), "-o", str(tmp_path / "o2"), "--no-progress",
                    "--refiner", "none"]) == 2
    err = capsys.readouterr().err
    assert "refsd pseudonymize: error:" in err and "pose_detection.tflite" in err and "refsd models fetch" in err

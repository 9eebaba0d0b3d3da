"""The dataset-run manifest and folder scan (refsd.comfyapi.manifest), shared by refsd run and refsd pseudonymize."""

from __future__ import annotations

import json

import pytest

from refsd.comfyapi import Manifest, image_seed, keypoints_for, list_images, output_stem


def test_folder_scan_finds_images_only_sorted_and_skips_hidden(tmp_path):
    for rel in ("b.png", "a.JPG", "sub/c.webp", ".hidden/d.png", "notes.txt", "a.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "b.png", "sub/c.webp"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_keypoints_beside_the_image_or_in_a_mirror_folder(tmp_path):
    (tmp_path / "img" / "sub").mkdir(parents=True)
    (tmp_path / "kp" / "sub").mkdir(parents=True)
    img = tmp_path / "img" / "sub" / "x.png"
    img.write_bytes(b"")
    assert keypoints_for(img, tmp_path / "img", None) is None
    (tmp_path / "img" / "sub" / "x.png.json").write_text("[]")
    assert keypoints_for(img, tmp_path / "img", None).name == "x.png.json"
    (tmp_path / "kp" / "sub" / "x.json").write_text("[]")
    assert keypoints_for(img, tmp_path / "img", tmp_path / "kp") == tmp_path / "kp" / "sub" / "x.json"


def test_seeds_depend_on_run_seed_and_path_only():
    assert image_seed(1, "a.png") == image_seed(1, "a.png")
    assert len({image_seed(1, "a.png"), image_seed(2, "a.png"), image_seed(1, "b.png")}) == 3
    assert all(0 <= image_seed(s, "x") <= 0xFFFFFFFF for s in range(50))
    assert output_stem("sub/dir/photo.final.png") == "sub__dir__photo.final"


def test_manifest_resume_semantics(tmp_path):
    m = Manifest(tmp_path / "manifest.jsonl")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "out.png").write_bytes(b"png")
    m.write({"image": "a.png", "status": "error", "error": "boom"})
    m.write({"image": "a.png", "status": "ok", "outputs": ["a/out.png"], "attempts": 2})
    m.write({"image": "b.png", "status": "ok", "outputs": ["b/missing.png"]})
    m.write({"image": "c.png", "status": "skipped", "error": "no keypoints"})
    with pytest.raises(ValueError, match="status must be one of"):
        m.write({"image": "d.png", "status": "done"})
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"image": "e.png", "sta')  # a run killed mid-line
    again = Manifest(tmp_path / "manifest.jsonl")
    assert again.skipped_lines == 1
    assert again.is_done("a.png") and again.records["a.png"]["attempts"] == 2
    assert not again.is_done("b.png")  # its output file is gone: run it again
    assert not again.is_done("c.png")
    again.compact()
    lines = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["image"] for r in lines] == ["a.png", "b.png", "c.png"]
    assert set(lines[0]) >= {"image", "status", "outputs", "seed", "attributes", "fit", "leak_ratio", "error",
                             "attempts", "seconds", "worker", "finished"}
    assert again.summary() == {"ok": 2, "error": 0, "skipped": 1}


def test_done_only_from_the_same_people_source(tmp_path):
    (tmp_path / "o.png").write_bytes(b"png")
    m = Manifest(tmp_path / "manifest.jsonl")
    m.write({"image": "old.png", "status": "ok", "outputs": ["o.png"]})  # before detection: no people_source
    m.write({"image": "det.png", "status": "ok", "outputs": ["o.png"], "people_source": "detect",
             "detections": [[{"score": 0.9, "presence": 1.0, "box": [0, 0, 5, 9]}]]})
    assert m.records["old.png"]["people_source"] is None and m.records["old.png"]["detections"] is None
    assert m.is_done("old.png", people_source="file") and not m.is_done("old.png", people_source="detect")
    assert m.is_done("det.png", people_source="detect") and not m.is_done("det.png", people_source="file")
    assert m.is_done("det.png")  # no source asked: as before


def test_video_summary_names_the_gaps_of_a_track():
    """refsd run's video record from Track People's ids: track 1 missing in frames 2 and 3 between
    sightings (a gap: hidden, or missed and left unreplaced); track 2 only starts at frame 4 (no gap)."""
    from refsd.comfyapi.runner import video_summary

    ids = [[0, 1], [1, 0], [0, None], [0], [0, 1, 2]]
    looks = [[{"a": 0}, {"a": 1}], [{"a": 1}, {"a": 0}], [{"a": 0}], [{"a": 0}], [{"a": 0}, {"a": 1}, {"a": 2}]]
    v = video_summary(ids, looks)
    assert v["frames"] == 5 and v["gaps"] == {"1": [2, 3]}
    assert v["tracks"]["0"]["frames"] == 5 and v["tracks"]["1"]["frames"] == 3 and v["tracks"]["2"]["frames"] == 1
    assert (v["tracks"]["1"]["first"], v["tracks"]["1"]["last"]) == (0, 4)
    assert v["tracks"]["1"]["attributes"] == {"a": 1} and v["tracks"]["2"]["attributes"] == {"a": 2}

"""``refsd run``: a workflow over a folder of images against real ComfyUI servers.

The images are real (the CC0 sample photo at three sizes/crops, with its hand-annotated
keypoints), the servers are real ComfyUI processes, the command is the installed console
script where the test needs a process it can kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import model_links, require_detect_models
from PIL import Image

from refsd.cli import main as cli_main
from refsd.comfyapi import PACK_ROOT, ComfyClient, ComfyServer, Manifest, RunError, bind_prompt, image_seed
from refsd.comfyapi.binding import DETECTOR, RunOptions
from refsd.comfyapi.run import check_detector_node

pytestmark = pytest.mark.comfyui
SAMPLES = PACK_ROOT / "samples"
WORKFLOW_UI = PACK_ROOT / "workflows" / "refsd_render_only.json"
WORKFLOW_API = PACK_ROOT / "workflows" / "api" / "refsd_render_only.json"


def make_folder(folder: Path, names=("a", "b", "c")) -> Path:
    """Three real photos: the sample at 256 px, at 192 px, and mirrored (keypoints mirrored too)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(SAMPLES / "camera.png").convert("RGB")
    frames = json.loads((SAMPLES / "camera.json").read_text())
    for i, name in enumerate(names):
        size = (256, 192)[i % 2]
        img = photo.resize((size, size), Image.BILINEAR)
        kp = json.loads(json.dumps(frames))
        if i == 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            for person in kp[0]["people"]:
                pts = person["pose_keypoints_2d"]
                for j in range(0, len(pts), 3):
                    if pts[j + 2] > 0:
                        pts[j] = kp[0]["canvas_width"] - pts[j]
                # mirrored: left and right swap (COCO-18 order)
                trip = [pts[j:j + 3] for j in range(0, len(pts), 3)]
                for a, b in ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)):
                    trip[a], trip[b] = trip[b], trip[a]
                person["pose_keypoints_2d"] = [v for t in trip for v in t]
        img.save(folder / f"{name}.png")
        (folder / f"{name}.json").write_text(json.dumps(kp))
    return folder


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def image_outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.png"))


def test_run_three_images_ui_workflow(comfy_server, tmp_path):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    rc = cli_main(["run", str(WORKFLOW_UI), str(src), str(out), "--server", comfy_server.url, "--seed", "7",
                   "--no-progress"])
    assert rc == 0
    recs = read_manifest(out)
    assert sorted(r["image"] for r in recs) == ["a.png", "b.png", "c.png"]
    for r in recs:
        assert r["status"] == "ok", r
        assert r["seed"] == image_seed(7, r["image"])
        assert r["leak_ratio"] == 0.0 and r["privacy_passed"] is True
        assert r["fit"][0]["people"] == 1 and r["fit"][0]["quality"] == ["good"]
        assert r["attributes"][0][0]["gender"] in ("female", "male")
        assert r["worker"] == comfy_server.url
        for o in r["outputs"]:
            assert (out / o).is_file()
        # the pseudonymized image has the input's size and differs from it
        png = [o for o in r["outputs"] if o.endswith(".png")]
        assert len(png) == 1
        result = np.asarray(Image.open(out / png[0]).convert("RGB"))
        original = np.asarray(Image.open(src / r["image"]).convert("RGB"))
        assert result.shape == original.shape
        assert (result != original).any(axis=-1).mean() > 0.05
        assert any(o.endswith(".json") for o in r["outputs"])  # the saved body fit
    assert len({r["seed"] for r in recs}) == 3
    assert len(image_outputs(out)) == 3

    # again: everything is done, nothing is submitted, nothing duplicated
    before = {r["image"]: r["finished"] for r in recs}
    rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", comfy_server.url, "--seed", "7",
                   "--no-progress"])
    assert rc == 0
    again = read_manifest(out)
    assert {r["image"]: r["finished"] for r in again} == before
    assert len(image_outputs(out)) == 3


def test_corrupt_image_missing_keypoints_and_non_images(comfy_server, tmp_path):
    src = make_folder(tmp_path / "in", names=("good1", "good2"))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))  # a PNG header, then garbage
    Image.open(SAMPLES / "camera.png").resize((128, 128)).save(src / "nokeys.png")
    (src / "notes.txt").write_text("not an image")
    # a second person with only two keypoints cannot be fitted, so would not be replaced
    Image.open(src / "good1.png").save(src / "partial.png")
    frames = json.loads((src / "good1.json").read_text())
    frames[0]["people"].append({"pose_keypoints_2d": [400, 100, 0.9, 410, 130, 0.9] + [0, 0, 0] * 16})
    (src / "partial.json").write_text(json.dumps(frames))
    out = tmp_path / "out"
    rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", comfy_server.url, "--no-progress",
                   "--people", "file"])  # keypoint JSONs only: an image without one is skipped
    assert rc == 1  # some image failed
    recs = {r["image"]: r for r in read_manifest(out)}
    assert set(recs) == {"good1.png", "good2.png", "broken.png", "nokeys.png", "partial.png"}
    assert recs["partial.png"]["status"] == "error" and "could not be fitted" in recs["partial.png"]["error"]
    assert recs["partial.png"]["outputs"] == [] and not list((out / "partial").glob("*"))  # deleted
    assert recs["good1.png"]["status"] == recs["good2.png"]["status"] == "ok"
    assert recs["broken.png"]["status"] == "error" and "cannot decode" in recs["broken.png"]["error"]
    assert recs["nokeys.png"]["status"] == "skipped" and "nokeys.json" in recs["nokeys.png"]["error"]
    assert "--people auto detects" in recs["nokeys.png"]["error"]
    assert recs["good1.png"]["people_source"] == "file" and recs["good1.png"]["detections"] is None
    assert len(image_outputs(out)) == 2


def test_keypoint_loader_becomes_a_detector():
    """The binding alone: refsd_render_only with --people auto/detect for an image without a JSON."""
    prompt = json.loads(WORKFLOW_API.read_text())
    inputs = RunOptions(WORKFLOW_API, Path("."), Path("."), detect_model="lite", min_score=0.4).detect_inputs()
    p = bind_prompt(prompt, "up.png", "ignored.json", 5, detect=inputs)
    loader = next(k for k, v in prompt.items() if v["class_type"] == "RefSDLoadPoseKeypoints")
    image = next(k for k, v in prompt.items() if v["class_type"] == "LoadImage")
    mask = next(k for k, v in prompt.items() if v["class_type"] == "RefSDPersonMask")
    assert p[loader]["class_type"] == DETECTOR and p[loader]["inputs"] == {
        "image": [image, 0], "model": "lite", "min_score": 0.4, "max_people": 8, "min_presence": 0.5, "tile_scale": 0.5}
    assert p[mask]["inputs"]["mask"] == [loader, 1]  # the union person mask, into the unconnected input
    assert p[image]["inputs"]["image"] == "up.png" and "mask" not in prompt[mask]["inputs"]
    # everything else is the workflow as it was (links to the loader's slot 0 stay: POSE_KEYPOINT)
    assert {k: v for k, v in p.items() if k not in (loader, mask, image)} == {
        k: v for k, v in bind_prompt(prompt, "up.png", None, 5).items() if k not in (loader, mask, image)}


def test_images_without_keypoints_are_detected(comfy_server, tmp_path, capsys):
    """--people auto (default): the image with a JSON uses it, the one without is detected by RefSD Detect
    People on the real server (real BlazePose files); the manifest records source and scores."""
    require_detect_models()
    src = make_folder(tmp_path / "in", names=("a",))
    astronaut = Path(os.environ.get("REFSD_CACHE_DIR", PACK_ROOT / ".cache")) / "photos" / "astronaut.png"
    if not astronaut.is_file():
        pytest.skip(f"{astronaut} is not there: run `make setup` (it fetches the sample photos)")
    Image.open(astronaut).convert("RGB").resize((192, 192)).save(src / "astronaut.png")  # no JSON
    info = ComfyClient(comfy_server.url).object_info()
    with pytest.raises(RunError, match="no RefSDDetectPeople node .*--people file"):  # an old pack's server
        check_detector_node(comfy_server.url, {k: v for k, v in info.items() if k != DETECTOR}, "test")
    out = tmp_path / "out"
    rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", comfy_server.url, "--seed", "4",
                   "--detect-model", "lite", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    recs = {r["image"]: r for r in read_manifest(out)}
    assert recs["a.png"]["people_source"] == "file" and recs["a.png"]["detections"] is None
    det = recs["astronaut.png"]
    assert det["people_source"] == "detect" and len(det["detections"]) == 1 and len(det["detections"][0]) == 1
    assert det["detections"][0][0]["score"] >= 0.5 and len(det["detections"][0][0]["box"]) == 4
    for key, r in recs.items():
        assert r["status"] == "ok" and r["leak_ratio"] == 0.0 and r["privacy_passed"] is True, r
        assert r["fit"][0]["people"] == 1
        png = [o for o in r["outputs"] if o.endswith(".png")]
        result = np.asarray(Image.open(out / png[0]).convert("RGB"))
        original = np.asarray(Image.open(src / key).convert("RGB"))
        assert result.shape == original.shape and (result != original).any(axis=-1).mean() > 0.1


def test_server_without_detector_files_says_so(comfyui_path, anny_cache_dir, tmp_path, monkeypatch):
    """A server with RefSD Detect People but no model files: the detected image is an error naming the
    detector's files and the fetch command; the image with a JSON is an error naming the face models of
    the privacy check's identity check, the fetch command and how to turn the check off (which then runs)."""
    require_detect_models()
    empty = tmp_path / "empty"
    for var in ("REFSD_DETECT_DIR", "REFSD_CACHE_DIR", "HOME"):  # the server inherits them: no default folder
        monkeypatch.setenv(var, str(empty))
    src = make_folder(tmp_path / "in", names=("a",))
    Image.open(SAMPLES / "camera.png").convert("RGB").resize((128, 128)).save(src / "nokeys.png")
    out = tmp_path / "out"
    with ComfyServer(tmp_path / "base", comfyui_path, model_links={"anny": anny_cache_dir}) as server:
        rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", server.url, "--no-progress"])
        assert rc == 1
        recs = {r["image"]: r for r in read_manifest(out)}
        face = recs["a.png"]
        assert face["status"] == "error" and face["outputs"] == [] and face["people_source"] == "file"
        assert "lacks the face models of the identity check" in face["error"] and "refsd models fetch" in face["error"]
        assert "--set 10.identity=false" in face["error"] and "face_detection_yunet" in face["error"]
        rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", server.url, "--no-progress",
                       "--set", "10.identity=false"])
    assert rc == 1
    recs = {r["image"]: r for r in read_manifest(out)}
    assert recs["a.png"]["status"] == "ok" and recs["a.png"]["identity"] == [None]
    err = recs["nokeys.png"]
    assert err["status"] == "error" and err["people_source"] == "detect" and err["outputs"] == []
    assert "lacks the person detector's model files" in err["error"] and "refsd models fetch" in err["error"]
    assert "pose_detection.tflite" in err["error"]


def test_bad_workflow_and_no_server_fail_clearly(comfy_server, tmp_path, capsys):
    src = make_folder(tmp_path / "in", names=("a",))
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": 3}')
    assert cli_main(["run", str(bad), str(src), str(tmp_path / "o"), "--server", comfy_server.url]) == 2
    assert "neither a UI-format workflow" in capsys.readouterr().err
    assert cli_main(["run", str(WORKFLOW_API), str(src), str(tmp_path / "o"), "--server", "http://127.0.0.1:9"]) == 2
    assert "no ComfyUI server answers" in capsys.readouterr().err
    assert cli_main(["run", str(WORKFLOW_API), str(src), str(tmp_path / "o"), "--server", comfy_server.url,
                     "--set", "99.x=1"]) == 2
    assert "has no node 99" in capsys.readouterr().err


def test_killed_run_resumes_without_duplicates(comfy_server, tmp_path):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).with_name("refsd")), "run", str(WORKFLOW_API), str(src), str(out),
           "--server", comfy_server.url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and any(json.loads(x)["status"] == "ok" for x in manifest.read_text().splitlines()
                                         if x.strip()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stdout.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)  # mid-run: the second image is being processed
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    first = read_manifest(out)
    assert 1 <= len(first) < 3
    done = {r["image"]: r for r in first}
    # the server may still finish the prompt the killed client had queued; wait for it to go idle
    client = ComfyClient(comfy_server.url)
    for _ in range(600):
        q = client.get_json("/queue")
        if not q["queue_running"] and not q["queue_pending"]:
            break
        time.sleep(0.1)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "already done; resuming" in res.stderr
    recs = read_manifest(out)
    assert sorted(r["image"] for r in recs) == ["a.png", "b.png", "c.png"]  # one line per image
    for img, r in done.items():
        assert next(x for x in recs if x["image"] == img) == r  # finished images were not run again
    assert all(r["status"] == "ok" for r in recs)
    assert len(image_outputs(out)) == 3
    assert not list(out.rglob("*.part"))


@pytest.fixture
def second_server(tmp_path_factory, comfyui_path, anny_cache_dir):
    with ComfyServer(tmp_path_factory.mktemp("comfyui-second"), comfyui_path,
                     model_links=model_links(anny_cache_dir)) as s:
        yield s


def test_spreads_over_servers_and_retries_when_one_dies(comfy_server, second_server, tmp_path):
    """Two servers share the images; the second is killed while it executes one, which is then retried on
    the first. An unreachable URL in the list is skipped with a warning."""
    src = make_folder(tmp_path / "in", names=("a", "b", "c", "d"))
    out = tmp_path / "out"
    killed = threading.Event()

    def kill_second_when_busy() -> None:
        c = ComfyClient(second_server.url)
        for _ in range(3000):
            try:
                if c.get_json("/queue")["queue_running"]:
                    # let it work a moment, then take it down hard
                    time.sleep(0.3)
                    os.killpg(second_server.proc.pid, signal.SIGKILL)
                    killed.set()
                    return
            except Exception:
                return
            time.sleep(0.02)

    t = threading.Thread(target=kill_second_when_busy, daemon=True)
    t.start()
    rc = cli_main(["run", str(WORKFLOW_API), str(src), str(out), "--server", comfy_server.url,
                   "--server", second_server.url, "--server", "http://127.0.0.1:9", "--server-wait", "3",
                   "--no-progress"])
    t.join(5)
    assert killed.is_set()
    assert rc == 0
    recs = read_manifest(out)
    assert sorted(r["image"] for r in recs) == ["a.png", "b.png", "c.png", "d.png"]
    assert all(r["status"] == "ok" for r in recs)
    retried = [r for r in recs if r["attempts"] > 1]
    assert retried and all(r["worker"] == comfy_server.url for r in retried)
    assert len(image_outputs(out)) == 4
    # the manifest reader tolerates a cut-off last line (a killed writer)
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"image": "e.png", "stat')
    m = Manifest(out / "manifest.jsonl", out)
    assert m.skipped_lines == 1 and all(m.is_done(k) for k in ("a.png", "b.png", "c.png", "d.png"))

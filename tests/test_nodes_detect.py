"""RefSD Detect People in the real ComfyUI server, with the real BlazePose files, on real images:
the sample photo (a grayscale PNG) batched with a blank image, a 16 x 16 blank, the photo as RGBA
through ComfyUI's JoinImageWithAlpha, and a damaged model file in a server of its own."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import require_detect_models, run_ok
from PIL import Image

from refsd.comfyapi import PACK_ROOT, ComfyServer
from refsd.keypoints import load_pose_keypoint_file, parse_pose_keypoint

pytestmark = pytest.mark.comfyui
SAMPLES = PACK_ROOT / "samples"
DEFAULTS = {"model": "full", "min_score": 0.5, "max_people": 8, "min_presence": 0.5, "tile_scale": 0.5}


def detect(image, **kw) -> dict:
    return {"class_type": "RefSDDetectPeople", "inputs": {"image": image, **DEFAULTS, **kw}}


def save(images, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": f"detect/{prefix}"}}


def saved_mask(mask, prefix: str, graph: dict, key: str) -> None:
    graph[f"{key}m"] = {"class_type": "MaskToImage", "inputs": {"mask": mask}}
    graph[key] = save([f"{key}m", 0], prefix)


@pytest.fixture(scope="module")
def det(comfy_server, sample_inputs):
    """One prompt with three detector nodes: "4" on [camera.png, blank 512], "21" on a blank 16 x 16,
    "31" (lite) on the photo as RGBA. Returns (result, {save node: list of arrays})."""
    require_detect_models()
    client = comfy_server.client()
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": sample_inputs[0]}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": detect(["3", 0]),
        "9": save(["4", 3], "preview"),
        "10": {"class_type": "RefSDDrawPoseKeypoints", "inputs": {"pose_keypoint": ["4", 0], "width": 0, "height": 0,
                                                                  "draw_body": True, "draw_hands": True,
                                                                  "draw_face": True}},
        "11": save(["10", 0], "skeleton"),
        "20": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0x808080}},
        "21": detect(["20", 0]),
        "26": save(["21", 3], "tiny_preview"),
        "30": {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["1", 0], "alpha": ["1", 1]}},
        "31": detect(["30", 0], model="lite"),
    }
    saved_mask(["4", 1], "mask", g, "6")
    saved_mask(["4", 2], "person", g, "8")
    saved_mask(["21", 1], "tiny_mask", g, "22")
    saved_mask(["21", 2], "tiny_person", g, "24")
    saved_mask(["31", 1], "rgba_mask", g, "32")
    result = run_ok(client, g)

    def arrays(node):
        return [np.asarray(Image.open(io.BytesIO(client.download(r)))) for r in result.outputs[node]["images"]]

    pics = {k: arrays(k) for k in ("6", "8", "9", "11", "22", "24", "26", "32")}
    print(f"\ndetector prompt (3 nodes, 4 images): {result.seconds:.1f} s")
    return result, pics


def annotated():
    """The hand-annotated keypoints of samples/camera.json (pixels of the 512 x 512 photo)."""
    return parse_pose_keypoint(load_pose_keypoint_file(SAMPLES / "camera.json"), min_joints=0)[0].people[0]


def test_schema_is_the_shipped_contract(comfy):
    info = comfy.object_info("RefSDDetectPeople")["RefSDDetectPeople"]
    assert info["display_name"] == "RefSD Detect People" and info["category"] == "RefSD/keypoints"
    assert info["input_order"]["required"] == ["image", "model", "min_score", "max_people", "min_presence",
                                               "tile_scale"]  # never reordered: saved workflows depend on it
    req = info["input"]["required"]
    assert req["model"][1]["options"] == ["lite", "full", "heavy"] and req["model"][1]["default"] == "full"
    assert (req["max_people"][1]["default"], req["max_people"][1]["min"], req["max_people"][1]["max"]) == (8, 1, 64)
    assert [req[k][1]["default"] for k in ("min_score", "min_presence", "tile_scale")] == [0.5, 0.5, 0.5]
    assert "largest person" in req["tile_scale"][1]["tooltip"] and "1/3" in req["tile_scale"][1]["tooltip"]
    assert info["output"] == ["POSE_KEYPOINT", "MASK", "MASK", "IMAGE"]
    assert info["output_name"] == ["POSE_KEYPOINT", "mask", "person_masks", "preview"]
    assert all(info["output_tooltips"]) and len(info["description"]) > 200


def test_finds_the_one_person_and_records_the_detections_in_history(det):
    result, _ = det
    out = result.outputs["4"]
    # a custom ui key reaches /history (what `refsd run` records in its manifest)
    (person,), blank = out["refsd_detections"]
    assert blank == []
    assert person["score"] >= 0.5 and person["presence"] >= 0.5
    x0, y0, x1, y1 = person["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert out["text"] == ["2 image(s), people per image: [1, 0] (BlazePose full, tile_scale 0.5)"]


def test_pose_keypoint_is_valid_pixels_with_real_confidences(det):
    result, pics = det
    raw = result.outputs["4"]["pose_keypoint"]
    assert [(f["canvas_width"], f["canvas_height"], len(f["people"])) for f in raw] == [(512, 512, 1), (512, 512, 0)]
    frames = parse_pose_keypoint(raw, coords="pixels", min_confidence=0.0, min_joints=0)
    p = frames[0].people[0]
    conf = p.body[:, 2]
    assert ((conf > 0) & (conf < 1)).sum() >= 10, "real confidences, not 0/1"
    # feet are written (heels, big toes); on this photo they are below its lower edge, so missing
    assert len(raw[0]["people"][0]["foot_keypoints_2d"]) == 18 and p.foot is not None
    assert not np.isfinite(p.foot[:, :2]).any()
    # the head and shoulders (unambiguous on this photo) where the annotation puts them: within 5 % of the photo
    ref = annotated()
    for j in (0, 1, 2, 14, 16):  # nose, neck, right shoulder, right eye, right ear
        d = np.hypot(*(p.body[j, :2] - ref.body[j, :2]))
        assert d < 0.05 * 512, (j, p.body[j], ref.body[j])
    # the POSE_KEYPOINT output is what other nodes take: Draw Pose Keypoints puts the nose dot on the nose
    skel = pics["11"]
    assert len(skel) == 2 and skel[1].max() == 0
    x, y = p.body[0, :2].astype(int)
    assert tuple(skel[0][y, x]) == (255, 0, 0)


def test_masks_cover_the_coat_and_leave_the_field(det):
    _, pics = det
    union, blank = (m[..., 0] / 255.0 for m in pics["6"])
    assert union.shape == (512, 512) and blank.max() == 0
    # the coat: the torso quadrilateral between the annotated shoulders and hips
    ref = annotated().body
    quad = ref[[2, 5, 11, 8], :2]  # right shoulder, left shoulder, left hip, right hip
    yy, xx = np.mgrid[0:512, 0:512]
    inside = np.ones((512, 512), bool)
    for a, b in zip(quad, np.roll(quad, -1, 0), strict=True):
        inside &= (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0]) >= 0
    assert inside.sum() > 10_000
    assert (union[inside] > 0.5).mean() > 0.9
    assert (union[260:, 380:] > 0.5).mean() < 0.02  # grass and tripod legs right of the man
    assert 0.15 < (union > 0.5).mean() < 0.6
    # one person in the whole batch: person_masks is that one mask (the blank image adds none)
    (person,) = pics["8"]
    assert np.array_equal(person, pics["6"][0])


def test_preview_tints_the_person_and_keeps_the_rest(det):
    _, pics = det
    prev, prev_blank = pics["9"]
    photo = np.asarray(Image.open(SAMPLES / "camera.png").convert("RGB")).astype(int)
    union = pics["6"][0][..., 0]
    far = union == 0
    assert np.abs(prev.astype(int) - photo)[far].max() <= 1  # untouched outside every mask
    coat = union == 255
    r, g, b = (prev[..., c].astype(int)[coat] for c in range(3))
    assert (r - g).mean() > 40 and (r - b).mean() > 40  # first person: tinted red
    assert prev_blank.max() == 0


def test_blank_16px_image_gives_no_people_and_zero_masks(det):
    result, pics = det
    out = result.outputs["21"]
    assert out["refsd_detections"] == [[]]
    assert [f["people"] for f in out["pose_keypoint"]] == [[]]
    assert "people per image: [0]" in out["text"][0]
    (mask,), (person,) = pics["22"], pics["24"]  # no person in the batch: one all-zero mask per image
    assert mask.shape[:2] == person.shape[:2] == (16, 16)
    assert mask.max() == 0 and person.max() == 0
    (prev,) = pics["26"]
    assert prev.shape[:2] == (16, 16) and (prev == 128).all()


def test_rgba_image_and_lite_model(det):
    result, pics = det
    out = result.outputs["31"]
    assert len(out["refsd_detections"]) == 1 and len(out["refsd_detections"][0]) == 1
    assert "BlazePose lite" in out["text"][0]
    (mask,) = pics["32"]
    full = pics["6"][0]
    iou = ((mask > 127) & (full > 127)).sum() / ((mask > 127) | (full > 127)).sum()
    assert iou > 0.8


def test_damaged_model_fails_the_prompt_only(tmp_path, comfyui_path, sample_inputs):
    """A truncated pose_detection.tflite in models/refsd_detect: the prompt fails with the message naming the
    file and the fix, the server keeps answering, and once the file is replaced the same prompt runs."""
    good = require_detect_models()
    models = tmp_path / "models" / "refsd_detect"
    models.mkdir(parents=True)
    (models / "pose_detection.tflite").write_bytes((good / "pose_detection.tflite").read_bytes()[:4096])
    (models / "pose_landmark_full.tflite").symlink_to(good / "pose_landmark_full.tflite")
    with ComfyServer(tmp_path, comfyui_path) as server:
        client = server.client()
        client.upload(SAMPLES / sample_inputs[0])
        g = {"1": {"class_type": "LoadImage", "inputs": {"image": sample_inputs[0]}},
             "2": detect(["1", 0], tile_scale=0.0), "3": save(["2", 3], "preview")}
        result = client.run(g)
        assert result.error is not None and result.error["node_type"] == "RefSDDetectPeople"
        assert result.error["exception_type"].endswith("DetectModelCorrupt")
        msg = result.error["exception_message"]
        assert str(models / "pose_detection.tflite") in msg and "damaged" in msg and "refsd models fetch" in msg
        assert "cpu" in json.dumps(client.get_json("/system_stats")).lower()
        (models / "pose_detection.tflite").unlink()
        (models / "pose_detection.tflite").symlink_to(good / "pose_detection.tflite")
        fixed = run_ok(client, g)
        assert len(fixed.outputs["2"]["refsd_detections"][0]) == 1
        assert server.alive()


def test_model_folder_is_registered_with_comfyui(comfy, comfy_server):
    """models/refsd_detect is a ComfyUI model folder for the detector's .tflite and the face models' .onnx files
    (what the fetch hint tells users)."""
    require_detect_models()
    listed = comfy.get_json("/models/refsd_detect")
    assert {"pose_detection.tflite", "pose_landmark_full.tflite", "face_detection_yunet_2023mar_int8bq.onnx",
            "face_recognition_sface_2021dec_int8bq.onnx"} <= set(listed)
    assert all(f.endswith((".tflite", ".onnx")) for f in listed)

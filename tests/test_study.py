"""``refsd study``: the definition, the questions, per-rater order, the answer store, statistics,
the report and bad input.

Studies are built from a real render-only run (``refsd pseudonymize --refiner none`` over
camera.png and bus.jpg: 3 people, tests/_study_helpers.py). Statistics are checked against
hand-computed values (t table, a worked example) and Krippendorff's own published example.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _study_helpers import CACHE, PHOTOS, copy_run, records
from helpers import require_detect_models
from PIL import Image

from refsd.cli import main as cli_main
from refsd.people import SKIN_TONES, PersonAttributes, person_description
from refsd.study import (
    AnswerRefused,
    AnswerStore,
    Study,
    StudyError,
    create_study,
    describe,
    ordinal_alpha,
    phi_statements,
    t_quantile,
)
from refsd.study.report import write_report
from refsd.study.server import make_server


@pytest.fixture(scope="module")
def cache_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFSD_CACHE_DIR", str(CACHE))
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_env) -> Path:
    return copy_run(tmp_path_factory.mktemp("run") / "out", source=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, run_dir) -> Study:
    """A study made with the person detector (the default), kept pristine: tests copy it."""
    require_detect_models()
    return create_study(run_dir / "manifest.jsonl", tmp_path_factory.mktemp("study") / "s", seed=5)


@pytest.fixture
def study(built, tmp_path) -> Study:
    """A private copy of the built study (answers go into its own answers.sqlite)."""
    shutil.copytree(built.folder, tmp_path / "s")
    return Study.load(tmp_path / "s")


# -- questions ---------------------------------------------------------------------------
def test_phi_statements_word_the_attributes_as_the_prompt_does():
    a = PersonAttributes(gender="female", age=34.2, skin_tone="mst5", hair_color="blonde", hair_length="long",
                         top="t-shirt", top_color="red", bottom="trousers", bottom_color="denim", shoes="sneakers",
                         shoes_color="white", weight=0.2, height=0.5, muscle=0.5)
    got = {k: t for k, t, _ in phi_statements(a)}
    assert got == {
        "gender": "This person looks female.",
        "age": "This person looks between 30 and 40 years old.",
        "skin_tone": "This person has medium skin (about step 5 of 10 on the Monk skin tone scale, 1 = lightest).",
        "hair_length": "This person has long hair.",
        "hair_color": "This person has blonde hair.",
        "weight": "This person looks slim.",
        "top": "This person is wearing a red t-shirt.",
        "bottom": "This person is wearing jeans.",
        "shoes": "This person is wearing white sneakers.",
    }
    prompt = person_description(a)  # what the generator was asked for
    for words in ("medium skin", "slim", "long blonde hair", "a red t-shirt", "jeans", "white sneakers"):
        assert words in prompt
    swatches = {k: s for k, _, s in phi_statements(a)}
    assert swatches["skin_tone"] == SKIN_TONES["mst5"] and swatches["gender"] is None

    b = PersonAttributes(gender="female", age=71, hair_length="bald", top="dress", top_color="navy", bottom=None,
                         bottom_color=None, shoes="none", shoes_color=None)
    got = {k: t for k, t, _ in phi_statements(b)}
    assert "hair_color" not in got and "bottom" not in got  # not requested: a bald head, a dress
    assert got["hair_length"] == "This person is bald."
    assert got["top"] == "This person is wearing a navy knee-length dress."
    assert got["shoes"] == "This person is barefoot."
    assert got["age"] == "This person looks between 70 and 80 years old."
    c = PersonAttributes(gender="male", age=5, top="none", top_color=None, bottom="shorts", bottom_color="navy")
    got = {k: t for k, t, _ in phi_statements(c)}
    assert got["top"] == "This person is shirtless." and got["bottom"] == "This person is wearing navy shorts."
    assert got["age"] == "This person looks younger than 10 years old."
    assert [k for k, _, _ in phi_statements(a, ("gender", "shoes"))] == ["gender", "shoes"]
    with pytest.raises(StudyError, match="unknown phi attribute"):
        phi_statements(a, ("eyes",))


# -- the definition from a real run -------------------------------------------------------
def test_study_from_a_real_run_has_every_question_and_picture(built, run_dir):
    recs = {r["image"]: r for r in records(run_dir / "manifest.jsonl")}
    people = list(built.people.values())
    assert [(p["image"], p["person"]) for p in people] == [("bus.jpg", 0), ("bus.jpg", 1), ("camera.png", 0)]
    ids = [it["id"] for it in built.items]
    assert len(ids) == len(set(ids))
    for p in people:
        assert p["attributes"] == PersonAttributes.from_dict(recs[p["image"]]["attributes"][0][p["person"]]).to_dict()
        mine = [it for it in built.items if it["person"] == p["id"]]
        fams = [it["family"] for it in mine]
        assert fams.count("psi_a") == fams.count("psi_b") == 1 and fams.count("psi_c") == 2
        phi = [(it["aspect"], it["text"]) for it in mine if it["family"] == "phi"]
        assert phi == [(k, t) for k, t, _ in phi_statements(p["attributes"])]
        assert p["mask"]["original"] == "detector" and p["mask"]["output"] == "avatar+detector", p["mask"]
        files = {k: built.folder / f"crops/{p['id']}/{k}.png" for k in
                 ("original", "output", "original_grey", "output_grey", "identity", "pose")}
        ims = {k: np.asarray(Image.open(f).convert("RGB")) for k, f in files.items()}
        h, w = ims["original"].shape[:2]
        assert ims["identity"].shape[:2] == ims["pose"].shape[:2] == (h, 2 * w + 12)
        assert all(ims[k].shape[:2] == (h, w) for k in ("output", "original_grey", "output_grey"))
        for k in ("original_grey", "output_grey"):
            grey = (ims[k] == 128).all(-1).mean()
            assert 0.25 < grey < 0.9, (p["id"], k, grey)  # a person on neutral grey
        # the cut-out is the photo where it is not grey; the output differs (the person was replaced)
        person = ~(ims["original_grey"] == 128).all(-1)
        assert np.abs(ims["original_grey"][person].astype(int) - ims["original"][person]).mean() < 25
        assert np.abs(ims["output"].astype(int) - ims["original"]).mean() > 10
    att = [it for it in built.items if it["family"] == "attention"]
    assert len(att) == 3 and all(it["expected"] in (1, 2, 4, 5) and f"answer {it['expected']}" in it["text"]
                                 for it in att)


def test_each_cut_out_is_its_own_person(built, run_dir):
    """The bus photo has two people: each box holds that person's annotated keypoints."""
    frames = json.loads(PHOTOS["bus.json"].read_text())
    people = frames[0]["people"] if isinstance(frames, list) else frames["people"]
    boxes = [p for p in built.people.values() if p["image"] == "bus.jpg"]
    assert len(boxes) == 2
    for p in boxes:
        pts = np.asarray(people[p["keypoint_index"]]["pose_keypoints_2d"], dtype=float).reshape(-1, 3)
        pts = pts[pts[:, 2] > 0.3, :2]
        x0, y0, x1, y1 = p["box"]
        inside = ((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)).mean()
        assert inside > 0.9, (p["id"], p["box"], inside)
    centres = sorted((p["box"][0] + p["box"][2]) / 2 for p in boxes)
    assert centres[1] - centres[0] > 80


def test_definition_is_validated(built, tmp_path):
    shutil.copytree(built.folder, tmp_path / "s")
    path = tmp_path / "s" / "study.json"
    data = json.loads(path.read_text())
    assert Study.load(tmp_path / "s").study_id == built.study_id
    for change, message in (
        (lambda d: d["items"][0].update(images=["../../etc/passwd"]), "outside the study folder"),
        (lambda d: d["items"][1].update(id=d["items"][0]["id"]), "appears twice"),
        (lambda d: d["items"][0].update(family="nope"), "malformed item"),
        (lambda d: d.update(items=[]), "no questions"),
        (lambda d: d.update(format="x"), "not a RefSD study"),
    ):
        bad = json.loads(json.dumps(data))
        change(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(StudyError, match=message):
            Study.load(tmp_path / "s")
    path.write_text("{not json")
    with pytest.raises(StudyError, match="not valid JSON"):
        Study.load(tmp_path / "s")
    with pytest.raises(StudyError, match="not a study folder"):
        Study.load(tmp_path)


def test_every_rater_has_their_own_stable_order(built):
    ids = [it["id"] for it in built.items]
    a, b = built.order_for("tokenA"), built.order_for("tokenB")
    assert sorted(a) == sorted(ids) == sorted(b) and a != b
    assert Study.load(built.folder).order_for("tokenA") == a  # after a restart: the same order
    other = Study(built.folder, dict(built.data, seed=built.seed + 1))
    assert other.order_for("tokenA") != a


# -- the answer store ---------------------------------------------------------------------
def test_answers_are_stored_once_in_order_and_transactionally(study):
    store = AnswerStore(study)
    store.sign_in("name", "ann", "ann", "Ann")
    ann = store.rater("ann")
    order = store.order(ann)
    assert store.answer(ann, order[0], 4, 1234)["done"] == 1
    with pytest.raises(AnswerRefused, match="already answered.*your answer 4 is kept") as e:
        store.answer(ann, order[0], 2)
    assert e.value.status == 409
    with pytest.raises(AnswerRefused, match="out of date") as e:
        store.answer(ann, order[5], 3)  # not the next question
    assert e.value.status == 409
    for tampered in ("p999-phi-gender", "../../study.json", None, 17):
        with pytest.raises(AnswerRefused, match="unknown question id") as e:
            store.answer(ann, tampered, 3)
        assert e.value.status == 400
    for value in (0, 6, "3", 3.5, True, None):
        with pytest.raises(AnswerRefused, match="whole number from 1 to 5"):
            store.answer(ann, order[1], value)
    assert store.answered("ann") == {order[0]: 4}
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            con.execute("INSERT INTO answers(rater, item, value, position, answered) VALUES('ann', ?, 1, 0, 'x')",
                        (order[0],))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            con.execute("INSERT INTO answers(rater, item, value, position, answered) VALUES('ann', 'z', 9, 0, 'x')")
    assert store.answered("ann") == {order[0]: 4}


def test_concurrent_raters_and_racing_double_submissions(study):
    store = AnswerStore(study)
    store.sign_in("name", "bo", "bo", "Bo")
    bo = store.rater("bo")
    first = store.order(bo)[0]
    results: list = []

    def race(v):
        try:
            store.answer(bo, first, v)
            results.append(("ok", v))
        except AnswerRefused as e:
            results.append((e.status, v))

    threads = [threading.Thread(target=race, args=(1 + k % 5,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    oks = [v for s, v in results if s == "ok"]
    assert len(oks) == 1 and sorted(s for s, _ in results if s != "ok") == [409] * 7
    assert store.answered("bo") == {first: oks[0]}

    names = [f"rater{k}" for k in range(4)]
    for n in names:
        store.sign_in("name", n, n, n)

    def everything(n):
        r = store.rater(n)
        for item in store.order(r):
            store.answer(r, item, 1 + len(item) % 5)

    threads = [threading.Thread(target=everything, args=(n,)) for n in names]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for n in names:
        assert store.answered(n) == {it: 1 + len(it) % 5 for it in study.by_id}
    assert store.counts() == {"raters": 5, "answers": 1 + 4 * len(study.items)}


def test_answers_of_another_study_are_never_touched(study, built, tmp_path):
    AnswerStore(study).sign_in("name", "x", "x", "x")
    other = tmp_path / "other"
    shutil.copytree(built.folder, other)
    data = json.loads((other / "study.json").read_text())
    data["study_id"] = "0" * 32
    (other / "study.json").write_text(json.dumps(data))
    shutil.copy(study.folder / "answers.sqlite", other / "answers.sqlite")
    before = (other / "answers.sqlite").read_bytes()
    with pytest.raises(StudyError, match="answers of another study"):
        AnswerStore(Study.load(other))
    assert (other / "answers.sqlite").read_bytes() == before


# -- statistics ---------------------------------------------------------------------------
def _reference_ordinal_alpha(table) -> float:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability': coincidences, ordinal metric."""
    data = np.asarray(table, dtype=float)
    values = sorted({v for v in data.ravel() if not math.isnan(v)})
    idx = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in data.T:
        vals = [v for v in unit if not math.isnan(v)]
        m = len(vals)
        if m < 2:
            continue
        for i, a in enumerate(vals):
            for j, b in enumerate(vals):
                if i != j:
                    o[idx[a], idx[b]] += 1.0 / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    d2 = np.zeros_like(o)
    for c in range(len(values)):
        for k in range(len(values)):
            lo, hi = min(c, k), max(c, k)
            d2[c, k] = (n_c[lo:hi + 1].sum() - (n_c[c] + n_c[k]) / 2.0) ** 2
    d_o = (o * d2).sum()
    d_e = (np.outer(n_c, n_c) * d2).sum() / (n - 1)
    return 1.0 - d_o / d_e


def test_statistics_equal_hand_computed_values():
    # t quantiles of a printed table (two-sided 95 %)
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (120, 1.980)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    # 1..5: mean 3, sd sqrt(2.5), CI 3 +- 2.776 * sqrt(2.5) / sqrt(5)
    d = describe([1, 2, 3, 4, 5])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert (d["n"], d["mean"], d["median"]) == (5, 3.0, 3.0) and d["sd"] == pytest.approx(math.sqrt(2.5))
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((3 - half, 3 + half), abs=1e-6)
    assert describe([4])["sd"] is None and describe([])["mean"] is None
    # Krippendorff's own example (4 observers x 12 units, missing values): ordinal alpha = 0.815
    nan = float("nan")
    table = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
             [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
             [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
             [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    alpha, _ = ordinal_alpha(table)
    assert alpha == pytest.approx(0.815, abs=5e-4)
    assert alpha == pytest.approx(_reference_ordinal_alpha(table), abs=1e-9)
    assert ordinal_alpha([[1, 2, 3]])[0] is None  # one rater
    assert ordinal_alpha([[1, nan], [nan, 2]])[0] is None  # nobody rated the same question
    assert ordinal_alpha([[3, 3], [3, 3]])[0] is None  # no variation


# -- the report ---------------------------------------------------------------------------
def _answer_all(store: AnswerStore, study: Study, name: str, value, fail_check: bool = False) -> dict[str, int]:
    store.sign_in("name", name, name, name.title())
    r = store.rater(name)
    given = {}
    for item in store.order(r):
        exp = study.by_id[item]["expected"]
        v = (exp if not fail_check else 1 + exp % 5) if exp is not None else value(item)
        store.answer(r, item, v)
        given[item] = v
    return given


def test_report_numbers_equal_the_answers_given(study):
    store = AnswerStore(study)
    answers = {
        "ann": _answer_all(store, study, "ann", lambda it: 1 + len(it) % 5),
        "bo": _answer_all(store, study, "bo", lambda it: 1 + (len(it) + 1) % 5),
        "cy": _answer_all(store, study, "cy", lambda it: 5, fail_check=True),
    }
    summary = write_report(study.folder)
    fam = {it: study.by_id[it]["family"] for it in study.by_id}
    for f in ("psi_a", "psi_b", "psi_c", "phi"):
        vals = [v for a in answers.values() for it, v in a.items() if fam[it] == f]
        s = summary["families"][f]
        half = t_quantile(0.975, len(vals) - 1) * np.std(vals, ddof=1) / math.sqrt(len(vals))
        assert s["n"] == len(vals) and s["mean"] == pytest.approx(np.mean(vals))
        assert s["sd"] == pytest.approx(np.std(vals, ddof=1))
        assert (s["ci_low"], s["ci_high"]) == pytest.approx((np.mean(vals) - half, np.mean(vals) + half))
        items = sorted(it for it in study.by_id if fam[it] == f)
        table = [[answers[r][it] for it in items] for r in sorted(answers)]
        assert s["alpha"] == pytest.approx(_reference_ordinal_alpha(table), abs=1e-9)
    gender = [v for a in answers.values() for it, v in a.items() if it.endswith("-phi-gender")]
    assert summary["aspects"]["phi"]["gender"]["n"] == len(gender) == 9
    assert summary["aspects"]["phi"]["gender"]["mean"] == pytest.approx(np.mean(gender))
    raters = {r["rater"]: r for r in summary["raters"]}
    assert [raters[n]["flagged"] for n in ("Ann", "Bo", "Cy")] == [False, False, True]
    assert raters["Cy"]["checks"] == 3 and raters["Cy"]["checks_passed"] == 0
    out = study.folder / "report"
    import csv

    with open(out / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["rater"], r["item"], int(r["value"])) for r in rows) == sorted(
        (n.title(), it, v) for n, a in answers.items() for it, v in a.items())
    md = (out / "report.md").read_text()
    psi_a = summary["families"]["psi_a"]
    assert f"| {psi_a['n']} | {psi_a['mean']:.2f} | {psi_a['sd']:.2f} |" in md
    assert "failed an attention check" in md and "Cy" in md
    for png in ("psi.png", "phi.png", "likert.png"):
        with Image.open(out / png) as im:
            assert im.width > 400 and im.height > 150
    assert json.loads((out / "summary.json").read_text())["families"]["phi"]["n"] == summary["families"]["phi"]["n"]
    # leaving the flagged rater out
    fewer = write_report(study.folder, tmp := study.folder / "report2", exclude_flagged=True)
    assert fewer["families"]["phi"]["n"] == summary["families"]["phi"]["n"] * 2 // 3
    assert (tmp / "report.md").is_file()
    assert store.counts()["answers"] == 3 * len(study.items)  # reporting changed nothing stored


# -- the web server (HTTP only; the page itself is tested in Chromium) ----------------------
def _http(url, body=None, ctype="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture
def server(study):
    srv = make_server(study.folder, port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_pages_files_and_refusals(server, study):
    url = server.url
    status, page, headers = _http(url)
    assert status == 200 and b"app.js" in page and "default-src 'none'" in headers["Content-Security-Policy"]
    static = Path(__import__("refsd.study.server", fromlist=["STATIC"]).STATIC)
    for f in static.iterdir():  # no external assets: nothing but this server is ever fetched
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f
    pic = study.items[0]["images"][0]
    assert _http(url + "files/" + pic)[0] == 200
    for bad in ("files/study.json", "files/answers.sqlite", "files/../study.json", "files/%2e%2e/study.json",
                "files/crops/../study.json", "files//etc/passwd", "nope"):
        assert _http(url + bad)[0] == 404, bad
    assert _http(url + "api/login", b"name=x", "application/x-www-form-urlencoded")[0] == 415
    assert _http(url + "api/login", b"{nope")[0] == 400
    assert _http(url + "api/login", {"name": "  "})[0] == 400
    status, body, _ = _http(url + "api/login", {"name": "Dee"})
    state = json.loads(body)
    assert status == 200 and state["done"] == 0 and state["total"] == len(study.items)
    assert "expected" not in json.dumps(state)  # the answer of an attention check stays on the server
    item = state["item"]["id"]
    status, body, _ = _http(url + "api/answer", {"name": "Dee", "item": "p001-psi_a' OR 1=1", "value": 3})
    assert status == 400 and "unknown question id" in json.loads(body)["error"]
    assert _http(url + "api/answer", {"name": "Dee", "item": item, "value": 2})[0] == 200
    status, body, _ = _http(url + "api/answer", {"name": "dee", "item": item, "value": 5})  # same name, any case
    reply = json.loads(body)
    assert status == 409 and "already answered" in reply["error"] and reply["done"] == 1
    assert AnswerStore(study).answered("dee") == {item: 2}


def test_rater_tokens(study, capsys):
    assert cli_main(["study", "raters", str(study.folder), "--add", "2", "--url", "http://h:1/"]) == 0
    links = capsys.readouterr().out.split()
    assert links[0] == "r01:" and links[1].startswith("http://h:1/?token=")
    token = links[1].split("=", 1)[1]
    srv = make_server(study.folder, port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert _http(srv.url + "api/login", {"name": "Eve"})[0] == 403
        status, body, _ = _http(srv.url + "api/login", {"token": "guess"})
        assert status == 403 and "unknown rater code" in json.loads(body)["error"]
        status, body, _ = _http(srv.url + "api/login", {"token": token})
        assert status == 200 and json.loads(body)["rater"] == "r01"
        assert json.loads(_http(srv.url + "api/study")[1])["signin"] == "token"
    finally:
        srv.shutdown()
        srv.server_close()


# -- bad input on the command line ----------------------------------------------------------
def _cli(capsys, *argv) -> tuple[int, str]:
    rc = cli_main(["study", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_create_refuses_bad_input_with_the_fix(tmp_path, capsys, cache_env):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc, out = _cli(capsys, "create", empty, "-o", tmp_path / "s")
    assert rc == 2 and "has no image records" in out and "refsd pseudonymize" in out
    rc, out = _cli(capsys, "create", tmp_path / "nothing" / "manifest.jsonl", "-o", tmp_path / "s")
    assert rc == 2 and "does not exist" in out
    run = copy_run(tmp_path / "run", source=False)
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "s")
    assert rc == 2 and "bus.jpg: the original photo was not found" in out and "--images" in out
    bad = [dict(r, status="error", error="boom") for r in records(run / "manifest.jsonl")]
    (tmp_path / "err.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    rc, out = _cli(capsys, "create", tmp_path / "err.jsonl", "-o", tmp_path / "s")
    assert rc == 2 and "no image with a replaced person" in out and "boom" in out
    (run / "camera" / "pseudonymized.png").unlink()
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "s", "--images",
                   CACHE / "test-study" / "photos")
    assert rc == 2 and "camera/pseudonymized.png is missing" in out and "--skip-missing" in out
    assert not (tmp_path / "s").exists()  # nothing was made


def test_source_paths_images_and_skip_missing(tmp_path, capsys, cache_env):
    photos = CACHE / "test-study" / "photos"
    run = copy_run(tmp_path / "run", source=True)  # newer manifests: absolute source paths
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "a", "--detect-model", "none")
    assert rc == 0, out
    a = Study.load(tmp_path / "a")
    assert {p["original"] for p in a.people.values()} == {str(photos / "bus.jpg"), str(photos / "camera.png")}
    assert all(p["mask"] == {"original": "silhouette", "output": "avatar"} for p in a.people.values())
    # a source that moved: --images finds the photo; without it the message names both places
    recs = records(run / "manifest.jsonl")
    for r in recs:
        r["source"] = "/moved/away/" + r["image"]
    (run / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "b")
    assert rc == 2 and "/moved/away/camera.png" in out and "--images" in out
    (run / "camera" / "body_fit.json").unlink()
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "b", "--images", photos,
                   "--detect-model", "none", "--skip-missing", "--attention-checks", "1", "--raters", "2",
                   "--attributes", "gender,age")
    assert rc == 0, out
    b = Study.load(tmp_path / "b")
    assert {p["image"] for p in b.people.values()} == {"bus.jpg"} and len(b.raters) == 2
    assert [s["image"] for s in b.data["skipped"]] == ["camera.png"] and "body_fit.json" in b.data["skipped"][0]["reason"]
    assert {it["aspect"] for it in b.items if it["family"] == "phi"} == {"gender", "age"}
    # an existing study with answers is never replaced
    AnswerStore(b).sign_in("name", "x", "x", "x")
    before = (tmp_path / "b" / "answers.sqlite").read_bytes()
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "b", "--images", photos, "--force")
    assert rc == 2 and "already holds answers" in out
    assert (tmp_path / "b" / "answers.sqlite").read_bytes() == before and Study.load(tmp_path / "b")
    rc, out = _cli(capsys, "create", run / "manifest.jsonl", "-o", tmp_path / "a", "--images", photos)
    assert rc == 2 and "not empty" in out and "--force" in out
    rc, out = _cli(capsys, "report", tmp_path / "a")
    assert rc == 2 and "no answers yet" in out
    rc, out = _cli(capsys, "report", tmp_path / "nowhere")
    assert rc == 2 and "not a study folder" in out
    rc, out = _cli(capsys)
    assert rc == 2 and "create" in out and "serve" in out

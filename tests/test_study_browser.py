"""``refsd study serve`` end to end in real headless Chromium (Playwright on Debian's chromium).

A study is built with the command line from a real run (``refsd pseudonymize --refiner none``:
camera.png and bus.jpg, 3 people) and served by ``refsd study serve`` as a subprocess. Two raters
with personal links answer every question with answers the test chose: one by keyboard with a
reload halfway, one by clicking after typing their code, with a stale second tab (a double
submission) and a tampered question id on the way. ``refsd study report`` must then give
exactly the numbers of those answers, flag the rater who failed an attention check and lose
nothing. A last test (ComfyUI server) builds and answers a study from the demo's own output
(``refsd run`` with refsd_render_only over samples/). Screenshots of every screen go to a temporary
folder, and to ``$REFSD_STUDY_SCREENSHOTS`` when set (``docs/study/`` in the README).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _study_helpers import ROOT, copy_run, env, pseudonymized_run
from helpers import require_detect_models
from PIL import Image

from refsd.study import AnswerStore, Study, t_quantile

CHROMIUM = os.environ.get("REFSD_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SHOTS = os.environ.get("REFSD_STUDY_SCREENSHOTS")
MAX_SHOT = 200_000


def refsd(*argv, timeout=900) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "refsd.cli", *map(str, argv)], env=env(), capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``refsd study serve FOLDER`` in a subprocess, stopped (its own pid) at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(folder.parent / f"serve-{self.port}.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "refsd.cli", "study", "serve", str(folder), "--port",
                                      str(self.port)], env=env(), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "api/study", timeout=5) as r:
                    self.info = json.loads(r.read())
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise AssertionError((folder.parent / f"serve-{self.port}.log").read_text()) from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (make setup does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    require_detect_models()
    photos, _ = pseudonymized_run()
    base = tmp_path_factory.mktemp("browser")
    run = copy_run(base / "run")
    refsd("study", "create", run / "manifest.jsonl", "-o", base / "study", "--images", photos, "--raters", "2",
          "--seed", "11", "--title", "RefSD test study")
    return base / "study"


def shot(page, shots: Path, name: str) -> None:
    """A small PNG of the page (palette of 256 colours: < 200 kB) in ``shots`` (and $REFSD_STUDY_SCREENSHOTS)."""
    im = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    small = im.quantize(256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=True)
    assert len(buf.getvalue()) < MAX_SHOT, (name, len(buf.getvalue()))
    for folder in filter(None, (shots, Path(SHOTS) if SHOTS else None)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(buf.getvalue())


def value_for(rater: str, item: dict) -> int:
    """The answer the test gives: fixed per rater and question; attention checks as asked,
    except r02's first one (so r02 is flagged)."""
    if item["expected"] is not None:
        wrong = rater == "r02" and item["id"] == "check-1"
        return 1 + item["expected"] % 5 if wrong else item["expected"]
    return 1 + hashlib.blake2b(f"{rater}:{item['id']}".encode(), digest_size=2).digest()[0] % 5


def current(page) -> str | None:
    return page.evaluate("document.getElementById('done').hidden ? document.body.dataset.item : null")


def wait_next(page, before: str) -> None:
    page.wait_for_function(
        "(b) => !document.getElementById('done').hidden || "
        "(!document.getElementById('question').hidden && document.body.dataset.item !== b)", arg=before, timeout=30_000)


def answer(page, study: Study, rater: str, given: dict, click: bool = False) -> str:
    item = current(page)
    v = value_for(rater, study.by_id[item])
    if click:
        page.click(f"#likert button[data-value='{v}']")
    else:
        page.keyboard.press(str(v))
    wait_next(page, item)
    given[item] = v
    return item


def test_two_raters_answer_and_the_report_equals_their_answers(browser, study_dir, tmp_path):
    study = Study.load(study_dir)
    tokens = {r["id"]: r["token"] for r in study.raters}
    n = len(study.items)
    server = Served(study_dir)
    shots = tmp_path / "shots"
    errors: list[str] = []
    try:
        given: dict[str, dict[str, int]] = {"r01": {}, "r02": {}}

        # rater 1: personal link, keyboard only, reloads halfway
        ctx1 = browser.new_context(viewport={"width": 960, "height": 760})
        p1 = ctx1.new_page()
        p1.on("pageerror", lambda e: errors.append(str(e)))
        p1.goto(server.url + "?token=" + tokens["r01"])
        p1.wait_for_selector("#intro:not([hidden])")
        shot(p1, shots, "2-instructions")
        p1.keyboard.press("Enter")
        p1.wait_for_selector("#question:not([hidden])")
        seen: set[str] = set()
        while len(given["r01"]) < n:
            fam = p1.evaluate("document.body.dataset.family")
            if fam not in seen:
                seen.add(fam)
                shot(p1, shots, {"psi_a": "3-psi-a-same-person", "psi_b": "4-psi-b-pose", "psi_c": "5-psi-c-realism",
                                 "phi": "6-phi-attribute", "attention": "7-attention-check"}[fam])
            answer(p1, study, "r01", given["r01"])
            if len(given["r01"]) == n // 2:
                p1.reload()
                p1.wait_for_selector("#question:not([hidden])")
                assert p1.text_content("#counter") == f"Question {n // 2 + 1} of {n}"
                assert "Welcome back" in p1.text_content("#message")
                order = study.order_for(tokens["r01"])
                assert current(p1) == order[n // 2]  # the next unanswered question, in the rater's own order
        p1.wait_for_selector("#done:not([hidden])")
        assert p1.evaluate("document.getElementById('bar').style.width") == "100%"
        assert f"All {n} questions" in p1.text_content("#done-text")
        shot(p1, shots, "9-done")
        assert seen == {"psi_a", "psi_b", "psi_c", "phi", "attention"}

        # rater 2: types the code, clicks; a stale second tab and a tampered id on the way
        ctx2 = browser.new_context(viewport={"width": 960, "height": 760})
        p2 = ctx2.new_page()
        p2.on("pageerror", lambda e: errors.append(str(e)))
        p2.goto(server.url)
        p2.wait_for_selector("#signin:not([hidden])")
        assert p2.text_content("#signin-label") == "Your rater code"
        p2.fill("#signin-input", tokens["r02"])
        shot(p2, shots, "1-sign-in")
        p2.fill("#signin-input", "not-a-code")
        p2.click("#signin-button")
        p2.wait_for_selector("#message:not([hidden])")
        assert "unknown rater code" in p2.text_content("#message")
        p2.fill("#signin-input", tokens["r02"])
        p2.click("#signin-button")
        p2.wait_for_selector("#intro:not([hidden])")
        p2.click("#start")
        p2.wait_for_selector("#question:not([hidden])")
        for _ in range(3):
            answer(p2, study, "r02", given["r02"], click=True)
        # a second tab of the same rater (signed in from storage) shows the same question
        tab = ctx2.new_page()
        tab.goto(server.url)
        tab.wait_for_selector("#question:not([hidden])")
        stale = current(tab)
        assert stale == current(p2)
        answer(p2, study, "r02", given["r02"], click=True)  # answered in the first tab
        tab.keyboard.press("1" if given["r02"][stale] != 1 else "2")  # ... and again in the stale one
        tab.wait_for_function("() => document.getElementById('message').textContent.includes('already answered')")
        shot(tab, shots, "8-double-submission")
        assert current(tab) == current(p2)  # the stale tab moved on to where the rater is
        tab.close()
        # a tampered question id is refused; nothing is stored and the page carries on
        before = current(p2)
        p2.evaluate("current.id = 'p001-phi-gender\\u0027; DROP TABLE answers; --'")
        p2.keyboard.press("3")
        p2.wait_for_function("() => document.getElementById('message').textContent.includes('unknown question id')")
        p2.reload()
        p2.wait_for_selector("#question:not([hidden])")
        assert current(p2) == before
        while len(given["r02"]) < n:
            answer(p2, study, "r02", given["r02"], click=True)
        p2.wait_for_selector("#done:not([hidden])")
        # the page never calls anything but this server: no external assets
        assert errors == []
        for ctx in (ctx1, ctx2):
            ctx.close()
    finally:
        server.stop()

    stored = {r: AnswerStore(study).answered(r) for r in ("r01", "r02")}
    assert stored == given  # every answer as given, the double submission and the tampered id left no trace

    out = refsd("study", "report", study_dir)
    summary = json.loads((study_dir / "report" / "summary.json").read_text())
    assert json.loads(out.stdout)["flagged"] == ["r02"]
    fam = {it["id"]: (it["family"], it["aspect"]) for it in study.items}
    for f in ("psi_a", "psi_b", "psi_c", "phi"):
        vals = [v for g in given.values() for it, v in g.items() if fam[it][0] == f]
        s = summary["families"][f]
        assert s["n"] == len(vals) and s["mean"] == pytest.approx(np.mean(vals))
        assert s["sd"] == pytest.approx(np.std(vals, ddof=1))
        half = t_quantile(0.975, len(vals) - 1) * np.std(vals, ddof=1) / np.sqrt(len(vals))
        assert s["ci_low"] == pytest.approx(np.mean(vals) - half)
    for aspect, s in summary["aspects"]["phi"].items():
        vals = [v for g in given.values() for it, v in g.items() if fam[it] == ("phi", aspect)]
        assert s["n"] == len(vals) and s["mean"] == pytest.approx(np.mean(vals)), aspect
    with open(study_dir / "report" / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["rater"], r["item"], int(r["value"])) for r in rows) == sorted(
        (rater, it, v) for rater, g in given.items() for it, v in g.items())
    md = (study_dir / "report" / "report.md").read_text()
    assert "| r02 |" in md and "failed an attention check" in md and "![psi](psi.png)" in md


@pytest.mark.comfyui
def test_a_study_of_the_demo_output(browser, comfy_server, tmp_path):
    """The demo's own path: `refsd run` with refsd_render_only over samples/ on a real ComfyUI server."""
    require_detect_models()
    from refsd.cli import main as cli_main

    photos = tmp_path / "samples"
    photos.mkdir()
    for name in ("camera.png", "camera.json"):
        shutil.copy(ROOT / "samples" / name, photos / name)
    out = tmp_path / "out"
    assert cli_main(["run", str(ROOT / "workflows" / "refsd_render_only.json"), str(photos), str(out), "--server",
                     comfy_server.url, "--no-progress"]) == 0
    refsd("study", "create", out / "manifest.jsonl", "-o", tmp_path / "study", "--images", photos)
    study = Study.load(tmp_path / "study")
    assert len(study.people) == 1 and study.people["p001"]["mask"]["original"] == "detector"
    server = Served(tmp_path / "study")
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(server.url)
        page.fill("#signin-input", "Demo Rater")
        page.click("#signin-button")
        page.wait_for_selector("#intro:not([hidden])")
        page.keyboard.press("Enter")
        page.wait_for_selector("#question:not([hidden])")
        given: dict[str, int] = {}
        while len(given) < len(study.items):
            answer(page, study, "demo", given)
        page.wait_for_selector("#done:not([hidden])")
        ctx.close()
    finally:
        server.stop()
    refsd("study", "report", tmp_path / "study")
    summary = json.loads((tmp_path / "study" / "report" / "summary.json").read_text())
    assert summary["answers"] == len(study.items) and summary["raters"][0]["rater"] == "Demo Rater"
    vals = [v for it, v in given.items() if study.by_id[it]["family"] == "phi"]
    assert summary["families"]["phi"]["mean"] == pytest.approx(np.mean(vals))

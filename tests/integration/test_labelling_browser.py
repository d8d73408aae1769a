"""The labelling page in a real Chromium (Playwright driving Debian's chromium) on a tiny
workflow run: label by keyboard, Retrain, restart the server, more like this, the map."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.test_workflow import REPO, TINY_CONFIG, snakemake, write_config

pytest.importorskip("snakemake")
pytest.importorskip("starlette")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium to drive: apt-get install chromium (or set CHROMIUM=/path/to/chromium)",
                allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DATASET = "sim_optical"
# Where the screenshot goes: a temporary folder, or the docs when BYOL_SCREENSHOT names a file.
SCREENSHOT = os.environ.get("BYOL_SCREENSHOT")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny workflow's sim_optical dataset, up to the stages the page reads."""
    workdir = tmp_path_factory.mktemp("labelling")
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {DATASET: config["datasets"][DATASET]}
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2", *(f"results/{DATASET}/{p}" for p in ("active_learning/ranking.csv",
                                                                            "cluster/assignments.csv")))
    return workdir


class Server:
    """`byol-discovery label` as a user starts it, in the run's folder."""

    def __init__(self, workdir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "workflow"), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "byol_discovery.cli", "label", "--dataset", DATASET, "--port", "0"],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in self.process.stdout:
            lines.append(line)
            if line.startswith("http://"):
                self.url = line.strip()
                break
        else:
            raise AssertionError(f"the server printed no URL:\n{''.join(lines)}")
        assert self.url.startswith("http://127.0.0.1:") and "token" not in self.url

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)  # no goodbye: what a power cut does to it
        self.process.wait(timeout=30)


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser, server: Server):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(server.url)
    page.wait_for_selector("#list li")
    _settled(page)
    return page


def _current(page) -> str:
    return page.inner_text("#object-id")


def _settled(page) -> None:
    """Wait until "more like this" shows the neighbours of the object in view."""
    page.wait_for_function("document.getElementById('similar').dataset.for === "
                           "document.getElementById('object-id').textContent")


def _press_and_wait(page, key: str) -> None:
    before = _current(page)
    page.keyboard.press(key)
    page.wait_for_function("id => document.getElementById('object-id').textContent !== id", arg=before)


def test_label_retrain_restart_similar_and_map(tiny_run: Path, browser, tmp_path: Path) -> None:
    ranking_csv = tiny_run / "results" / DATASET / "active_learning" / "ranking.csv"
    labels_csv = tiny_run / "data" / DATASET / "labels.csv"
    before = pd.read_csv(ranking_csv)["id"].tolist()
    server = Server(tiny_run)
    try:
        page = _open(browser, server)
        assert _current(page) == before[0], "the page opens on the top of active_learning/ranking.csv"
        _press_and_wait(page, "ArrowDown")
        assert _current(page) == before[1]
        _press_and_wait(page, "ArrowUp")
        assert _current(page) == before[0]

        given = {}
        for i in range(20):
            label = 5 if i % 5 == 0 else i % 5 - 1  # some targets, the rest 0-3
            given[_current(page)] = label
            _press_and_wait(page, str(label))
        assert list(given) == before[:20], "each key labels the object in view and moves to the next"
        written = pd.read_csv(labels_csv, dtype={"id": str})
        assert dict(zip(written["id"], written["label"], strict=True)) == given and len(written) == 20
        assert page.inner_text("#progress").startswith("20 labelled, 4 targets")

        page.click("#retrain")
        page.wait_for_function("document.getElementById('retrain-status').textContent.startsWith('retrained')",
                               timeout=300_000)
        page.wait_for_function("document.querySelector('#list li .badge').textContent === '-'")
        after = pd.read_csv(ranking_csv)["id"].tolist()
        assert set(after[-20:]) == set(given), "the labelled objects move after the unlabelled ones"
        unlabelled_before = [i for i in before if i not in given]
        assert after[:-20] != unlabelled_before, "the labels change the ranking"
        shown = page.eval_on_selector_all("#list li", "items => items.map(li => li.dataset.id)")
        assert shown == after[:len(shown)], "the page shows the new ranking"
        log = (tiny_run / "results" / "logs" / DATASET / "active_learning.log").read_text()
        assert "20 labelled objects from" in log, "Retrain ran the rule, with its log"
    finally:
        server.kill()

    server = Server(tiny_run)
    try:
        page = _open(browser, server)
        assert page.inner_text("#progress").startswith("20 labelled, 4 targets"), "every label is still there"
        page.check("#unlabelled")
        page.select_option("#sort", "rank")
        page.fill("#search", before[0])
        page.wait_for_function("id => document.getElementById('object-id').textContent === id", arg=before[0])
        assert page.inner_text("#current-label") == f"labelled {given[before[0]]}"
        page.fill("#search", "")
        page.wait_for_function("id => document.getElementById('object-id').textContent !== id", arg=before[0])
        _settled(page)

        similar = page.get_attribute("#similar img", "data-id")
        page.click("#similar img")
        page.wait_for_function("id => document.getElementById('object-id').textContent === id", arg=similar)
        _settled(page)

        with page.expect_response(lambda r: "/api/map/nearest" in r.url) as clicked:
            page.click("#map", position={"x": 160, "y": 160})
        target = clicked.value.json()["id"]
        page.wait_for_function("id => document.getElementById('object-id').textContent === id", arg=target)
        _settled(page)
        page.wait_for_function("[document.getElementById('cutout'), ...document.querySelectorAll('#similar img')]"
                               ".every(img => img.complete && img.naturalWidth > 0"
                               " && !img.classList.contains('loading'))")
        assert f"/{target}/image" in page.get_attribute("#cutout", "src"), "the image shown is the object's"
        page.screenshot(path=SCREENSHOT or str(tmp_path / "labelling.png"))
    finally:
        server.kill()

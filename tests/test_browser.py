"""What a new user sees, in a real browser (Debian's Chromium, driven by Playwright): the MLflow UI over the
mission sweep's store, opened at the link the sweep prints, and the report page opened from disk.

A failing test saves its screenshots and names their folder in the failure message
(LINREG_LAB_SCREENSHOTS, else the test's temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient
from playwright.sync_api import sync_playwright

from linreg_lab import tracking
from tests.servers import chromium_bin, free_port, mlflow_ui

SCREEN = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def mission(tmp_path_factory) -> tuple[Path, str]:
    """The README's quickstart in a fresh folder: the mission sweep, then its report; (folder, sweep stdout)."""
    cwd = tmp_path_factory.mktemp("mission")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LINREG_LAB_PARENT_RUN_ID")}
    outs = [subprocess.run([sys.executable, "-m", *cmd], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=600)
            for cmd in (["linreg_lab.run", "-m", "optimizer=sgd,adam", "lr=0.1,0.01"], ["linreg_lab.report"])]
    for out in outs:
        assert out.returncode == 0, out.stderr[-3000:]
    return cwd, outs[0].stdout


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(chromium_bin()), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@contextmanager
def page_of(browser, shots: Path):
    """A fresh 1280x800 page (no state from an earlier visit); on failure, a screenshot whose path the
    error names. Yields (page, console errors)."""
    context = browser.new_context(viewport=SCREEN)
    page, errors = context.new_page(), []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page, errors
    except BaseException as err:
        shots.mkdir(parents=True, exist_ok=True)
        path = shots / f"failed-{len(list(shots.glob('*.png')))}.png"
        page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{err}\nscreenshots: {shots}") from err
    finally:
        context.close()


def screenshots(tmp_path: Path) -> Path:
    return Path(os.environ.get("LINREG_LAB_SCREENSHOTS", tmp_path / "screenshots"))


def test_mlflow_ui_opens_the_sweep_in_the_model_training_view(mission, browser, tmp_path: Path) -> None:
    cwd, stdout = mission
    serve = re.search(r"open the MLflow UI: (mlflow ui --backend-store-uri \S+), then browse to (\S+)", stdout)
    assert serve, stdout[-2000:]
    command, link = serve.groups()
    assert link.startswith(tracking.LOCAL_UI) and link.endswith("/runs?workflowType=machine_learning")
    uri = command.split()[-1]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("linreg_lab")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["run_kind"] == "sweep"]
    jobs = sorted(r.info.run_name for r in runs if r.data.tags["run_kind"] == "job")
    assert len(jobs) == 4
    job = next(r for r in runs if r.data.tags["run_kind"] == "job")
    assert [m.step for m in client.get_metric_history(job.info.run_id, "w_error/l2")] == [0]  # finals at step 0
    port = free_port()
    with mlflow_ui(cwd, command, port) as base, page_of(browser, screenshots(tmp_path)) as (page, _):
        page.goto(link.replace(tracking.LOCAL_UI, base))
        page.get_by_text("Model training", exact=True).wait_for()
        # the model-training view: the runs table with the sweep's row, none of the GenAI view's pages
        sweep_cell = page.get_by_role("gridcell").filter(has_text=parent.info.run_name[:20])
        sweep_cell.wait_for(timeout=30_000)
        assert page.get_by_text("Evaluation runs").count() == 0 and page.get_by_text("Judges").count() == 0
        sweep_cell.get_by_role("button").first.click()  # the row's +: its jobs
        for name in jobs:
            page.get_by_role("gridcell").filter(has_text=name).first.wait_for(timeout=15_000)
        page.screenshot(path=str(tmp_path / "runs.png"))
        page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
        page.get_by_placeholder("Search metric charts").fill("train/loss")
        page.locator(".js-plotly-plot path.js-line").first.wait_for(timeout=30_000)
        lines = page.locator(".js-plotly-plot path.js-line").evaluate_all(
            "ps => ps.map(p => (p.getAttribute('d') || '').split(/[LM]/).length)")
        assert sum(n > 10 for n in lines) >= 4, lines  # each job's curve drawn with many points
        page.get_by_placeholder("Search metric charts").fill("w_error/l2")  # a final value: a bar per job
        page.locator(".js-plotly-plot .barlayer .point").nth(3).wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot path.js-line").count() == 0
        # the sweep's own page: its description says what the sweep found and where the report is
        page.goto(tracking.ui_link(uri, exp.experiment_id, parent.info.run_id).replace(tracking.LOCAL_UI, base))
        best = page.get_by_text("Best run per optimizer")
        best.wait_for(timeout=30_000)
        best.scroll_into_view_if_needed()
        note = page.locator("table", has_text="optimizer").filter(has_text="adam").first
        assert "sgd" in note.inner_text() and "report/report.html" in page.content()
        assert page.get_by_text(parent.data.tags["command"]).count() >= 1


def test_report_page_shows_findings_and_the_first_figure_on_the_first_screen(mission, browser,
                                                                             tmp_path: Path) -> None:
    cwd, _ = mission
    page_file = cwd / "report" / "report.html"
    with page_of(browser, screenshots(tmp_path)) as (page, errors):
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        images = page.locator("img")
        assert images.count() >= 6
        widths = images.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert all(w > 0 for w in widths), widths
        assert errors == []
        header = page.locator("header").inner_text()
        for what in ("python -m linreg_lab.run -m optimizer=sgd,adam lr=0.1,0.01", "sqlite:///", "4 finished",
                     "workflowType=machine_learning"):
            assert what in header, header
        for where in (page.locator("#findings"), page.locator("#findings + ul li").first, images.first):
            box = where.bounding_box()
            assert box and box["y"] < SCREEN["height"] and box["y"] + min(box["height"], 100) <= SCREEN["height"], box
        assert page.evaluate("document.documentElement.scrollWidth") <= SCREEN["width"]  # wide tables scroll inside
        assert page.locator("nav a").count() >= 10
        page.locator("nav a", has_text="All runs").click()
        assert page.evaluate("location.hash") == "#all-runs"
        page.screenshot(path=str(tmp_path / "report.png"))

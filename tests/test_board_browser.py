"""The board end to end in headless Chromium (Debian's package, driven by Playwright; no browser download).

One board process serves a runs folder for the whole module; the tests run in order on it: two runs are started
from the page, the short one is watched live until it finishes and chatted with, the long one is listed as running beside it and
then stopped (leaving a checkpoint), the two are compared, a bad config is marked at its key, and a log with
malformed and half-written lines keeps the page working. Screenshots land in the artifacts folder printed first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tunesmith.board.jobs import pid_runs_tunesmith

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_SETTINGS = {"cutoff_len": "64", "per_device_train_batch_size": "4", "warmup_ratio": "0.0"}
TIMEOUT_MS = 150_000

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (make install)"
)
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is missing and could not be installed (make install)", allow_module_level=True
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """$TUNESMITH_TEST_ARTIFACTS/board (default /tmp/tunesmith-artifacts/board), emptied first."""
    folder = Path(os.environ.get("TUNESMITH_TEST_ARTIFACTS", "/tmp/tunesmith-artifacts")) / "board"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"\nboard screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """`tunesmith board RUNS --port P` in a subprocess; yields (url, runs folder)."""
    runs = tmp_path_factory.mktemp("runs")
    port = free_port()
    env = {**os.environ, "TUNESMITH_DATA_CACHE": str(runs.parent / "data_cache"), "OMP_NUM_THREADS": "1"}
    log = (runs.parent / "board.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "board", str(runs), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, (runs.parent / "board.log").read_text()
            time.sleep(0.3)
    yield url, runs
    process.terminate()
    process.wait(timeout=30)
    log.close()
    for job in (runs / ".board").glob("*/job.json"):  # no training outlives the test
        pid = json.loads(job.read_text())["pid"]
        if pid_runs_tunesmith(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(board):
    """A Chromium page with a fresh profile; page errors are collected in `page.errors`."""
    profile = tempfile.mkdtemp(prefix="board-chromium-")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        tab.errors = []
        tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        yield tab
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def edited_starter(page, **settings: str) -> str:
    """The starter config of the start form with `settings` replacing (or added after) its lines."""
    text = page.input_value("#config-text")
    lines = [line for line in text.splitlines() if line.split(":")[0] not in settings]
    return "\n".join([*lines, *(f"{k}: {v}" for k, v in settings.items())]) + "\n"


def start_from_page(page, board, name: str, **settings: str) -> None:
    url, runs = board
    page.goto(url + "#/start")
    page.wait_for_function("document.querySelector('#config-text').value.includes('builtin:tiny')")
    page.fill("#config-text", edited_starter(page, **RUN_SETTINGS, **settings))
    page.fill("#run-name-input", name)
    page.click("#start")
    page.wait_for_function(
        f"location.hash === '#/run/{name}' || /⚠|not started/.test(document.querySelector('#start-result').textContent)"
    )
    if not page.url.endswith(f"#/run/{name}"):  # say why: the page's message and the board's console
        board_log = (runs.parent / "board.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"{page.inner_text('#start-result')}\n{page.inner_text('#view')}\n{board_log}")


def points(page, chart: str = "loss") -> int:
    return int(page.get_attribute(f"canvas[data-chart='{chart}']", "data-points") or 0)


def wait_run(page, board, name: str, condition: str) -> None:
    """Wait on the run page until the JS `condition` holds (`points` is the loss chart's count), or fail with the
    run's console when it failed."""
    count = "Number(document.querySelector(\"canvas[data-chart='loss']\").dataset.points)"
    failed = "document.querySelector('#run-status.failed')"
    page.wait_for_function(f"(points => ({condition}))({count}) || {failed} !== null")
    if page.query_selector("#run-status.failed"):
        console = board[1] / ".board" / name / "console.log"
        pytest.fail(f"run {name} failed:\n{console.read_text(errors='replace')[-3000:]}")


def wait_status(page, status: str, row: str | None = None) -> None:
    selector = f"tr[data-run='{row}'][data-status='{status}']" if row else f"#run-status.{status}"
    page.wait_for_selector(selector)


def test_start_a_run_and_watch_it_live(board, page, artifacts):
    url, runs = board
    start_from_page(page, board, "demo", max_steps="30", save_steps="15")
    start_from_page(page, board, "long", max_steps="5000", save_steps="5000")  # listed and stopped below
    page.goto(url + "#/run/demo")
    wait_run(page, board, "demo", "points >= 2")
    seen = points(page)
    wait_run(page, board, "demo", f"points > {seen}")  # the chart gains points as the run logs
    page.screenshot(path=artifacts / "run_live.png", full_page=True)
    assert (runs / "demo" / "trainer_log.jsonl").is_file()
    wait_run(page, board, "demo", "document.querySelector('#run-status.finished') !== null")
    assert points(page) == 30
    page.wait_for_selector("tr[data-checkpoint='checkpoint-30']")
    page.wait_for_selector("#config-table tr[data-key='max_steps']")
    page.wait_for_selector("#plan-table tr.memory")  # the memory estimate of the plan
    assert (runs / "demo" / "tunesmith_config.yaml").is_file() and (
        runs / "demo" / "model.safetensors"
    ).is_file()
    page.screenshot(path=artifacts / "run_finished.png", full_page=True)


def test_chat_with_the_finished_run(board, page, artifacts):
    url, runs = board
    page.goto(url + "#/run/demo")
    page.wait_for_selector("#chat:not([hidden])")
    page.fill("#chat-input", "What is the capital of France?")
    page.press("#chat-input", "Enter")
    answer = page.wait_for_selector(".chat .msg.assistant")
    assert answer.inner_text().startswith("assistant:")
    page.screenshot(path=artifacts / "run_chat.png", full_page=True)


def test_run_list_shows_finished_and_running(board, page, artifacts):
    url, runs = board
    page.goto(url + "#/run/long")
    wait_run(page, board, "long", "points >= 1")
    page.goto(url + "#/")
    wait_status(page, "finished", row="demo")
    wait_status(page, "running", row="long")
    assert "demo" in page.inner_text("tr[data-run='demo']")
    page.screenshot(path=artifacts / "runs.png", full_page=True)


def test_stop_leaves_a_checkpoint(board, page, artifacts):
    url, runs = board
    page.goto(url + "#/run/long")
    page.click("#stop-run")
    wait_status(page, "stopped")
    checkpoints = [p for p in (runs / "long").glob("checkpoint-*") if (p / "COMPLETE").is_file()]
    assert len(checkpoints) == 1, list((runs / "long").iterdir())
    page.wait_for_selector(f"tr[data-checkpoint='{checkpoints[0].name}']")
    page.screenshot(path=artifacts / "run_stopped.png", full_page=True)


def test_compare_two_runs(board, page, artifacts):
    url, runs = board
    page.goto(url + "#/compare?runs=demo,long")
    page.wait_for_function("Number(document.querySelector('#compare-chart').dataset.points) > 30")
    page.select_option("#metric", "grad_norm")
    page.wait_for_function("Number(document.querySelector('#compare-chart').dataset.points) > 30")
    page.screenshot(path=artifacts / "compare.png", full_page=True)


def test_bad_config_is_marked_at_its_key(board, page, artifacts):
    url, runs = board
    page.goto(url + "#/start")
    page.wait_for_function("document.querySelector('#config-text').value.includes('builtin:tiny')")
    text = page.input_value("#config-text").replace("learning_rate:", "lerning_rate:")
    line = text.splitlines().index("lerning_rate: 1.0e-3") + 1
    page.fill("#config-text", text)
    page.fill("#run-name-input", "bad")
    page.click("#start")
    note = page.wait_for_selector(f".notes .key-error[data-line='{line}']")
    assert "lerning_rate" in note.inner_text() and "did you mean 'learning_rate'" in note.inner_text()
    gutter_line = page.query_selector(f"#gutter div:nth-child({line})")
    assert "bad" in gutter_line.get_attribute("class")
    assert abs(note.bounding_box()["y"] - gutter_line.bounding_box()["y"]) < 6  # beside the key's line
    page.screenshot(path=artifacts / "start_bad_config.png", full_page=True)
    page.fill("#config-text", text.replace("lerning_rate: 1.0e-3", "learning_rate: fast"))
    page.click("#check")
    page.wait_for_selector(f".notes .key-error[data-key='learning_rate'][data-line='{line}']")
    assert not (runs / "bad").exists() and not (runs / ".board" / "bad").exists()


def test_malformed_and_half_written_log_lines(board, page, artifacts):
    url, runs = board
    folder = runs / "half-written"
    folder.mkdir()
    log = folder / "trainer_log.jsonl"
    log.write_bytes(
        b'{"step": 1, "loss": 3.0, "lr": 0.1}\n\x00\xff garbage\n{"step": 2, "loss": NaN}\n[]\n'
        b'{"step": 3, "loss": 2.5}\n{"step": 4, "lo'
    )
    page.goto(url + "#/run/half-written")
    page.wait_for_function(
        "Number(document.querySelector(\"canvas[data-chart='loss']\").dataset.points) === 3"
    )
    assert "2 unreadable" in page.inner_text("#log-note")
    with log.open("ab") as f:  # the writer completes its line and goes on
        f.write(b'ss": 2.2}\n{"step": 5, "loss": 2.0}\n')
    page.wait_for_function(
        "Number(document.querySelector(\"canvas[data-chart='loss']\").dataset.points) === 5"
    )
    page.goto(url + "#/")
    page.wait_for_selector("tr[data-run='half-written']")
    page.screenshot(path=artifacts / "runs_with_broken_log.png", full_page=True)
    assert page.errors == []

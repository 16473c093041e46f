"""The board without a browser: tolerant log reading, status from files and the lock, config problems located
at their key, the endpoints' guards (token, host, JSON-only actions, paths), and no import of tunesmith.train."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunesmith.board.app import create_app
from tunesmith.board.details import checkpoint_rows
from tunesmith.board.jobs import Job, Jobs, pid_runs_tunesmith
from tunesmith.board.launch import check_config, check_name, locate
from tunesmith.board.logs import LOG_FILE, last_rows, read_rows
from tunesmith.board.runs import find_runs, list_runs, summarize
from tunesmith.board.server import board_url, serve
from tunesmith.board.status import STALE_S, run_status
from tunesmith.utils.errors import ConfigError
from tunesmith.utils.runlock import LOCK_FILE

GOOD = b'{"step": 1, "loss": 2.5, "lr": 0.001}\n'
STARTER_LIKE = "model_name_or_path: builtin:tiny\ndataset: demo\ndataset_dir: builtin:demo\nmax_steps: 3\n"


def write_run(folder: Path, log: bytes, *, final: bool = False, checkpoints: tuple[int, ...] = ()) -> Path:
    folder.mkdir(parents=True)
    (folder / LOG_FILE).write_bytes(log)
    if final:
        (folder / "tunesmith_config.yaml").write_text("model_name_or_path: builtin:tiny\nmax_steps: 2\n")
    for step in checkpoints:
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "COMPLETE").write_text("{}")
    return folder


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_reader_takes_complete_valid_lines_only(tmp_path):
    path = tmp_path / LOG_FILE
    path.write_bytes(
        GOOD + b'not json\n[1, 2]\n{"step": "x"}\n{"step": 2, "loss": NaN, "note": "s"}\n{"step": 3, "lo'
    )
    chunk = read_rows(path)
    assert [r["step"] for r in chunk.rows] == [1, 2]
    assert chunk.rows[1] == {"step": 2, "loss": None}  # NaN -> None (JSON has no NaN), strings dropped
    assert chunk.skipped == 3
    with path.open("ab") as f:  # the writer finishes its line and adds one
        f.write(b'ss": 1.5}\n{"step": 4, "loss": 1.4}\n')
    more = read_rows(path, chunk.offset)
    assert [r["step"] for r in more.rows] == [3, 4] and not more.reset
    path.write_bytes(GOOD)  # rewritten shorter (a resume truncates the log)
    assert read_rows(path, more.offset).reset
    assert read_rows(tmp_path / "missing.jsonl").rows == []
    assert [r["step"] for r in last_rows(path)] == [1]


def test_status_from_files(tmp_path):
    jobs = Jobs(tmp_path)
    finished = write_run(tmp_path / "a", GOOD, final=True)
    running = write_run(tmp_path / "b", GOOD)
    stopped = write_run(tmp_path / "c", GOOD, checkpoints=(1,))
    failed = write_run(tmp_path / "d", GOOD + b'{"step": 2, "loss": 2.0}\n', checkpoints=(1,))
    for folder in (stopped, failed):
        age(folder / LOG_FILE, STALE_S + 5)
    assert run_status(finished, None, False, 1) == "finished"
    assert run_status(running, None, False, 1) == "running"
    assert run_status(stopped, None, False, 1) == "stopped"
    assert run_status(failed, None, False, 2) == "failed"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "tunesmith"])
    try:
        deadline = time.time() + 30
        while not pid_runs_tunesmith(holder.pid) and time.time() < deadline:  # until exec has happened
            time.sleep(0.05)
        (failed / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        alive = run_status(failed, None, False, 2)
        assert alive == "running"  # the lock holder (a tunesmith process) is alive
    finally:
        holder.kill()
        holder.wait()
    assert run_status(failed, None, False, 2) == "failed"  # a stale lock
    (failed / "checkpoint-2.tmp").mkdir()  # being written: not a stop's checkpoint yet
    assert run_status(failed, None, False, 2) == "failed"
    assert [(c["step"], c["complete"]) for c in checkpoint_rows(failed)] == [(1, True), (2, False)]
    (failed / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere"}))
    assert run_status(failed, None, False, 2) == "failed"
    job = Job("d", pid=1, started=0.0, plan={}, stop_requested=True, returncode=2)
    assert run_status(failed, job, False, 2) == "stopped"
    assert run_status(failed, job, True, 2) == "stopping"
    assert find_runs(tmp_path, jobs) == ["a", "b", "c", "d"]
    assert {r["name"]: r["status"] for r in list_runs(tmp_path, jobs)}["a"] == "finished"
    (stopped / "tunesmith_config.yaml").write_text("train:\n  lr: 0.01\nmicro_batch_size: 2\n")
    summary = summarize(tmp_path, "c", jobs)
    assert summary["config"] == {"learning_rate": 0.01, "per_device_train_batch_size": 2}


def test_problems_are_located_at_their_key(tmp_path):
    text = "model_name_or_path: builtin:tiny\n  lerning_rate: 1\n"
    problem = locate("unknown key 'lerning_rate' (config.yaml line 2); did you mean 'learning_rate'?", text)
    assert (problem.key, problem.line) == ("lerning_rate", 2)
    assert locate("'model_name_or_path': must be set", text).line == 1  # no line in the message: found by key
    assert check_name(tmp_path, "../x").key == "run name"
    (tmp_path / "taken").mkdir()
    assert "taken" in check_name(tmp_path, "taken").message
    plan, problems = check_config(tmp_path, "r1", STARTER_LIKE + "learning_rate: abc\n", count_data=False)
    assert plan == {} and (problems[0].key, problems[0].line) == ("learning_rate", 5)
    plan, problems = check_config(
        tmp_path, "r1", STARTER_LIKE + "use_peft: true\nlora_r: 4\n", count_data=False
    )
    assert problems == [] and plan["derived"]["max_steps"] == 3
    assert plan["dialect"]["name"] == "trl" and any(line.startswith("peak: ") for line in plan["memory"])
    assert not (tmp_path / "r1").exists()  # checking writes nothing


@pytest.fixture
def client(tmp_path):
    write_run(tmp_path / "a", GOOD, final=True)
    return TestClient(create_app(tmp_path), base_url="http://127.0.0.1")


def test_endpoints(client):
    assert [r["name"] for r in client.get("/api/runs").json()["runs"]] == ["a"]
    assert client.get("/api/log", params={"name": "a"}).json()["rows"][0]["loss"] == 2.5
    details = client.get("/api/run", params={"name": "a"}).json()
    assert details["summary"]["status"] == "finished"
    assert {k["name"] for k in details["config"]["keys"]} == {"model_name_or_path", "max_steps"}
    assert client.get("/api/run", params={"name": "../etc"}).status_code == 404
    assert client.get("/api/plot", params={"name": "a", "file": "../../x.png"}).status_code == 404
    assert client.get("/").status_code == 200 and client.get("/static/chart.js").status_code == 200
    assert client.get("/api/templates").json()[0]["text"].startswith("#")


def test_guards(tmp_path, client):
    # a page on another site cannot make the browser start a run: form posts and foreign origins are refused
    assert client.post("/api/start", data={"name": "x", "text": "y"}).status_code == 403
    foreign = client.post(
        "/api/start", json={"name": "x", "text": "y"}, headers={"Origin": "http://evil.test"}
    )
    assert foreign.status_code == 403
    assert client.post("/api/stop", json={"name": "a"}).status_code == 409  # not a job of this board
    no_model = client.post("/api/chat", json={"name": "a", "messages": [{"role": "user", "content": "hi"}]})
    assert no_model.status_code == 400 and "neither a model" in no_model.json()["detail"]
    write_run(tmp_path / "b", GOOD)  # still running: no chat yet
    assert client.post("/api/chat", json={"name": "b", "messages": []}).status_code == 409
    rebound = TestClient(create_app(tmp_path), base_url="http://evil.test")  # DNS rebinding: foreign Host
    assert rebound.get("/api/runs").status_code == 403
    secured = TestClient(create_app(tmp_path, token="s3cret"), base_url="http://10.0.0.5")
    assert secured.get("/api/runs").status_code == 403
    assert secured.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = secured.get("/", params={"token": "s3cret"})
    assert first.status_code == 200 and secured.get("/api/runs").status_code == 200  # cookie set by the first


def test_board_never_imports_train(tmp_path):
    """Listing runs and following logs loads nothing from tunesmith.train (validating a config goes through the
    config layer, which registers the built-in optimizer and scheduler plugins)."""
    write_run(tmp_path / "a", GOOD, final=True)
    code = (
        "import sys; from pathlib import Path; from fastapi.testclient import TestClient;"
        "from tunesmith.board.app import create_app;"
        f"c = TestClient(create_app(Path({str(tmp_path)!r})), base_url='http://127.0.0.1');"
        "assert c.get('/api/runs').json()['runs'][0]['status'] == 'finished';"
        "assert c.get('/api/log', params={'name': 'a'}).json()['rows'];"
        "print(sorted(m for m in sys.modules if m.startswith('tunesmith.train')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_serve_refuses_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="RUNS_DIR"):
        serve(tmp_path / "missing")
    with pytest.raises(ConfigError, match="--port"):
        serve(tmp_path, port=70000)
    assert board_url("::1", 7870, None) == "http://[::1]:7870/"
    assert board_url("0.0.0.0", 80, "t") == "http://0.0.0.0:80/?token=t"

"""Using a trained model: after a short `tunesmith train` of the quick start (4 demo questions, learned by heart),
`tunesmith generate` gives the trained answers, `tunesmith chat` answers in a terminal, and `tunesmith serve`
answers the official `openai` client the same way, streamed or not, under concurrency, with documented errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pexpect
import pytest
from helpers import DEMO_DIR, tiny_model, tiny_tokenizer, write_jsonl
from transformers import GenerationConfig

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.infer.chat import run_chat
from tunesmith.infer.loading import Loaded

ROOT = Path(__file__).resolve().parents[1]
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
ROWS = json.loads((DEMO_DIR / "demo.json").read_text())[:4]
KEY = "sk-test-key"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The quick-start recipe on the first 4 demo questions, trained until they are known by heart."""
    root = tmp_path_factory.mktemp("infer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_DATA_CACHE", str(root / "cache"))
        code = main(
            [
                "train",
                str(ROOT / "examples/quickstart.yaml"),
                f"output_dir={root / 'run'}",
                "max_samples=4",
                "num_train_epochs=60",
                "per_device_train_batch_size=4",
                "learning_rate=5e-3",
                "warmup_ratio=0.05",
                "save_strategy=no",
                "disable_tqdm=true",
            ]
        )
    assert code == 0
    return root / "run"


@pytest.fixture(scope="module")
def generated(run_dir, tmp_path_factory):
    """`tunesmith generate` on the 4 questions (alpaca rows with their answers)."""
    folder = tmp_path_factory.mktemp("generate")
    write_jsonl(folder / "questions.jsonl", ROWS)
    out = folder / "answers.jsonl"
    assert (
        main(["generate", str(run_dir), "--input", str(folder / "questions.jsonl"), "--output", str(out)])
        == 0
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_generate_gives_the_trained_answers(generated, run_dir, tmp_path, capsys):
    assert [r["predict"] for r in generated] == [r["output"] for r in ROWS]
    assert all(r["label"] == r["predict"] for r in generated)
    assert generated[0]["prompt"].endswith("<|im_start|>assistant\n")
    (tmp_path / "q.txt").write_text(ROWS[1]["instruction"] + "\n")
    assert (
        main(
            [
                "generate",
                str(run_dir),
                "--input",
                str(tmp_path / "q.txt"),
                "--output",
                str(tmp_path / "a.jsonl"),
            ]
        )
        == 0
    )
    assert "tokens/s" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.jsonl").read_text())["predict"] == ROWS[1]["output"]
    registry = [
        "dataset=demo",
        f"dataset_dir={DEMO_DIR}",
        "max_samples=2",
        "--output",
        str(tmp_path / "d.jsonl"),
    ]
    assert main(["generate", str(run_dir), *registry, "--batch-size", "2"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["predict"] for r in lines] == [r["label"] for r in lines] == [r["output"] for r in ROWS[:2]]


def test_chat_in_a_terminal(run_dir):
    child = pexpect.spawn(TUNESMITH, ["chat", str(run_dir)], env=_env(), encoding="utf-8", timeout=180)
    try:
        child.expect_exact("user: ")
        child.sendline(ROWS[2]["instruction"])
        child.expect_exact(f"assistant: {ROWS[2]['output']}")
        child.expect_exact("user: ")
        child.sendline("/clear")
        child.expect_exact("(history cleared)")
        child.expect_exact("user: ")
        child.sendline(ROWS[0]["instruction"])
        child.expect_exact(f"assistant: {ROWS[0]['output']}")
        child.expect_exact("user: ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


class _InterruptOnAnswer(io.StringIO):
    """Raises KeyboardInterrupt (as Ctrl-C would) once the answer's second piece is printed."""

    pieces = 0

    def write(self, text: str) -> int:
        if self.getvalue().count("assistant: ") == 1 and text and "assistant: " not in text:
            self.pieces += 1
            if self.pieces == 2:
                raise KeyboardInterrupt
        return super().write(text)


def test_ctrl_c_stops_the_answer_not_the_chat():
    model = tiny_model()
    model.generation_config = GenerationConfig(eos_token_id=None)  # would talk for all 300 tokens
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "max_new_tokens=300"])
    lines = iter(["hello", "/exit"])
    out = _InterruptOnAnswer()
    start = time.perf_counter()
    run_chat(Loaded(model, tiny_tokenizer(), cfg, "tiny"), read=lambda prompt: next(lines), out=out)
    assert "(stopped)" in out.getvalue() and time.perf_counter() - start < 60


def test_chat_without_streaming_prints_whole_answers():
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "max_new_tokens=4", "stream=false"])
    lines = iter(["hello", "/clear", "", "again"])

    def read(prompt: str) -> str:
        line = next(lines, None)
        if line is None:
            raise EOFError
        return line

    out = io.StringIO()
    run_chat(Loaded(tiny_model(), tiny_tokenizer(), cfg, "tiny"), read=read, out=out)
    text = out.getvalue()  # the input ends after "again": end of file quits
    assert text.count("assistant: ") == 2 and "(history cleared)" in text


@pytest.fixture(scope="module")
def server(run_dir):
    """`tunesmith serve` on a port the system picks (api_port=0): the printed address says which."""
    argv = [
        TUNESMITH,
        "serve",
        str(run_dir),
        "api_port=0",
        f"api_key={KEY}",
        "max_new_tokens=64",
        "max_model_len=256",
    ]
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # ends when the process does
        seen.append(line)
        if line.startswith("serving "):
            break
    assert seen and seen[-1].startswith("serving run on http://127.0.0.1:"), "".join(seen)
    url = seen[-1].split(" on ", 1)[1].strip().removesuffix("/v1")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    assert httpx.get(f"{url}/health", timeout=30).json() == {"status": "ok"}
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def _ask(client: openai.OpenAI, question: str, **kwargs):
    messages = [{"role": "user", "content": question}]
    return client.chat.completions.create(model="run", messages=messages, temperature=0, **kwargs)


def test_server_answers_like_generate(server, generated):
    client = _client(server)
    assert [m.id for m in client.models.list()] == ["run"]
    reply = _ask(client, ROWS[0]["instruction"])
    assert reply.choices[0].message.content == generated[0]["predict"] == ROWS[0]["output"]
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens > 0
    chunks = list(_ask(client, ROWS[1]["instruction"], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == generated[1]["predict"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    prompt = generated[3]["prompt"]
    text = client.completions.create(model="run", prompt=prompt, max_tokens=16, temperature=0).choices[0].text
    assert text.startswith(ROWS[3]["output"])
    two = _ask(client, ROWS[0]["instruction"], n=2)
    assert [c.message.content for c in two.choices] == [ROWS[0]["output"]] * 2 and two.choices[1].index == 1
    assert two.usage.completion_tokens == 2 * reply.usage.completion_tokens
    counted = list(_ask(client, ROWS[1]["instruction"], stream=True, stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage.completion_tokens > 0


def test_server_serves_twenty_at_once(server):
    client = _client(server)
    questions = [ROWS[i % 4] for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        replies = list(
            pool.map(lambda row: _ask(client, row["instruction"]).choices[0].message.content, questions)
        )
    assert replies == [row["output"] for row in questions]


def test_server_errors_are_documented_and_it_keeps_serving(server):
    client = _client(server)
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(f"{server}/v1/chat/completions", content=b'{"model": "run", "messages": [', headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "capital " * 600)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "capital " * 200, max_tokens=60)  # fits the context of 256 only without max_tokens
    assert err.value.code == "context_length_exceeded"
    assert _ask(client, "capital " * 200).choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError):
        _ask(client, "hi", max_tokens=100_000)
    with pytest.raises(openai.AuthenticationError):
        _ask(_client(server, key="sk-wrong"), "hi")
    for wrong, param in (
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2, "stream": True}, "n"),
        ({"extra_body": {"foo": 1}}, "foo"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            _ask(client, "hi", **wrong)
        assert err.value.param == param
    image = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(model="run", messages=[{"role": "user", "content": image}])
    big = httpx.post(f"{server}/v1/completions", content=b"x" * (2 << 20), headers=auth)
    assert big.status_code == 413
    assert _ask(client, ROWS[2]["instruction"]).choices[0].message.content == ROWS[2]["output"]

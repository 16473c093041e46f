"""token_loss_weights (ms-swift's weighted loss_scale): schemes split answers as ms-swift's do (hand-worked cases;
checked once against swift's own functions on 420 string/scheme pairs), the weights follow the tokens through
tokenization, truncation, packing and padding, and the loss is the weighted token sum over the step's valid
tokens."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_tokenizer, write_json
from methods_helpers import logits, micro_batches, setup, trainer_for

from tunesmith.config import load_config
from tunesmith.config.validate import validate_config
from tunesmith.data.batching import build_batcher
from tunesmith.data.loss_weights import parse_scheme
from tunesmith.data.pipeline import build_datasets
from tunesmith.train.loss import chunked_ce_sum, token_ce_sum
from tunesmith.train.sft_losses import weighted_ce_sum
from tunesmith.utils.errors import ConfigError

REACT = "Thought: look\nAction: weather\nAction Input: Paris\nObservation: sunny"


def test_schemes_split_as_ms_swift():
    assert parse_scheme("react").split(REACT) == [
        ("Thought:", 1.0),
        (" look\n", 1.0),
        ("Action:", 2.0),
        (" weather\n", 2.0),
        ("Action Input:", 2.0),
        (" Paris\n", 2.0),
        ("Observation:", 2.0),
        (" sunny", 0.0),
    ]
    text = "<think>\n\n</think>\n\nI call <tool_call>{}</tool_call> done"
    assert parse_scheme("hermes+ignore_empty_think").split(text) == [
        ("<think>\n\n</think>\n\n", 0.0),
        ("I call ", 1.0),
        ("<tool_call>{}</tool_call>", 2.0),
        (" done", 1.0),
    ]
    agent = parse_scheme("agentflan")
    assert agent.split("Action: x", "What is the tool you want to use?") == [("Action: x", 3.0)]
    assert agent.split("Action: x", "hello") == [("Action:", 1.0), (" x", 3.0)]
    assert parse_scheme("ignore_think_prefix").split("<think>\nwhy</think>") == [
        ("<think>\n", 0.0),
        ("why</think>", 1.0),
    ]


def test_scheme_from_a_json_file(tmp_path):
    regex = write_json(tmp_path / "r.json", {r"\d+": [3.0]})
    assert parse_scheme(str(regex)).split("a 12 b") == [("a ", 1.0), ("12", 3.0), (" b", 1.0)]
    nested = write_json(tmp_path / "n.json", {"response": {"Ans:": [0.5, 2]}, "query": {"urgent": [4]}})
    scheme = parse_scheme(f"{nested}+ignore_think_prefix")
    assert scheme.split("pre Ans: x") == [("pre ", 1.0), ("Ans:", 0.5), (" x", 2.0)]
    assert scheme.split("<think>\nx", "urgent!") == [("<think>\n", 0.0), ("x", 4.0)]
    for bad, match in (({"a": [1, 2, 3]}, "'a' needs"), ({"a": [-1]}, ">= 0"), ({"(": [1]}, "not a regex")):
        with pytest.raises(ConfigError, match=f"token_loss_weights: .*{match}"):
            parse_scheme(str(write_json(tmp_path / "bad.json", bad)))
    with pytest.raises(ConfigError, match="'nope' is neither a scheme"):
        parse_scheme("react+nope")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loss_scale")
    rows = [
        {"instruction": "Weather?", "output": REACT},
        {"instruction": "Hi", "output": "Final Answer: hello"},
    ]
    return write_json(folder / "d.json", rows)


def _train_set(data_file, tmp_path, monkeypatch, *args):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    cfg = load_config(
        None, ["model=builtin:tiny", f"dataset={data_file}", "template=chatml", "cutoff_len=128", *args]
    )
    return cfg, build_datasets(cfg, tiny_tokenizer()).train


def test_weights_follow_the_tokens(data_file, tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    _, plain = _train_set(data_file, tmp_path, monkeypatch)
    _, ds = _train_set(data_file, tmp_path, monkeypatch, "token_loss_weights=react")
    assert "loss_weights" not in plain.column_names and len(ds) == 2
    row = ds[0]
    prompt_len = row["labels"].index(next(x for x in row["labels"] if x != -100))
    answer = row["input_ids"][prompt_len:]
    segments = ["Thought:", " look\n", "Action:", " weather\n", "Action Input:", " Paris\n", "Observation:"]
    ids = [tok(s, add_special_tokens=False)["input_ids"] for s in [*segments, " sunny", "<|im_end|>\n"]]
    assert answer == [i for part in ids for i in part]  # each segment tokenized on its own, as ms-swift does
    expected = [w for part, w in zip(ids, [1, 1, 2, 2, 2, 2, 2, 0, 1], strict=True) for _ in part]
    assert row["loss_weights"] == [0.0] * prompt_len + expected
    assert [lab != -100 for lab in row["labels"]] == [w > 0 for w in row["loss_weights"]]  # weight 0: ignored
    _, left = _train_set(
        data_file, tmp_path, monkeypatch, "token_loss_weights=react", "truncation_strategy=left"
    )
    _, cut = _train_set(
        data_file,
        tmp_path,
        monkeypatch,
        "token_loss_weights=react",
        "truncation_strategy=left",
        "cutoff_len=9",
    )
    assert cut[0]["loss_weights"] == left[0]["loss_weights"][-9:]


@pytest.mark.parametrize("args", [["packing=true"], ["batching_strategy=padding_free"], []])
def test_weights_through_packing_and_padding(data_file, tmp_path, monkeypatch, args):
    cfg, ds = _train_set(
        data_file, tmp_path, monkeypatch, "token_loss_weights=react", "per_device_train_batch_size=2", *args
    )
    batch = next(iter(build_batcher(cfg, ds, tiny_tokenizer())))
    weights, labels = batch["loss_weights"], batch["labels"]
    assert weights.shape == labels.shape and weights.dtype == torch.float32
    assert torch.equal(weights > 0, labels != -100)
    expected = sorted(
        w for r in ds for w, lab in zip(r["loss_weights"], r["labels"], strict=True) if lab != -100
    )
    got = sorted(weights[labels != -100].tolist())
    assert got == expected  # (packing masks each later example's first label: a prompt token here)


def test_loss_is_the_weighted_token_sum():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, -100, 4], [-100, -100, 3, 5, 6]])
    weights = torch.tensor([[0.0, 2.0, 1.0, 0.0, 0.5], [0.0, 0.0, 3.0, 1.0, 1.0]])
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), reduction="none"
    )
    by_hand = (ce * weights[:, 1:].reshape(-1)).sum()
    assert torch.allclose(token_ce_sum(logits, labels, weights=weights), by_hand)
    assert torch.allclose(
        token_ce_sum(logits, labels, weights=torch.ones(2, 5)), token_ce_sum(logits, labels)
    )
    hidden = torch.randn(2, 5, 4)
    head = torch.nn.Linear(4, 7)
    chunked = chunked_ce_sum(hidden, head, labels, 2, weights=weights)
    assert torch.allclose(chunked, token_ce_sum(head(hidden), labels, weights=weights), atol=1e-6)
    dft = weighted_ce_sum("dft", logits, labels, weights=weights)
    assert torch.allclose(dft, (ce * torch.exp(-ce) * weights[:, 1:].reshape(-1)).sum())


def test_training_step_divides_by_the_valid_tokens(tiny_model_dir, tmp_path):
    cfg, tokenizer, model = setup(tiny_model_dir, tmp_path, "gradient_accumulation_steps=2", steps=1)
    batches = micro_batches(tokenizer, 2)
    for i, mb in enumerate(batches):
        mb["loss_weights"] = (mb["labels"] != -100).float() * (
            1.0 + i + torch.arange(mb["labels"].size(1)) % 3
        )
    weighted = sum(
        token_ce_sum(logits(model, mb), mb["labels"], weights=mb["loss_weights"]).item() for mb in batches
    )
    valid = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in batches)
    trainer = trainer_for(cfg, model, batches)
    history = trainer.train().log_history
    trainer.close()
    assert history[0]["loss"] == pytest.approx(weighted / valid, rel=1e-4)


def test_refused_where_not_carried():
    base = ["model=builtin:tiny", "dataset=demo", "dataset_dir=builtin:demo", "token_loss_weights=react"]
    with pytest.raises(ConfigError, match="token_loss_weights.*stage: sft.*stage dpo"):
        validate_config(load_config(None, [*base, "stage=dpo"], validate=False))

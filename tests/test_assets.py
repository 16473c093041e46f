"""The built-in assets: tokenizer, chat template, `builtin:` names, tiny model config, demo data, test helpers."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ARCHS, DEMO_DIR, TINY_DIR, save_tiny_model, tiny_model, tiny_tokenizer, tiny_vocab_size
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

from tunesmith.utils.builtin import BUILTIN_PREFIX, builtin_names, is_builtin, resolve_builtin
from tunesmith.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
]


def test_special_tokens_are_single_ids_and_text_round_trips(tokenizer):
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    ids = [tokenizer.encode(token, add_special_tokens=False) for token in tokens]
    assert all(len(i) == 1 for i in ids) and tokenizer.convert_ids_to_tokens([i[0] for i in ids]) == tokens
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    text = "def f(x):\n    return x + 12345  # Ünïcödé 你好 🙂\n\n<think>\nhm\n</think> done<|im_end|>"
    ids = tokenizer.encode(text)  # no BOS/EOS added
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode("12345", add_special_tokens=False) == [
        tokenizer.convert_tokens_to_ids(d) for d in "12345"
    ]
    assert len(tokenizer) == 2048 and len(ids) < len(text.encode()) / 1.5  # the BPE merges do something


def test_chat_template_renders_chatml(tokenizer):
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there!<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nIt is 4.<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == expected
    prompt = tokenizer.apply_chat_template(CHAT[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_assistant_mask_covers_exactly_assistant_content_and_im_end(tokenizer):
    out = tokenizer.apply_chat_template(
        CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids == tokenizer.encode(tokenizer.apply_chat_template(CHAT, tokenize=False))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append(ids[start:i])
            start = None
    assert spans == [
        tokenizer.encode(c, add_special_tokens=False) + [im_end] for c in ("Hello there!", "It is 4.")
    ]


def test_chat_template_renders_tools_tool_calls_and_reasoning(tokenizer):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    chat = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"c": 1}}}],
        },
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "reasoning_content": "easy"},
    ]
    text = tokenizer.apply_chat_template(chat, tools=tools, tokenize=False)
    assert text.startswith("<|im_start|>system\n") and '{"name": "weather", "parameters"' in text
    assert (
        '<|im_start|>assistant\n<tool_call>{"name": "weather", "arguments": {"c": 1}}</tool_call><|im_end|>\n'
        in text
    )
    assert "<|im_start|>tool\nsunny<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n<think>\neasy\n</think>\n\nSunny.<|im_end|>\n")
    with pytest.raises(Exception, match="system message is only allowed first"):
        tokenizer.apply_chat_template([*chat[:1], {"role": "system", "content": "x"}], tokenize=False)


def test_resolve_builtin_finds_folders_and_rejects_unknown_names():
    assert builtin_names() == ["builtin:demo", "builtin:tiny"]
    assert resolve_builtin("builtin:tiny") == TINY_DIR and (TINY_DIR / "tokenizer.json").is_file()
    assert (resolve_builtin("builtin:demo") / "dataset_info.json").is_file()
    assert is_builtin("builtin:anything") and not is_builtin("Qwen/Qwen2-0.5B") and not is_builtin(None)
    assert BUILTIN_PREFIX == "builtin:"
    with pytest.raises(
        ConfigError, match=r"^dataset_dir: unknown built-in 'builtin:huge'.*builtin:demo, builtin:tiny"
    ):
        resolve_builtin("builtin:huge", field="dataset_dir")
    with pytest.raises(ConfigError, match="model_name_or_path"):
        resolve_builtin("tiny")


def test_builtin_config_builds_tiny_qwen2_with_expected_size():
    config = AutoConfig.from_pretrained(TINY_DIR)
    model = AutoModelForCausalLM.from_config(config)
    assert isinstance(model, Qwen2ForCausalLM) and config.vocab_size == len(tiny_tokenizer()) == 2048
    h, inter, layers, kv = 256, 1024, 4, 2 * 64
    per_layer = (
        (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * inter + 2 * h
    )  # q(+bias) k,v(+bias) o, MLP, norms
    assert sum(p.numel() for p in model.parameters()) == 2048 * h + layers * per_layer + h == 4_460_800
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert not any(TINY_DIR.glob("*.safetensors")) and not any(TINY_DIR.glob("*.bin"))
    generation = json.loads((TINY_DIR / "generation_config.json").read_text())
    tok = tiny_tokenizer()
    assert generation["eos_token_id"] == [tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")]


def test_demo_datasets_are_registered_and_fit_the_quickstart_cutoff(tokenizer):
    info = json.loads((DEMO_DIR / "dataset_info.json").read_text())
    assert set(info) == {"demo", "demo_pt"} and QUICKSTART["dataset"] == "demo"
    rows = json.loads((DEMO_DIR / info["demo"]["file_name"]).read_text())
    assert 500 <= len(rows) <= 2000 and all(set(r) == {"instruction", "input", "output"} for r in rows)
    prompts = [(r["instruction"], r["input"]) for r in rows]
    assert len(set(prompts)) == len(prompts) and all(r["output"].startswith("The capital of ") for r in rows)
    lengths = [len(encode_example(tokenizer, r, 10_000)[0]) for r in rows]
    assert max(lengths) <= QUICKSTART["cutoff_len"]
    lines = (DEMO_DIR / info["demo_pt"]["file_name"]).read_text().splitlines()
    assert 1000 < sum(map(len, lines)) < 20_000 and all(lines)


def test_build_script_regenerates_the_shipped_assets_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("build_assets", ROOT / "scripts" / "build_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path)
    shipped = sorted(p.relative_to(TINY_DIR.parent) for p in TINY_DIR.parent.rglob("*") if p.is_file())
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in shipped:
        assert (tmp_path / rel).read_bytes() == (TINY_DIR.parent / rel).read_bytes(), rel
    assert sum((TINY_DIR / f).stat().st_size for f in ("tokenizer.json", "tokenizer_config.json")) < 300_000


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_is_small_seeded_and_leaves_global_rng_alone(arch):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    model = tiny_model(arch)
    assert torch.equal(torch.rand(1), before)
    assert (
        model.config.hidden_size == 64
        and model.config.num_hidden_layers == 2
        and model.dtype == torch.float32
    )
    assert model.config.vocab_size == tiny_vocab_size() == 2048
    same, other = tiny_model(arch), tiny_model(arch, seed=1)
    ids = torch.tensor([tiny_tokenizer().encode("The capital of France is Paris.")])
    logits = model(input_ids=ids, use_cache=False).logits
    assert torch.equal(logits, same(input_ids=ids, use_cache=False).logits)
    assert not torch.allclose(logits, other(input_ids=ids, use_cache=False).logits)
    if arch == "qwen3_moe":
        assert (
            model.config.num_experts,
            model.config.num_experts_per_tok,
            model.config.moe_intermediate_size,
        ) == (4, 2, 64)
    assert tiny_model(arch, vocab_size=128, num_hidden_layers=1).config.num_hidden_layers == 1


def test_saved_tiny_model_dir_reloads_with_identical_logits_and_tokenizer(tiny_model_dir, tmp_path):
    reloaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = torch.tensor([tok.encode("Which country has Oslo as its capital?")])
    expected = tiny_model("qwen2")(input_ids=ids, use_cache=False).logits
    assert torch.allclose(reloaded(input_ids=ids, use_cache=False).logits, expected, atol=1e-6)
    assert tok.chat_template == tiny_tokenizer().chat_template
    llama_dir = save_tiny_model(tmp_path / "llama", arch="llama")  # the tokenizer must not turn into Llama's
    assert AutoTokenizer.from_pretrained(llama_dir).encode("Hi there 42") == tok.encode("Hi there 42")


def encode_example(tokenizer, row: dict[str, str], cutoff: int) -> tuple[list[int], list[int]]:
    """An alpaca row as ChatML token ids and labels (only the answer and its `<|im_end|>` supervised)."""
    user = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
    chat = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"][:cutoff], out["assistant_masks"][:cutoff]
    return ids, [i if m else -100 for i, m in zip(ids, mask, strict=True)]


def train_on_demo(max_steps: int | None = None) -> tuple[torch.nn.Module, list[float]]:
    """The quick-start recipe as a plain PyTorch loop: builtin:tiny from seed, AdamW, warmup + cosine."""
    tok, recipe = tiny_tokenizer(), QUICKSTART
    rows = json.loads((DEMO_DIR / "demo.json").read_text())
    data = [encode_example(tok, r, recipe["cutoff_len"]) for r in rows]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY_DIR)).train()
    bs = recipe["per_device_train_batch_size"]
    total = math.ceil(len(data) / bs) * recipe["num_train_epochs"]
    warm = int(recipe["warmup_ratio"] * total)
    optim = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, functools.partial(warmup_cosine, warm=warm, total=total))
    rng, losses = random.Random(0), []
    while len(losses) < (max_steps or total):
        order = rng.sample(range(len(data)), len(data))
        for start in range(0, len(order), bs):
            batch = pad([data[i] for i in order[start : start + bs]], tok.pad_token_id)
            loss = model(**batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["max_grad_norm"])
            optim.step()
            sched.step()
            optim.zero_grad()
            losses.append(loss.item())
            if len(losses) == (max_steps or total):
                break
    return model.eval(), losses


def warmup_cosine(step: int, *, warm: int, total: int) -> float:
    """Learning-rate factor: linear warmup over `warm` steps, then cosine decay to 0 at `total`."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


def pad(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ids with `pad_id`, labels with -100, and build the attention mask."""
    width = max(len(ids) for ids, _ in batch)
    fill = [width - len(ids) for ids, _ in batch]
    return {
        "input_ids": torch.tensor([ids + [pad_id] * n for (ids, _), n in zip(batch, fill, strict=True)]),
        "labels": torch.tensor([labels + [-100] * n for (_, labels), n in zip(batch, fill, strict=True)]),
        "attention_mask": torch.tensor(
            [[1] * len(ids) + [0] * n for (ids, _), n in zip(batch, fill, strict=True)]
        ),
    }


def answer(model: torch.nn.Module, question: str) -> str:
    """Greedy answer of `model` to one user question, special tokens removed."""
    tok = tiny_tokenizer()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_dict=True
    )
    prompt = torch.tensor([ids["input_ids"]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, prompt.shape[1] :], skip_special_tokens=True).strip()


def test_demo_loss_falls_several_fold_in_forty_steps():
    model, losses = train_on_demo(max_steps=40)
    assert losses[0] > 7.0 and sum(losses[-5:]) / 5 < losses[0] / 4
    assert answer(model, "What is the capital of France?").startswith("The capital of")


@pytest.mark.slow
def test_quickstart_recipe_learns_every_capital():
    """The full quick-start recipe (1-2 minutes on one thread): every capital is answered right afterwards,
    in three prompt forms."""
    spec = importlib.util.spec_from_file_location("build_assets", ROOT / "scripts" / "build_assets.py")
    build_assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_assets)
    model, losses = train_on_demo()
    assert sum(losses[-10:]) / 10 < 0.05
    forms = ["What is the capital of {}?", "Capital of {}?", "Give the capital city of this country.\n{}"]
    wrong = [
        (form.format(c), reply)
        for c, cap in build_assets.CAPITALS.items()
        for form in forms
        if (reply := answer(model, form.format(c))) != f"The capital of {c} is {cap}."
    ]
    assert not wrong

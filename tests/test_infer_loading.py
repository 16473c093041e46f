"""What `chat` / `generate` / `serve` load: an adapter folder's base, the run's template settings, merge_lora and
infer_dtype; prompts rendered as the chat template renders them, with a system prompt and history."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_tokenizer
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.infer.loading import inference_config, load_for_inference
from tunesmith.infer.prompts import PromptBuilder
from tunesmith.model.generation import decoding_from, generate
from tunesmith.utils.errors import DataError


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory, tiny_model_dir):
    run = tmp_path_factory.mktemp("run")
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config).save_pretrained(run)
    tiny_tokenizer().save_pretrained(run)
    (run / "tunesmith_config.yaml").write_text(
        "template: qwen\ndefault_system: From the run.\nlearning_rate: 0.1\n"
    )
    return run


def test_adapter_folder_loads_on_its_base_with_the_run_settings(adapter_run, tiny_model_dir):
    cfg = inference_config(str(adapter_run), [])
    assert cfg.model.model_name_or_path == str(tiny_model_dir)
    assert cfg.model.adapter_name_or_path == [str(adapter_run)]
    assert (cfg.data.template, cfg.data.default_system) == ("qwen", "From the run.")
    assert inference_config(str(adapter_run), ["template=chatml"]).data.template == "chatml"
    loaded = load_for_inference(cfg)
    assert (
        isinstance(loaded.model, PeftModel) and not loaded.model.training and loaded.name == adapter_run.name
    )
    assert loaded.model.get_base_model().config.use_cache
    merged = load_for_inference(inference_config(str(adapter_run), ["merge_lora=true"]))
    assert not isinstance(merged.model, PeftModel)
    answers = [
        generate(m.model, m.tokenizer, [[5, 6, 7, 8]], decoding_from(m.model, m.tokenizer, m.cfg.generation))[
            0
        ]
        for m in (loaded, merged)
    ]
    assert answers[0].token_ids == answers[1].token_ids  # the adapter acts the same attached or merged
    half = load_for_inference(inference_config(str(adapter_run), ["infer_dtype=bf16"]))
    assert half.model.get_base_model().dtype == torch.bfloat16


def test_prompts_match_the_chat_template_with_system_and_history():
    tok = tiny_tokenizer()
    builder = PromptBuilder(load_config(None, ["model_name_or_path=builtin:tiny"]), tok)
    chat = [
        {"role": "user", "content": "Capital of Peru?"},
        {"role": "assistant", "content": "The capital of Peru is Lima."},
        {"role": "user", "content": "And of Chile?"},
    ]
    expected = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *chat], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert builder.chat(chat, "Be brief.") == expected
    assert builder.chat([{"role": "system", "content": "Be brief."}, *chat]) == expected
    with pytest.raises(DataError, match="last message must come from the user"):
        builder.chat(chat[:2])
    with pytest.raises(DataError, match="needs a role"):
        builder.chat([{"role": "robot", "content": "hi"}])


def test_a_quantised_base_loads_for_inference(tiny_model_dir):
    loaded = load_for_inference(inference_config(str(tiny_model_dir), ["quantization_bit=4"]))
    assert loaded.model.is_quantized


@pytest.mark.parametrize("thinking", ["true", "false"])
def test_reasoning_chat_prompt_is_llamafactory_one_turn_encoding(thinking):
    """As LLaMA-Factory's chat (encode_oneturn): earlier answers lose their thoughts and get no empty one; with
    enable_thinking false the prompt ends with an empty thought."""
    tok = tiny_tokenizer()
    cfg = load_config(
        None, ["model_name_or_path=builtin:tiny", "template=qwen3", f"enable_thinking={thinking}"]
    )
    chat = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
        {"role": "user", "content": "Q2"},
    ]
    text = tok.decode(PromptBuilder(cfg, tok).chat(chat))
    history = "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
    tail = "<think>\n\n</think>\n\n" if thinking == "false" else ""
    assert text == history + "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n" + tail

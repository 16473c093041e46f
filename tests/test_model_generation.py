"""The generation core: batched left-padded answers equal one-by-one ones and transformers' own generate, seeds
make sampling reproducible, stop words cut, streaming gives the same text and can be stopped."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model, tiny_tokenizer
from transformers import GenerationConfig

from tunesmith.config import load_config
from tunesmith.model.generation import Decoding, Stream, decoding_from, generate, with_overrides

PROMPTS = [[5, 17, 99, 3], [250, 41, 7, 7, 12, 60, 8], [33]]


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_model(), tiny_tokenizer()
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=tok.pad_token_id)
    return model, tok


def _decoding(model, tok, *overrides: str, seed: int | None = None) -> Decoding:
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "max_new_tokens=12", *overrides])
    return decoding_from(model, tok, cfg.generation, seed)


def test_batched_left_padded_equals_one_by_one_and_transformers(setup):
    model, tok = setup
    decoding = _decoding(model, tok)
    batched = generate(model, tok, PROMPTS, decoding)
    for prompt, out in zip(PROMPTS, batched, strict=True):
        alone = generate(model, tok, [prompt], decoding)[0]
        assert out.token_ids == alone.token_ids and out.prompt_tokens == len(prompt)
        ids = torch.tensor([prompt])
        reference = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
        )
        assert out.token_ids == reference[0, len(prompt) :].tolist()
        assert out.finish_reason == "length" and out.text == tok.decode(
            out.token_ids, skip_special_tokens=True
        )


def test_settings_over_the_model_config_and_seeded_sampling(setup):
    model, tok = setup
    greedy = _decoding(model, tok, "temperature=0", "do_sample=true")
    assert greedy.config.do_sample is False
    sampled = _decoding(model, tok, "do_sample=true", "temperature=1.5", "top_k=0", seed=7)
    assert sampled.config.do_sample and sampled.config.temperature == 1.5
    first = generate(model, tok, PROMPTS, sampled)
    assert [o.token_ids for o in generate(model, tok, PROMPTS, sampled)] == [o.token_ids for o in first]
    other = generate(model, tok, PROMPTS, with_overrides(sampled, seed=8))
    assert [o.token_ids for o in other] != [o.token_ids for o in first]
    beams = generate(model, tok, PROMPTS[:1], _decoding(model, tok, "num_beams=3"))[0]
    assert len(beams.token_ids) == 12


def test_stop_words_cut_the_answer(setup):
    model, tok = setup
    full = generate(model, tok, PROMPTS[:1], _decoding(model, tok))[0]
    word = full.text[len(full.text) // 2 :][:3]
    stopped = generate(model, tok, PROMPTS[:1], with_overrides(_decoding(model, tok), stop_words=[word]))[0]
    assert stopped.text == full.text[: full.text.find(word)] and stopped.finish_reason == "stop"


def test_stream_gives_the_same_text_and_stops_when_asked(setup):
    model, tok = setup
    decoding = _decoding(model, tok)
    stream = Stream(model, tok, PROMPTS[1], decoding)
    assert "".join(stream) == generate(model, tok, [PROMPTS[1]], decoding)[0].text
    assert stream.result.finish_reason == "length"
    long = with_overrides(decoding, max_new_tokens=400)
    stream = Stream(model, tok, PROMPTS[1], long)
    pieces = iter(stream)
    next(pieces)
    stream.stop()
    list(pieces)
    assert stream.result.finish_reason == "stop" and len(stream.result.token_ids) < 400

"""The one generation core (used by predict_with_generate, chat, generate and serve): decoding settings from the
config over the model's generation config, batched left-padded generation (greedy, sampling, beam search) with
stop words and seeds, and token-by-token streaming that can be stopped."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, StoppingCriteria, TextIteratorStreamer


@dataclasses.dataclass(frozen=True)
class Decoding:
    """What to generate: the transformers settings, the stop words and how to decode the answer."""

    config: GenerationConfig
    stop_words: tuple[str, ...] = ()
    skip_special_tokens: bool = True
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class Generated:
    """One answer: its text, its token ids, the prompt length and why it ended (`stop` or `length`)."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str


def decoding_from(
    model: Any, tokenizer: PreTrainedTokenizerBase, gargs: Any, seed: int | None = None
) -> Decoding:
    """The model's generation config with the set decoding arguments of `gargs` (GenerationArguments) on top;
    temperature 0 means greedy."""
    config = copy.deepcopy(getattr(model, "generation_config", None) or GenerationConfig())
    values = {
        "do_sample": gargs.do_sample,
        "temperature": gargs.temperature,
        "top_p": gargs.top_p,
        "top_k": gargs.top_k,
        "num_beams": gargs.num_beams,
        "repetition_penalty": gargs.repetition_penalty,
        "length_penalty": gargs.length_penalty,
    }
    config.update(**{k: v for k, v in values.items() if v is not None}, max_new_tokens=gargs.max_new_tokens)
    return Decoding(
        _sane(config, tokenizer), tuple(gargs.stop_words or ()), bool(gargs.skip_special_tokens), seed
    )


def with_overrides(decoding: Decoding, **values: Any) -> Decoding:
    """A copy of `decoding` with per-request settings (e.g. from an API call); None values are ignored."""
    stop = values.pop("stop_words", None)
    seed = values.pop("seed", None)
    config = copy.deepcopy(decoding.config)
    config.update(**{k: v for k, v in values.items() if v is not None})
    return dataclasses.replace(
        decoding,
        config=_sane(config, None),
        stop_words=decoding.stop_words if stop is None else tuple(stop),
        seed=decoding.seed if seed is None else seed,
    )


def _sane(config: GenerationConfig, tokenizer: PreTrainedTokenizerBase | None) -> GenerationConfig:
    """Greedy when sampling is off or the temperature is 0, without transformers' warnings about unused sampling
    settings; the pad and eos ids filled in from the tokenizer when the config has none."""
    if config.temperature == 0:
        config.do_sample = False
    if not config.do_sample:
        config.temperature, config.top_p, config.top_k = 1.0, 1.0, 50
    if tokenizer is not None:
        if config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
        if config.eos_token_id is None:
            config.eos_token_id = tokenizer.eos_token_id
    config.num_return_sequences = 1
    return config


def generate(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], decoding: Decoding
) -> list[Generated]:
    """Answers for a batch of tokenized prompts (left-padded into one `model.generate` call)."""
    if not prompts:
        return []
    device = _device(model)
    width = max(len(p) for p in prompts)
    pad = decoding.config.pad_token_id if decoding.config.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with _seeded(decoding.seed), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, **_call_kwargs(tokenizer, decoding))
    return [
        _finish(tokenizer, decoding, row[width:].tolist(), len(p))
        for row, p in zip(out, prompts, strict=True)
    ]


def _call_kwargs(tokenizer: PreTrainedTokenizerBase, decoding: Decoding) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"generation_config": decoding.config}
    if decoding.stop_words:
        kwargs.update(stop_strings=list(decoding.stop_words), tokenizer=tokenizer)
    return kwargs


def _finish(tokenizer: PreTrainedTokenizerBase, decoding: Decoding, ids: list[int], prompt: int) -> Generated:
    """Trim padding after the end, decode, cut at the first stop word, and say why the answer ended."""
    eos = _eos_ids(decoding.config)
    end = next((i for i, t in enumerate(ids) if t in eos), None)
    kept = ids[:end] if end is not None else ids
    text = tokenizer.decode(kept, skip_special_tokens=decoding.skip_special_tokens)
    cut, stopped = cut_at_stop(text, decoding.stop_words)
    reason = "stop" if end is not None or stopped else "length"
    return Generated(cut, kept, prompt, reason)


def cut_at_stop(text: str, stop_words: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop word, and whether one was found."""
    hits = [i for i in (text.find(w) for w in stop_words if w) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def _eos_ids(config: GenerationConfig) -> set[int]:
    eos = config.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


class _seeded:
    """Draw the sampling randomness from `seed` (None: the global generator), leaving the global state as it was."""

    def __init__(self, seed: int | None) -> None:
        self.seed, self.fork = seed, None

    def __enter__(self) -> None:
        if self.seed is not None:
            devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            self.fork = torch.random.fork_rng(devices=devices)
            self.fork.__enter__()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        if self.fork is not None:
            self.fork.__exit__(*exc)


class _StopWhenSet(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class Stream:
    """Text pieces of one answer as they are generated (iterate it); `stop()` ends the generation early (e.g. on
    Ctrl-C or a closed connection). Stop words are held back until they can no longer start one, then cut.
    After the iteration, `result` holds the whole answer."""

    def __init__(
        self, model: Any, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[int], decoding: Decoding
    ) -> None:
        self.tokenizer, self.decoding, self.prompt_tokens = tokenizer, decoding, len(prompt)
        self.event = threading.Event()
        self.streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=decoding.skip_special_tokens
        )
        self.result: Generated | None = None
        self._ids: list[int] = []
        ids = torch.tensor([list(prompt)], device=_device(model))
        kwargs = _call_kwargs(tokenizer, decoding) | {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "streamer": self.streamer,
            "stopping_criteria": [_StopWhenSet(self.event)],
        }
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(model, kwargs), daemon=True)
        self.thread.start()

    def _run(self, model: Any, kwargs: dict[str, Any]) -> None:
        try:
            with _seeded(self.decoding.seed), torch.no_grad():
                out = model.generate(**kwargs)
            self._ids = out[0, self.prompt_tokens :].tolist()
        except BaseException as err:  # handed to the reading thread, which raises it
            self.error = err
            self.streamer.end()

    def stop(self) -> None:
        """Ask the generation to end after the current token."""
        self.event.set()

    def __iter__(self) -> Iterator[str]:
        text, sent, longest = "", 0, max((len(w) for w in self.decoding.stop_words), default=0)
        for piece in self.streamer:
            text += piece
            cut, stopped = cut_at_stop(text, self.decoding.stop_words)
            if stopped:
                self.stop()
                text = cut
                break
            safe = len(text) - max(longest - 1, 0)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        self.thread.join()
        if self.error is not None:
            raise self.error
        text, stopped = cut_at_stop(text, self.decoding.stop_words)
        if len(text) > sent:
            yield text[sent:]
        done = _finish(self.tokenizer, self.decoding, self._ids, self.prompt_tokens)
        reason = "stop" if stopped or self.event.is_set() else done.finish_reason
        self.result = Generated(text, done.token_ids, self.prompt_tokens, reason)

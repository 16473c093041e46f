"""`predict_with_generate`: generate an answer for each eval prompt (through the shared generation core,
`tunesmith.model.generation`), write `generated_predictions.jsonl` (prompt, label, prediction) and BLEU-4 /
ROUGE-1/2/L scores (x100, averaged over examples, as LLaMA-Factory reports them).

Text is split into words at spaces and punctuation, with every CJK character its own word. BLEU-4 is sentence
BLEU with NIST geometric smoothing of zero n-gram counts (nltk's method3); ROUGE scores are F1.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig

from tunesmith.model.generation import Decoding, decoding_from, generate, with_overrides
from tunesmith.train.loss import IGNORE_INDEX

_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w+|[^\w\s]", re.UNICODE)
MAX_NEW_TOKENS = 64  # predict_with_generate, unless max_new_tokens is set
PREDICT_BATCH = 8


def words(text: str) -> list[str]:
    """The words BLEU and ROUGE count (CJK characters one by one)."""
    return _WORD.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """Sentence BLEU-4 (0-1) with brevity penalty; zero n-gram matches smoothed as 1 / (2^k * count)."""
    if not hypothesis or not reference:
        return 0.0
    log_sum, k = 0.0, 0
    for n in range(1, 5):
        hyp = _ngrams(hypothesis, n)
        total = sum(hyp.values())
        if total == 0:
            return 0.0
        matches = sum((hyp & _ngrams(reference, n)).values())
        if matches == 0:
            k += 1
            precision = 1.0 / (2**k * total)
        else:
            precision = matches / total
        log_sum += math.log(precision) / 4
    ratio = len(hypothesis) / len(reference)
    penalty = 1.0 if ratio > 1 else math.exp(1 - 1 / ratio)
    return penalty * math.exp(log_sum)


def _f1(overlap: int, hyp: int, ref: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / hyp, overlap / ref
    return 2 * precision * recall / (precision + recall)


def rouge_n(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> float:
    """ROUGE-N F1 (0-1)."""
    hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
    return _f1(sum((hyp & ref).values()), sum(hyp.values()), sum(ref.values()))


def rouge_l(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1 (0-1) from the longest common subsequence."""
    previous = [0] * (len(reference) + 1)
    for h in hypothesis:
        current = [0]
        for j, r in enumerate(reference):
            current.append(previous[j] + 1 if h == r else max(previous[j + 1], current[j]))
        previous = current
    return _f1(previous[-1], len(hypothesis), len(reference))


def scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Average BLEU-4 and ROUGE-1/2/L over the examples, x100."""
    rows = [(words(p), words(lab)) for p, lab in zip(predictions, labels, strict=True)]
    metrics = {
        "bleu-4": [bleu4(h, r) for h, r in rows],
        "rouge-1": [rouge_n(h, r, 1) for h, r in rows],
        "rouge-2": [rouge_n(h, r, 2) for h, r in rows],
        "rouge-l": [rouge_l(h, r) for h, r in rows],
    }
    return {k: round(100 * sum(v) / max(len(v), 1), 4) for k, v in metrics.items()}


def split_example(row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Prompt ids (before the first supervised token) and label ids (the supervised tokens)."""
    ids, labels = list(row["input_ids"]), list(row["labels"])
    start = next((i for i, lab in enumerate(labels) if lab != IGNORE_INDEX), len(ids))
    return ids[:start], [lab for lab in labels[start:] if lab != IGNORE_INDEX]


def predict(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | Path,
    num_beams: int = 1,
    max_new_tokens: int = MAX_NEW_TOKENS,
    decoding: Decoding | None = None,
) -> dict[str, float]:
    """Generate for each row's prompt through the shared generation core (`decoding`, default greedy or beam
    search with `num_beams`), in left-padded batches; write the predictions and the scores."""
    if decoding is None:
        config = GenerationConfig(
            do_sample=False,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        decoding = Decoding(config)
    was_training = model.training
    model.eval()
    pairs = [split_example(row) for row in rows]
    try:
        answers = [
            out
            for start in range(0, len(pairs), PREDICT_BATCH)
            for out in generate(
                model, tokenizer, [p for p, _ in pairs[start : start + PREDICT_BATCH]], decoding
            )
        ]
    finally:
        model.train(was_training)
    records = [
        {
            "prompt": tokenizer.decode(prompt, skip_special_tokens=False),
            "label": tokenizer.decode(label, skip_special_tokens=True),
            "prediction": out.text,
        }
        for (prompt, label), out in zip(pairs, answers, strict=True)
    ]
    return write_predictions(records, output_dir)


def prediction_decoding(model: torch.nn.Module, tokenizer: Any, cfg: Any) -> Decoding:
    """The decoding of predict_with_generate: the generation arguments, `eval_num_beams` when set, and at most
    MAX_NEW_TOKENS new tokens unless `max_new_tokens` is set."""
    decoding = decoding_from(model, tokenizer, cfg.generation, int(cfg.train.seed))
    if not cfg.is_set("max_new_tokens"):
        decoding = with_overrides(decoding, max_new_tokens=MAX_NEW_TOKENS)
    return with_overrides(decoding, num_beams=cfg.data.eval_num_beams)


def write_predictions(records: list[dict[str, str]], output_dir: str | Path) -> dict[str, float]:
    """`generated_predictions.jsonl` and `predict_results.json` (the `predict_*` scores) in `output_dir`."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (folder / "generated_predictions.jsonl").write_text(lines, encoding="utf-8")
    result = {
        f"predict_{k}": v
        for k, v in scores([r["prediction"] for r in records], [r["label"] for r in records]).items()
    }
    (folder / "predict_results.json").write_text(json.dumps(result, indent=2))
    return result

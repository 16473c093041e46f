"""The corpus runner's tables: per source (trained / refused with the keys / crashed) and per config."""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path

from compat.outcome import Outcome

HEADER = """# Compatibility: the peers' own example configs

`compat/corpus/` holds {total} real configs taken from the peers' repositories (LLaMA-Factory v0 and v1
examples, ms-swift's example scripts, TRL and transformers command lines and YAMLs, MindSpeed-LLM FSDP2
YAMLs and command lines; `compat/corpus/SOURCES.tsv` gives the repository, path and commit of each).
`make compat` runs each through the real `tunesmith` command line ({mode}) after rewriting only the model
(`builtin:tiny`; a tiny random model of the architecture a MindSpeed `model_id` names; a copy of the tiny
tokenizer with the special tokens the config's chat template writes, such as llama3's `<|eot_id|>`: the
template stays as written), the data (small local files of the format the config reads, a local
`dataset_info.json` for the dataset names it uses), the output folder, `max_steps: 2` and the cutoff length (128,
where the config sets one); notes in the table say where something else was neutralised (no network, 2 CPU
cores, one node).
A command line runs as the tunesmith command that stands for the peer's: `swift sft|pt|rlhf` ->
`tunesmith sft|pt|rlhf`, `trl sft` / `python sft.py` -> `tunesmith sft`, other TRL trainers ->
`tunesmith train --stage <trainer>`, `run_clm.py` -> `tunesmith pt`, MindSpeed's `train_fsdp2.py FILE` and
LLaMA-Factory's `llamafactory-cli train FILE` -> `tunesmith train FILE` (`export` / `chat` for the merge and
inference examples).

Outcomes: **{ok}** (exit 0{ok_note}), **ran** (an `export` / `chat` example, or an evaluation-only config, that exits 0 with its output), **refused** (non-zero exit with a one-line error; the key it names is
listed), **crash** (a traceback, a timeout, or an exit without a one-line error: each is a bug); **skipped**:
`export` / `chat` examples, which only the subprocess mode runs.
Measured {date}.

Refreshing: `compat/gather.py` re-reads the peers' git mirrors into the corpus (`compat/corpus/MANUAL.tsv` lists
the files written by hand); `scripts/extract_surfaces.py` re-extracts the argument surfaces that
`scripts/surface_coverage.py` and `tests/test_compat_surfaces.py` measure; `tests/test_compat_corpus.py` plans every
corpus entry in the test suite and trains three of them.
"""


def per_source(outcomes: list[Outcome]) -> dict[str, Counter]:
    table: dict[str, Counter] = {}
    for o in outcomes:
        table.setdefault(o.source, Counter())[o.status] += 1
    return table


def format_summary(outcomes: list[Outcome]) -> str:
    """A Markdown table per source: configs, trained (or resolved), refused, crash, pass rate."""
    ok = "resolved" if any(o.status == "resolved" for o in outcomes) else "trained"
    table = per_source(outcomes)
    table["**all**"] = sum(table.values(), Counter())
    passed = [ok] + (["ran"] if table["**all**"]["ran"] else [])  # export / chat examples that exit 0
    columns = [*passed, "refused", "crash"] + (["skipped"] if table["**all**"]["skipped"] else [])
    lines = [
        f"| source | configs | {' | '.join(columns)} | {' + '.join(passed)} share |",
        "| --- | ---: | " + "---: | " * len(columns) + "---: |",
    ]
    for source, counts in table.items():
        total = sum(counts.values())
        cells = " | ".join(str(counts[c]) for c in columns)
        share = sum(counts[c] for c in passed) / max(total, 1)
        lines.append(f"| {source} | {total} | {cells} | {share:.0%} |")
    return "\n".join(lines)


def refusal_keys(outcomes: list[Outcome]) -> str:
    """Per source, the keys refusals name, most frequent first."""
    lines = []
    for source in dict.fromkeys(o.source for o in outcomes):
        keys = Counter(
            o.key or "(no key named)" for o in outcomes if o.source == source and o.status == "refused"
        )
        if keys:
            lines.append(f"- **{source}**: " + ", ".join(f"`{k}` ({n})" for k, n in keys.most_common()))
    return "\n".join(lines) or "- none"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def per_config(outcomes: list[Outcome]) -> str:
    lines = ["| config | outcome | key | message | notes |", "| --- | --- | --- | --- | --- |"]
    for o in outcomes:
        message = _cell(o.message[:200])
        notes = _cell("; ".join(o.notes))
        lines.append(f"| `{o.entry}` | {o.status} | {_cell(o.key)} | {message} | {notes} |")
    return "\n".join(lines)


def write_docs(path: Path, outcomes: list[Outcome], plan_only: bool, in_process: bool = False) -> None:
    ok = "resolved" if plan_only else "trained"
    mode = "2 training steps each"
    if plan_only:
        mode = (
            "`tunesmith plan --no-data` in one process: --plan-only --in-process"
            if in_process
            else "`tunesmith plan`"
        )
    header = HEADER.format(
        total=len(outcomes),
        mode=mode,
        ok=ok,
        ok_note="" if plan_only else ", the output folder has trainer_state.json",
        date=datetime.date.today().isoformat(),
    )
    crashes = [o for o in outcomes if o.status == "crash"]
    body = [
        header,
        "## Per source\n",
        format_summary(outcomes),
        "\n## Keys named by the refusals\n",
        refusal_keys(outcomes),
        "\n## Crashes\n",
        "\n".join(f"- `{o.entry}`: {_cell(o.message)}" for o in crashes) or "- none",
        "\n## Per config\n",
        per_config(outcomes),
    ]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")

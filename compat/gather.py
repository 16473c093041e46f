"""Gather the corpus of real configs from the peers' own repositories into compat/corpus/<source>/.

Files are kept as written; from shell scripts only the training command line is kept (with the simple variable
assignments above it), in a `.cmd` file. compat/corpus/SOURCES.tsv records file, repo, path and commit of each.
Files a config refers to by a repository path (DeepSpeed JSON, accelerate configs, LF v1 dataset YAMLs) are kept
under compat/corpus/<source>/_support/<path in the repo>; the runner puts them in each run's working folder.

Usage: .venv/bin/python compat/gather.py [--mirrors /work/.mirror]   (git mirrors made by the `fetch` tool)
Command lines from the transformers repository (too large to mirror) are written by hand in compat/corpus/hf_trl
and recorded in compat/corpus/MANUAL.tsv, which this script merges into SOURCES.tsv.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
REPOS = {
    "lf": "hiyouga/LLaMA-Factory",
    "swift": "modelscope/ms-swift",
    "trl": "huggingface/trl",
    "mindspeed": "Ascend/MindSpeed-LLM",
}
SWIFT_CAP, SWIFT_CAPS = 2, {"multi-node": 1}
LF_CAPS = {"ascend": 2, "ktransformers": 2, "inference": 2, "merge_lora": 2}  # near-identical variants
MINDSPEED_SKIP = (
    "pretrain_qwen3_14b",
    "pretrain_qwen3_32b",
    "pretrain_qwen3_8b_4k_fsdp2_A3",
    "qwen3_235b",
    "30b_4k_fsdp2_A5",
)
SWIFT_ONE_PER_SUBDIR = (
    "rlhf",
    "tuners",
)  # one script per method folder: examples/train/rlhf/kto.sh, tuners/dora/
TRAIN_LINE = {
    "swift": re.compile(r"(^|\s)swift\s+(sft|pt|rlhf)\s"),
    "mindspeed": re.compile(r"(^|\s)torchrun\s.*train_fsdp2\.py\s"),
    "trl": re.compile(r"^\s*(python|accelerate launch|trl)\s"),
}
ASSIGNMENT = re.compile(r"""^[A-Za-z_]\w*=([^\s"']*|"[^"]*"|'[^']*')$""")
MINDSPEED_CMDS = (
    "examples/fsdp2/qwen3/tune_qwen3_8b_4k_fsdp2_A2.sh",
    "examples/fsdp2/qwen3/pretrain_qwen3_8b_4k_fsdp2_A2.sh",
    "examples/fsdp2/gpt_oss/tune_gpt_oss_20b_varlen_fsdp2_A3.sh",
    "examples/fsdp2/qwen3_next/tune_qwen3_next_16k_fsdp2_A3.sh",
)
TRL_SCRIPTS = (
    "trl/scripts/sft.py",
    "trl/scripts/dpo.py",
    "trl/scripts/kto.py",
    "trl/scripts/reward.py",
    "trl/scripts/grpo.py",
    "trl/scripts/rloo.py",
    "examples/scripts/reward_modeling.py",
    "examples/scripts/cpo.py",
    "examples/scripts/bco.py",
    "examples/scripts/orpo.py",
    "examples/scripts/prm.py",
    "examples/scripts/gkd.py",
    "examples/scripts/online_dpo.py",
    "examples/scripts/ppo/ppo.py",
    "examples/scripts/sft_vlm.py",
)


@dataclass
class Repo:
    name: str
    git_dir: Path

    def git(self, *args: str) -> str:
        cmd = ["git", f"--git-dir={self.git_dir}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    @property
    def commit(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def files(self, under: str) -> list[str]:
        return sorted(self.git("ls-tree", "-r", "--name-only", "HEAD", under).split())

    def show(self, path: str) -> str:
        return self.git("show", f"HEAD:{path}")


class Writer:
    """Writes corpus files and remembers their provenance rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def put(self, source: str, name: str, text: str, repo: Repo, path: str) -> None:
        target = CORPUS / source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if not name.startswith("_support/"):
            self.rows.append((f"{source}/{name}", repo.name, path, repo.commit))

    def support(self, source: str, repo: Repo, path: str) -> None:
        self.put(source, f"_support/{path}", repo.show(path), repo, path)


def flat_name(path: str, strip: str) -> str:
    return path.removeprefix(strip).replace("/", "__")


def gather_lf(repo: Repo, out: Writer) -> None:
    skip = (
        "examples/accelerate/",
        "examples/v1/",
        "examples/ktransformers/accelerate/",
        "examples/extras/multi_tokens/",
    )
    taken: dict[str, int] = defaultdict(int)
    for path in repo.files("examples"):
        folder = path.split("/")[1]
        if path.endswith(".yaml") and not path.startswith(skip) and taken[folder] < LF_CAPS.get(folder, 999):
            taken[folder] += 1
            out.put("lf_v0", flat_name(path, "examples/"), repo.show(path), repo, path)
        elif path.startswith(
            ("examples/deepspeed/", "examples/accelerate/", "examples/ktransformers/accelerate/")
        ):
            out.support("lf_v0", repo, path)
    for path in repo.files("examples/v1"):
        out.put("lf_v1", flat_name(path, "examples/v1/"), repo.show(path), repo, path)
    for path in repo.files("data"):
        if path.endswith(".yaml"):  # v1 dataset descriptions (train_dataset: data/v1_sft_demo.yaml)
            out.support("lf_v1", repo, path)
    for path in repo.files("examples/deepspeed"):
        out.support("lf_v1", repo, path)


def logical_lines(text: str) -> list[list[str]]:
    """Group physical lines into shell commands joined by trailing backslashes."""
    groups, current = [], []
    for line in text.splitlines():
        current.append(line)
        if not line.rstrip().endswith("\\"):
            groups.append(current)
            current = []
    return groups + ([current] if current else [])


def command_lines(text: str, pattern: re.Pattern) -> list[str]:
    """Each training command of a script, as written, with the simple assignments before it; pipes cut off."""
    out, assignments = [], []
    for group in logical_lines(text):
        joined = " ".join(line.rstrip("\\").strip() for line in group)
        if ASSIGNMENT.match(joined.strip()):
            assignments.append(group[0].strip())
        elif pattern.search(joined) and not joined.lstrip().startswith("#"):
            lines = [re.sub(r"\s*\|\s*tee\s.*$", "", line) for line in group]
            out.append("\n".join(assignments + lines).rstrip().rstrip("\\").rstrip() + "\n")
    return out


def gather_swift(repo: Repo, out: Writer) -> None:
    per_group: dict[str, int] = defaultdict(int)
    for path in repo.files("examples/train"):
        if not path.endswith(".sh"):
            continue
        parts = path.split("/")
        group = parts[2] if len(parts) > 3 else "top"
        if group in SWIFT_ONE_PER_SUBDIR:
            group, cap = "/".join(parts[2:4]).removesuffix(".sh"), 1
        else:
            cap = SWIFT_CAPS.get(group, SWIFT_CAP)
        if per_group[group] >= cap:
            continue
        commands = command_lines(repo.show(path), TRAIN_LINE["swift"])
        if not commands:
            continue
        per_group[group] += 1
        stem = flat_name(path, "examples/train/").removesuffix(".sh")
        for i, cmd in enumerate(commands):
            name = f"{stem}.cmd" if len(commands) == 1 else f"{stem}__{i + 1}.cmd"
            out.put("swift", name, cmd, repo, path)


def gather_mindspeed(repo: Repo, out: Writer) -> None:
    for path in repo.files("examples/fsdp2"):
        if path.endswith(".yaml") and not any(s in path for s in MINDSPEED_SKIP):
            out.put("mindspeed", flat_name(path, "examples/fsdp2/"), repo.show(path), repo, path)
    for path in MINDSPEED_CMDS:
        (cmd,) = command_lines(repo.show(path), TRAIN_LINE["mindspeed"])
        out.put("mindspeed", flat_name(path, "examples/fsdp2/").removesuffix(".sh") + ".cmd", cmd, repo, path)


def docstring_commands(text: str) -> list[str]:
    """The command lines (`python ...`, `accelerate launch ...`) in a script's module docstring."""
    body = ast.parse(text).body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        return []
    source = (
        ast.get_source_segment(text, body[0].value) or ""
    )  # as written: the value has its backslashes eaten
    return command_lines(source, TRAIN_LINE["trl"])


def gather_trl_cli_docs(repo: Repo, out: Writer, path: str = "docs/source/clis.md") -> None:
    """`trl sft|dpo|kto|reward|grpo|rloo ...` lines and the `# <name>.yaml` config blocks of TRL's CLI page."""
    blocks = re.findall(r"```(bash|yaml)\n(.*?)```", repo.show(path), flags=re.S)
    line = re.compile(r"^\s*trl (sft|dpo|kto|reward|grpo|rloo)\s")
    n, seen = 0, defaultdict(int)
    for kind, block in blocks:
        named = re.match(r"# (\w+)\.yaml\n", block)
        if kind == "yaml" and named and not seen[named.group(1)]:  # the first of each: the others add one key
            seen[named.group(1)] += 1
            out.put("hf_trl", f"trl__clis__{named.group(1)}.yaml", block, repo, path)
        for cmd in command_lines(block, line) if kind == "bash" else []:
            if "--config" not in cmd:
                n += 1
                out.put("hf_trl", f"trl__clis__{n}.cmd", cmd, repo, path)


def gather_trl(repo: Repo, out: Writer) -> None:
    for path in TRL_SCRIPTS:
        for i, cmd in enumerate(docstring_commands(repo.show(path))):
            out.put("hf_trl", f"trl__{Path(path).stem}__{i + 1}.cmd", cmd, repo, path)
    gather_trl_cli_docs(repo, out)
    config = "examples/cli_configs/example_config.yaml"
    out.put("hf_trl", "trl__cli_example_config.yaml", repo.show(config), repo, config)
    for path in repo.files("examples/accelerate_configs"):
        out.support("hf_trl", repo, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    args = parser.parse_args(argv)
    repos = {k: Repo(v, args.mirrors / v.replace("/", "+") / "repo") for k, v in REPOS.items()}
    out = Writer()
    gather_lf(repos["lf"], out)
    gather_swift(repos["swift"], out)
    gather_mindspeed(repos["mindspeed"], out)
    gather_trl(repos["trl"], out)
    manual = CORPUS / "MANUAL.tsv"
    rows = out.rows + [tuple(line.split("\t")) for line in manual.read_text().splitlines()[1:] if line]
    lines = ["file\trepo\tpath\tcommit"] + ["\t".join(r) for r in sorted(rows)]
    (CORPUS / "SOURCES.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = defaultdict(int)
    for row in rows:
        counts[row[0].split("/")[0]] += 1
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"(total {len(rows)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

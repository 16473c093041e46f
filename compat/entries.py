"""Corpus entries and how each is launched: the tunesmith command equivalent to the peer's own command."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compat.flags import Flags

CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_PROCS = 2  # the CPU cores here
SOURCES = ("lf_v0", "lf_v1", "swift", "hf_trl", "mindspeed")
ENV_WORD = re.compile(r"^[A-Za-z_]\w*=")
# Peer script (file stem) -> (tunesmith command, stage for `train`). Scripts not listed train with stage=<stem>.
SCRIPTS = {
    "sft": ("sft", None),
    "sft_vlm": ("sft", None),
    "run_clm": ("pt", None),
    "run_clm_no_trainer": ("pt", None),
    "train_fsdp2": ("train", None),
    "reward": ("train", "rm"),
    "reward_modeling": ("train", "rm"),
    "orpo": ("train", "dpo"),
    "cpo": ("train", "cpo"),
}
PREF_LOSS = {"orpo": "orpo"}  # TRL trainers that are a DPO-stage loss here
# TRL trainers the TRL dialect reads (`--dialect trl --stage cpo`: stage dpo, pref_loss cpo*; bco / prm: refused
# with the stage to use)
TRL_STAGES = ("cpo", "bco", "prm")
TRL_COMMANDS = {"sft": ("sft", None), "reward": ("train", "rm")}
LF_COMMANDS = {"merge_lora": "export", "inference": "chat"}  # LF example folder -> llamafactory-cli command


@dataclass
class Entry:
    source: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"


@dataclass
class Invocation:
    """What the runner launches: `tunesmith <command> [config] <flags>` with `env`, and the data style to write."""

    command: str
    style: str  # data layout: lf | swift | trl
    stage: str | None = None  # the training stage the data must fit (sft, pt, dpo, kto, rm, ...)
    config: dict[str, Any] | None = None  # a YAML config to rewrite and write into the run folder
    config_path: str = "config.yaml"  # where, relative to the run folder
    flags: Flags = field(default_factory=Flags)
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_hint: str = ""  # the peer model name, before it was replaced (hints at multimodal data)


def discover(sources: tuple[str, ...] = SOURCES, corpus: Path = CORPUS) -> list[Entry]:
    return [
        Entry(source, path)
        for source in sources
        for path in sorted((corpus / source).iterdir())
        if path.is_file() and path.suffix in (".yaml", ".yml", ".json", ".cmd")
    ]


def invocation(entry: Entry) -> Invocation:
    if entry.path.suffix == ".cmd":
        return _from_command(entry, shell_words(entry.path.read_text(encoding="utf-8")))
    config = yaml.safe_load(entry.path.read_text(encoding="utf-8")) or {}
    if entry.source == "lf_v0":
        command = LF_COMMANDS.get(entry.name.split("__")[0], "train")
        return Invocation(command, "lf", str(config.get("stage", "sft")), config)
    if entry.source == "lf_v1":  # `llamafactory-cli sft|dpo|rm|export FILE` under USE_V1=1
        if "export_dir" in config or "export_dir" in (config.get("peft_config") or {}):
            return Invocation("export", "lf", "sft", config)
        stage = "dpo" if "_dpo" in entry.name else "sft"
        inv = Invocation("train", "lf", stage, config)
        if stage != "sft":
            inv.flags.set("stage", stage)
            inv.notes.append(
                f"`llamafactory-cli {stage} FILE` runs as `tunesmith train FILE --stage {stage}`"
            )
        return inv
    if entry.source == "mindspeed":
        stage = (config.get("training") or {}).get("stage", "sft")
        return Invocation("train", "lf", str(stage), config)
    return _trl_yaml(entry, config)


def _trl_yaml(entry: Entry, config: dict[str, Any]) -> Invocation:
    """`trl <cmd> --config FILE`: the trainer comes from the file's name (dpo_config.yaml ...)."""
    trainer = re.sub(r"^trl__(clis__)?|_config.*$|__\d+\.ya?ml$", "", entry.name).removesuffix(".yaml")
    trainer = "sft" if trainer in ("cli_example", "sft") else trainer
    return _trl(trainer, Invocation("", "trl", config=config), f"trl {trainer} --config FILE")


def _trl(trainer: str, inv: Invocation, how: str) -> Invocation:
    command, stage = TRL_COMMANDS.get(trainer, SCRIPTS.get(trainer, ("train", trainer)))
    inv.command, inv.stage = command, stage or ("pt" if command == "pt" else "sft")
    if command == "train" and stage:
        inv.flags.set("stage", stage)
        dialect = " --dialect trl" if stage in TRL_STAGES else ""
        if dialect:
            inv.flags.set("dialect", "trl")
        loss = f" --pref_loss {PREF_LOSS[trainer]}" if trainer in PREF_LOSS else ""
        if loss:
            inv.flags.set("pref_loss", PREF_LOSS[trainer])
        inv.notes.append(f"`{how}` runs as `tunesmith train{dialect} --stage {stage}{loss}`")
    return inv


def shell_words(text: str) -> list[str]:
    """The words of the file's command after the shell expanded them (variables, `$(...)`), as bash would."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    start = next(i for i, line in enumerate(lines) if not re.match(r"^[A-Za-z_]\w*=\S*$", line.strip()))
    script = "\n".join(
        ["set -f", *lines[:start], "set -- " + "\n".join(lines[start:]), "printf '%s\\0' \"$@\""]
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return [w for w in done.stdout.split("\0") if w]


def _from_command(entry: Entry, words: list[str]) -> Invocation:
    env = {}
    while words and ENV_WORD.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program, rest = words[0], words[1:]
    notes: list[str] = []
    if program == "swift":
        inv = Invocation(rest[0], "swift", flags=Flags.parse(rest[1:]))
        rlhf_type = inv.flags.value("rlhf_type") or "dpo"  # swift rlhf's default
        inv.stage = {"pt": "pt", "rlhf": rlhf_type}.get(rest[0], "sft")
    elif program == "trl":
        inv = _trl(rest[0], Invocation("", "trl", flags=Flags.parse(rest[1:])), f"trl {rest[0]}")
    else:
        script, args, launcher = _script(program, rest)
        flags = Flags.parse(args)
        if launcher.startswith("accelerate launch"):
            _accelerate_launch(Flags.parse(launcher.split()[2:]), flags, notes)
        elif launcher:
            notes.append(f"launcher `{launcher}` dropped (tunesmith starts its own processes)")
        style = "lf" if script == "train_fsdp2" else "trl"
        inv = _trl(script, Invocation("", style, flags=flags), f"python {script}.py")
        if script == "train_fsdp2":
            _mindspeed_config(inv)
    inv.env, inv.notes = env, notes + inv.notes
    _processes(entry, inv)
    return inv


def _accelerate_launch(launcher: Flags, flags: Flags, notes: list[str]) -> None:
    """`accelerate launch --config_file F --num_processes N script.py ...`: tunesmith reads the same launcher
    settings as TRL's CLI passes them (`--accelerate_config F --num_processes N`)."""
    for key, ours in (("config_file", "accelerate_config"), ("num_processes", "num_processes")):
        if launcher.value(key):
            flags.set(ours, launcher.value(key))
    rest = [f.key for f in launcher.items if f.key not in ("config_file", "num_processes")]
    if rest:
        notes.append(f"accelerate launch options dropped: {', '.join(rest)}")


def _processes(entry: Entry, inv: Invocation) -> None:
    """The processes accelerate would start (`--num_processes`, else the accelerate config's), as
    NPROC_PER_NODE capped at the 2 CPU cores (tunesmith reads NPROC_PER_NODE before either)."""
    from tunesmith.config import accelerate_launch

    count = inv.flags.value("num_processes")
    ref = inv.flags.value("accelerate_config")
    if count is None and ref is not None:
        support = CORPUS / entry.source / "_support" / ref
        data = accelerate_launch.read(str(support) if support.is_file() else ref)
        if accelerate_launch.distributed_type(data) != "NO":
            count = str(data.get("num_processes") or 1)
    if count is None or not count.isdigit() or "NPROC_PER_NODE" in inv.env:
        return
    inv.env["NPROC_PER_NODE"] = str(min(int(count), MAX_PROCS))
    if int(count) > MAX_PROCS:
        inv.notes.append(f"accelerate's {count} processes -> NPROC_PER_NODE={MAX_PROCS} (2 CPU cores)")


def _mindspeed_config(inv: Invocation) -> None:
    """MindSpeed's `train_fsdp2.py examples/fsdp2/<model>/<file>.yaml --section.key value ...`: the YAML is in
    the corpus under its flattened name; the runner writes it back at the path the command names."""
    ref = inv.flags.positional.pop(0)
    inv.config_path = ref
    inv.config = yaml.safe_load((CORPUS / "mindspeed" / flat_name(ref)).read_text(encoding="utf-8"))
    inv.stage = str((inv.config.get("training") or {}).get("stage", "sft"))


def flat_name(path: str) -> str:
    return path.removeprefix("examples/fsdp2/").replace("/", "__")


def _script(program: str, rest: list[str]) -> tuple[str, list[str], str]:
    """(script stem, its arguments, the launcher words before it) for python / torchrun / accelerate launch."""
    words = [program, *rest]
    at = next(i for i, w in enumerate(words) if w.endswith(".py"))
    launcher = " ".join(words[:at]) if program != "python" else ""
    return Path(words[at]).stem, words[at + 1 :], launcher

"""The `tunesmith` command: train / sft / pt / plan / args / version / env (and the commands engines add)."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.utils.errors import TunesmithError

USAGE = """usage: tunesmith COMMAND [CONFIG.yaml] [key=value | --key value ...]

commands:
  train CONFIG [overrides]   train (the stage comes from the config, default sft)
  sft [CONFIG] [overrides]   train with stage=sft (accepts an ms-swift style `--model ... --dataset ...` line)
  pt [CONFIG] [overrides]    train with stage=pt (continued pre-training on plain text)
  dpo | kto | rm [CONFIG] [overrides]
                             train with stage=dpo (pairs; pref_loss sigmoid/ipo/orpo/simpo ...), kto, rm
  rlhf --rlhf_type T [CONFIG] [overrides]
                             ms-swift's command: T = dpo, orpo, simpo, kto or rm
  plan CONFIG [--json] [--memory 80GB]
                             resolved config, derived numbers (world size, accumulation, steps, warmup) and
                             estimated peak memory per device with the largest micro batch that fits
  data CONFIG --export F.jsonl [--limit N]
                             process the datasets, write examples (ids, labels, text), print counts and lengths
  export CONFIG_OR_OUTPUT_DIR_OR_CHECKPOINT [--output DIR] [--checkpoint DIR]
                             merge the adapters (or a sharded checkpoint) into a plain HF model (alias: convert)
  chat MODEL_OR_OUTPUT_DIR [--system TEXT]
                             talk to the model in the terminal (/clear, /exit; Ctrl-C stops an answer)
  generate MODEL_OR_OUTPUT_DIR --input F.jsonl|.json|.txt [--output F.jsonl] [--batch-size N]
                             answer every prompt of a file (or of dataset=NAME) into a JSONL file
  serve MODEL_OR_OUTPUT_DIR [api_port=N api_key=KEY]
                             OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models)
  plot OUTPUT_DIR            loss / eval loss / lr PNGs (smoothed like TensorBoard) from trainer_log.jsonl
  board [RUNS_DIR] [--host H --port N --token T]
                             local web page: watch, compare, start and stop the runs under RUNS_DIR (outputs)
  args [--json]              every argument: name, aliases, type, default, help, spec sources
  version                    the tunesmith version
  env                        versions of the libraries and what this machine can use
  COMMAND --help             what COMMAND does and its options

The peers' command names work too: api, deploy (= serve), infer (= chat), webui, web-ui (= board).
"""


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its handler, the flags it takes for itself (not config overrides) and a one-line help."""

    run: Callable[[str | None, list[str], dict[str, Any]], int]
    flags: dict[str, bool]  # flag -> takes a value
    help: str


def split_args(argv: list[str], flags: dict[str, bool]) -> tuple[str | None, list[str], dict[str, Any]]:
    """Separate the config path, the command's own flags and the config overrides."""
    config, overrides, options = None, [], {}
    i = 0
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0]
        if name in flags:
            if flags[name]:
                if "=" in token:
                    options[name] = token.split("=", 1)[1]
                elif i + 1 < len(argv):
                    options[name] = argv[i + 1]
                    i += 1
                else:
                    raise TunesmithError(f"{name} needs a value")
            else:
                options[name] = True
        elif config is None and not overrides and _looks_like_config(token):
            config = token
        else:
            overrides.append(token)
        i += 1
    return config, overrides, options


def _looks_like_config(token: str) -> bool:
    return (
        not token.startswith("-")
        and "=" not in token
        and Path(token).suffix.lower() in (".yaml", ".yml", ".json")
    )


def _load(config: str | None, overrides: list[str], *, user_code: bool = True, hint: str | None = None):
    """Read and validate the config (`hint`: the dialect the command implies); without `user_code` (commands
    that only look) its plugin_modules are not imported."""
    from tunesmith.config import load_config

    if user_code:
        return load_config(config, overrides, hint=hint)
    from tunesmith.config.validate import validate_config

    cfg = load_config(config, overrides, validate=False, hint=hint)
    validate_config(cfg, user_code=False)
    return cfg


def cmd_train(
    config: str | None,
    overrides: list[str],
    options: dict[str, Any],
    stage: str | None = None,
    hint: str | None = None,
) -> int:
    """Load and validate the config, start more processes if asked, then run the stage's recipe."""
    if stage is not None:
        overrides = [*overrides, f"stage={stage}"]
    # validated once, before any process is started or anything loads
    cfg = _load(config, overrides, hint=hint)
    from tunesmith.launcher import relaunch
    from tunesmith.recipes.preflight import preflight

    preflight(cfg)  # what training would refuse, refused here: once, before processes start or weights load

    # the started processes read the config in the dialect this one resolved (the command's hint included)
    code = relaunch(["train", *([config] if config else []), f"dialect={cfg.train.dialect}", *overrides])
    if code is not None:
        return code
    from tunesmith.recipes import run_recipe

    run_recipe(cfg)
    return 0


def cmd_rlhf(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """`tunesmith rlhf --rlhf_type T ...` is ms-swift's rlhf command: its dialect maps rlhf_type (default dpo,
    as in ms-swift) onto the stage and preference loss."""
    return cmd_train(config, ["--rlhf_type", "dpo", *overrides], options, hint="swift")


def cmd_plan(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Print the resolved config and the derived numbers."""
    from tunesmith.planning import describe_plan

    cfg = _load(config, overrides, user_code=False)
    from tunesmith.recipes.preflight import preflight

    preflight(cfg)  # plan refuses what train would refuse
    report = describe_plan(cfg, count_data=not options.get("--no-data"), memory=options.get("--memory"))
    if options.get("--json"):
        print(json.dumps(report, indent=2, default=str))
    else:
        print(_format_plan(report))
    return 0


def _format_plan(report: dict[str, Any]) -> str:
    from tunesmith.plan_memory_config import format_memory

    lines = _format_dialect(report["dialect"]) + ["derived:"]
    lines += [f"  {k}: {v}" for k, v in report["derived"].items()]
    for section, values in report["config"].items():
        lines.append(f"{section}:")
        lines += [f"  {k}: {v!r}" for k, v in values.items() if k in report["set"]]
    lines += format_memory(report["memory"])
    lines.append("(only arguments you set are listed; `--json` shows every value)")
    return "\n".join(lines)


def _format_dialect(dialect: dict[str, Any]) -> list[str]:
    """Which system's dialect the config was read in, how its own keys were taken, and the defaults it brought."""
    lines = [f"dialect: {dialect['name']} ({dialect.get('reason', '')})"]
    lines += [f"  {t['key']} ({t['origin']}): {t['how']}" for t in dialect.get("taken", [])]
    for name, default in dialect.get("defaults", {}).items():
        lines.append(f"  default {name} = {default['value']!r}: {default['why']}")
    return lines


def cmd_args(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """List every argument (name, aliases, type, default, help, sources)."""
    from tunesmith.config.catalog import argument_catalog, format_catalog

    entries = argument_catalog()
    print(json.dumps(entries, indent=2, default=str) if options.get("--json") else format_catalog(entries))
    return 0


def cmd_version(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Print the version."""
    from tunesmith import __version__

    print(f"tunesmith {__version__}")
    return 0


def cmd_env(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Print library versions and the devices this machine offers."""
    from tunesmith.utils.environment import environment_report

    for key, value in environment_report().items():
        print(f"{key}: {value}")
    return 0


def cmd_data(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Process the datasets of the config; with --export, write the examples and print counts and lengths."""
    from tunesmith.data.export import export_processed, format_summary
    from tunesmith.model.tokenizer import load_tokenizer

    cfg = _load(config, overrides, user_code=False)
    path = options.get("--export") or "processed.jsonl"
    limit = int(options["--limit"]) if options.get("--limit") else None
    summary = export_processed(cfg, load_tokenizer(cfg), path, limit)
    print(format_summary(summary, path))
    return 0


def cmd_plot(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Write the loss / eval loss / lr plots of a run's output_dir and print their paths."""
    from tunesmith.report.plot import plot_run

    targets = [config] if config else overrides
    if len(targets) != 1:
        raise TunesmithError("plot needs exactly one argument: the OUTPUT_DIR of a run")
    for path in plot_run(targets[0]):
        print(f"wrote {path}")
    return 0


def cmd_board(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """`tunesmith board [RUNS_DIR]`: a local web page to watch, compare, start and stop the runs under RUNS_DIR
    (default `outputs`), on 127.0.0.1:7870 unless --host/--port say otherwise (a token beyond loopback)."""
    from tunesmith.board.server import DEFAULT_HOST, DEFAULT_PORT, serve

    targets = [config] if config else overrides
    if len(targets) > 1:
        raise TunesmithError("board takes one RUNS_DIR (the folder holding the runs' output_dirs)")
    port = options.get("--port", str(DEFAULT_PORT))
    if not port.isdigit():
        raise TunesmithError(f"board: --port {port!r} is not a port number")
    serve(
        targets[0] if targets else "outputs",
        options.get("--host", DEFAULT_HOST),
        int(port),
        options.get("--token"),
    )
    return 0


def _infer(name: str) -> Callable[[str | None, list[str], dict[str, Any]], int]:
    """A runner of tunesmith.infer.commands, imported only when the command runs."""

    def run(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
        from tunesmith.infer import commands

        return getattr(commands, name)(config, overrides, options)

    return run


def _infer_flags(command: str) -> dict[str, bool]:
    from tunesmith.infer.commands import FLAGS

    return FLAGS[command]


COMMANDS: dict[str, Command] = {
    "train": Command(cmd_train, {}, "train"),
    "sft": Command(lambda c, o, p: cmd_train(c, o, p, stage="sft"), {}, "train with stage=sft"),
    "pt": Command(lambda c, o, p: cmd_train(c, o, p, stage="pt"), {}, "train with stage=pt"),
    "dpo": Command(lambda c, o, p: cmd_train(c, o, p, stage="dpo"), {}, "train with stage=dpo"),
    "kto": Command(lambda c, o, p: cmd_train(c, o, p, stage="kto"), {}, "train with stage=kto"),
    "rm": Command(lambda c, o, p: cmd_train(c, o, p, stage="rm"), {}, "train a reward model (stage=rm)"),
    "rlhf": Command(cmd_rlhf, {}, "ms-swift's rlhf command (--rlhf_type dpo|orpo|simpo|kto|rm)"),
    "export": Command(_infer("run_export"), _infer_flags("export"), "merge / convert into a plain HF model"),
    "convert": Command(_infer("run_export"), _infer_flags("export"), "alias of export"),
    "chat": Command(_infer("run_chat"), _infer_flags("chat"), "terminal chat"),
    "generate": Command(_infer("run_generate"), _infer_flags("generate"), "answers for a file of prompts"),
    "serve": Command(_infer("run_serve"), _infer_flags("serve"), "OpenAI-compatible server"),
    "data": Command(cmd_data, {"--export": True, "--limit": True}, "process and export the datasets"),
    "plan": Command(
        cmd_plan, {"--json": False, "--no-data": False, "--memory": True}, "derived numbers, memory"
    ),
    "plot": Command(cmd_plot, {}, "plot a run's trainer_log.jsonl"),
    "board": Command(cmd_board, {"--host": True, "--port": True, "--token": True}, "web page for runs"),
    "args": Command(cmd_args, {"--json": False}, "list arguments"),
    "version": Command(cmd_version, {}, "version"),
    "env": Command(cmd_env, {}, "environment"),
}

# The peers' names for the same commands: LLaMA-Factory's `llamafactory-cli api|webui`, ms-swift's
# `swift infer|deploy|web-ui`.
COMMAND_ALIASES = {"api": "serve", "deploy": "serve", "infer": "chat", "webui": "board", "web-ui": "board"}
COMMANDS.update({alias: COMMANDS[name] for alias, name in COMMAND_ALIASES.items()})


def command_help(name: str, command: Command) -> str:
    """`tunesmith NAME --help`: what the command does, its own flags, and how to pass config arguments."""
    doc = " ".join((command.run.__doc__ or command.help).split())
    lines = [f"usage: tunesmith {name} [CONFIG.yaml] [key=value | --key value ...]", "", doc]
    if command.flags:
        lines += ["", "options:"]
        lines += [f"  {flag}{' VALUE' if takes else ''}" for flag, takes in command.flags.items()]
    lines += [
        "",
        "Any argument can follow as key=value or --key value (ms-swift, LLaMA-Factory, TRL and HF names too);",
        "`tunesmith args` lists them all, `tunesmith plan CONFIG` shows how a config is read.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tunesmith` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"tunesmith: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    if any(token in ("-h", "--help") for token in argv[1:]):
        print(command_help(argv[0], command))
        return 0
    logging.basicConfig(level=logging.INFO, format="[tunesmith] %(message)s")
    from tunesmith import torchrun
    from tunesmith.report.secrets import secret_values
    from tunesmith.utils.logging import add_redaction, redact_message

    add_redaction([])  # URL credentials never reach a log line
    try:
        config, overrides, options = split_args(argv[1:], command.flags)
        return command.run(config, overrides, options)
    except TunesmithError as exc:
        from tunesmith.utils import dist_env

        if dist_env.rank() == 0:  # under torchrun every rank reads the config: the error is printed once
            print(f"tunesmith: error: {redact_message(str(exc), secret_values())}", file=sys.stderr)
            torchrun.report_failure()
        return 2
    except Exception:
        if torchrun.peer_failed():  # rank 0 stopped on a one-line error; this rank only lost its peer
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

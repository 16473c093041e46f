"""The `export` (alias `convert`), `chat`, `generate` and `serve` commands: what they read from the command line
and which infer module runs them (imported when the command runs, so `tunesmith --help` stays fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.utils.errors import TunesmithError

FLAGS = {
    "export": {"--checkpoint": True, "--dcp": True, "--output": True},
    "chat": {"--system": True},
    "generate": {"--input": True, "--output": True, "--batch-size": True},
    "serve": {},
}


def split_target(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """The model to use (a config file, output_dir, model folder or builtin:NAME) and the remaining overrides."""
    if config is None and overrides and "=" not in overrides[0] and not overrides[0].startswith("-"):
        return overrides[0], overrides[1:]
    return config, overrides


def run_export(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Merge the adapters (or convert a sharded checkpoint) into a plain model folder."""
    from tunesmith.infer.export import export_model
    from tunesmith.infer.loading import inference_config

    target, overrides = split_target(config, overrides)
    checkpoint = options.get("--checkpoint") or options.get("--dcp")
    if target is not None and _is_sharded_checkpoint(Path(target)):
        target, checkpoint = _checkpoint_base(Path(target)), target
    if options.get("--output"):
        overrides = [*overrides, f"export_dir={options['--output']}"]
    path = export_model(inference_config(target, overrides), checkpoint=checkpoint)
    print(f"wrote {path}")
    return 0


def _checkpoint_base(checkpoint: Path) -> str:
    """The model a checkpoint's weights go into: its run's exported model, else the model the run started from."""
    from tunesmith.infer.loading import run_base_model

    run = checkpoint.parent
    if (run / "config.json").is_file():
        return str(run)
    return run_base_model(run) or str(run)


def _is_sharded_checkpoint(folder: Path) -> bool:
    """A run's `checkpoint-<step>` folder of a torch distributed or DeepSpeed run."""
    return (folder / "dcp").is_dir() or (folder / "deepspeed").is_dir()


def run_chat(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Talk to the model in the terminal."""
    from tunesmith.infer.chat import run_chat as chat
    from tunesmith.infer.loading import inference_config, load_for_inference

    cfg = inference_config(*split_target(config, overrides))
    chat(load_for_inference(cfg), system=options.get("--system") or cfg.data.default_system or "")
    return 0


def run_generate(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Answer the prompts of --input (or of the config's datasets) into the JSONL file --output."""
    from tunesmith.infer.generate import dataset_prompts, file_prompts, generate_file
    from tunesmith.infer.loading import inference_config, load_for_inference
    from tunesmith.infer.prompts import PromptBuilder

    output = options.get("--output") or "generated.jsonl"
    cfg = inference_config(*split_target(config, overrides))
    if not options.get("--input") and not cfg.data.dataset:
        raise TunesmithError(
            "generate: give --input FILE, or dataset=NAME (a dataset of dataset_dir's registry)"
        )
    loaded = load_for_inference(cfg)
    if options.get("--input"):
        prompts = file_prompts(PromptBuilder(cfg, loaded.tokenizer), options["--input"])
    else:
        prompts = dataset_prompts(loaded)
    batch = _positive_int(options.get("--batch-size"), cfg.train.per_device_eval_batch_size)
    stats = generate_file(loaded, prompts, output, batch)
    print(
        f"wrote {output}: {stats['prompts']} answers, {stats['tokens']} tokens in {stats['seconds']:.1f} s "
        f"({stats['tokens_per_second']:.1f} tokens/s)"
    )
    return 0


def run_serve(config: str | None, overrides: list[str], options: dict[str, Any]) -> int:
    """Serve the model over an OpenAI-compatible HTTP API until interrupted."""
    from tunesmith.infer.loading import inference_config, load_for_inference
    from tunesmith.infer.server import serve

    serve(load_for_inference(inference_config(*split_target(config, overrides))))
    return 0


def _positive_int(value: str | None, default: int) -> int:
    if value is None:
        return int(default)
    if not value.isdigit() or int(value) < 1:
        raise TunesmithError(f"--batch-size: {value!r} must be a positive whole number")
    return int(value)

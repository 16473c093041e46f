"""The evaluation, checkpointing, logging, reporting and hub fields of TrainingArguments (a base dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config.fields import arg

INTERVALS = ("no", "steps", "epoch")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "passive")
REPORTERS = ("all", "none", "tensorboard", "wandb", "swanlab", "mlflow")


@dataclass
class EvalSaveLogArguments:
    """When to evaluate, save and log, and where results are reported."""

    # --- evaluation -----------------------------------------------------------------------------------------------
    eval_strategy: str = arg(
        "no",
        "When to evaluate: no, every eval_steps steps, or at each epoch end.",
        aliases=("evaluation_strategy",),
        choices=INTERVALS,
        sources="001",
    )
    eval_steps: int | float | None = arg(
        None,
        "Steps between evaluations (a value below 1 is a fraction of the total steps); unset uses logging_steps.",
        minimum=0,
        exclusive_minimum=True,
        sources="001,004",
    )
    eval_delay: float | None = arg(
        None,
        "Epochs or steps (per eval_strategy) to wait before the first evaluation.",
        minimum=0,
        sources="001",
    )
    eval_on_start: bool = arg(False, "Evaluate once before training (a sanity check).", sources="001")
    eval_accumulation_steps: int | None = arg(
        None,
        "Evaluation steps whose outputs are gathered before moving them to the CPU.",
        minimum=1,
        sources="001",
    )
    eval_do_concat_batches: bool = arg(
        True,
        "Concatenate predictions across evaluation batches (false keeps a list per batch).",
        sources="001",
    )
    eval_use_gather_object: bool = arg(
        False, "Gather nested Python objects from all ranks during evaluation.", sources="001"
    )
    compute_metrics: str | None = arg(
        None,
        "Your metrics function as 'module:function'; it gets predicted token ids, labels (and include_for_metrics).",
    )
    prediction_loss_only: bool = arg(
        False, "Evaluation returns only the loss (no predictions).", sources="001"
    )
    batch_eval_metrics: bool = arg(
        False, "Accumulate metrics batch by batch instead of over all predictions at once.", sources="001"
    )
    include_for_metrics: list[str] = arg(
        help="Extra data passed to metric computation: inputs and/or loss.",
        factory=list,
        choices=("inputs", "loss"),
        sources="001",
    )
    predict_with_generate: bool = arg(False, "Evaluate by generating text (for generation metrics).")
    load_best_model_at_end: bool = arg(
        False, "At the end, load the checkpoint with the best metric_for_best_model.", sources="001,002"
    )
    metric_for_best_model: str | None = arg(
        None,
        "Metric that ranks checkpoints (e.g. eval_loss) for the best model and early stopping.",
        sources="001",
    )
    greater_is_better: bool | None = arg(
        None,
        "Whether a larger metric_for_best_model is better; unset: false for losses, true otherwise.",
        sources="001",
    )
    early_stopping_patience: int | None = arg(
        None, "Stop after this many evaluations without improvement of metric_for_best_model.", minimum=1
    )
    early_stopping_threshold: float = arg(
        0.0, "Minimum improvement of metric_for_best_model that resets early-stopping patience.", minimum=0
    )

    # --- checkpoints ----------------------------------------------------------------------------------------------
    save_strategy: str = arg(
        "steps",
        "When to save a checkpoint: no, every save_steps steps, each epoch end, or on a new best metric.",
        choices=(*INTERVALS, "best"),
        sources="001,002",
    )
    save_steps: int | float = arg(
        500,
        "Steps between checkpoints (a value below 1 is a fraction of the total steps).",
        aliases=("save_interval",),
        minimum=0,
        exclusive_minimum=True,
        sources="001,002,003,004",
    )
    save_epochs: int = arg(1, "MindSpeed: epochs between checkpoints.", minimum=1, sources="003")
    save_total_limit: int | None = arg(
        None,
        "Keep at most this many checkpoints, deleting the oldest; unset keeps all.",
        minimum=1,
        sources="001,002,003,004",
        default_note="HF keeps all checkpoints (None); MindSpeed keeps 3.",
    )
    save_only_model: bool = arg(
        False,
        "Checkpoints hold only the model (no optimizer, scheduler, RNG): they cannot resume.",
        sources="001,003",
    )
    save_safetensors: bool = arg(
        True, "Save weights as safetensors (false: pytorch .bin).", sources="001,002"
    )
    save_on_each_node: bool = arg(
        False, "Multi-node: save on every node, not only the main one.", sources="001"
    )
    save_async: bool = arg(
        False, "Write checkpoints in the background while training continues.", sources="003"
    )
    save_hf_weights: bool = arg(
        True,
        "At the end, save the model in Hugging Face format (loadable by transformers/peft).",
        sources="003",
    )
    overwrite_output_dir: bool = arg(
        False,
        "Allow writing into a non-empty output_dir (otherwise refused, or resumed when asked).",
        sources="001,002",
    )
    resume_from_checkpoint: str | None = arg(
        None,
        "Checkpoint directory to resume training from (model, optimizer, scheduler, RNG, data position).",
        sources="001,002,003",
    )
    ignore_data_skip: bool = arg(
        False,
        "On resume, do not fast-forward the data loader to where the checkpoint stopped.",
        sources="001",
    )
    restore_callback_states_from_checkpoint: bool = arg(
        False, "On resume, restore the state of callbacks (e.g. early stopping).", sources="001"
    )
    keep_checkpoint_hparams: bool = arg(
        False,
        "On resume, keep the checkpoint's learning rate and optimizer settings where the config's differ (else "
        "such a change is an error).",
    )

    # --- logging --------------------------------------------------------------------------------------------------
    logging_strategy: str = arg(
        "steps",
        "When to log: no, every logging_steps steps, or each epoch end.",
        choices=INTERVALS,
        sources="001,002",
    )
    logging_steps: int | float = arg(
        500,
        "Steps between log lines (a value below 1 is a fraction of the total steps).",
        aliases=("log_interval",),
        minimum=0,
        exclusive_minimum=True,
        sources="001,002,003,004",
        default_note="HF logs every 500 steps; MindSpeed every step.",
    )
    logging_first_step: bool = arg(False, "Also log the first step.", sources="001,002")
    logging_nan_inf_filter: bool = arg(
        True, "Leave NaN/Inf losses out of the logged average (training continues).", sources="001"
    )
    logging_dir: str | None = arg(
        None, "TensorBoard directory; unset uses output_dir/runs.", sources="001,002"
    )
    log_level: str = arg(
        "passive",
        "Log level of the main process; passive keeps the library default.",
        choices=LOG_LEVELS,
        sources="001",
    )
    log_level_replica: str = arg(
        "warning", "Log level of the other processes.", choices=LOG_LEVELS, sources="001"
    )
    log_on_each_node: bool = arg(
        True, "Multi-node: log on each node's main process, not only the first.", sources="001"
    )
    disable_tqdm: bool | None = arg(
        None, "Hide progress bars; unset shows them on the main process.", sources="001"
    )
    skip_memory_metrics: bool = arg(True, "Do not add memory usage to the logged metrics.", sources="001")
    include_tokens_per_second: bool = arg(
        False, "Also report tokens per second per device in the final metrics.", sources="001"
    )
    include_num_input_tokens_seen: bool | str | None = arg(
        None,
        "Log the cumulative input tokens seen: all, non_padding, or no (true means all).",
        choices=(True, False, "all", "non_padding", "no"),
        sources="001",
    )

    # --- reporting backends ---------------------------------------------------------------------------------------
    report_to: str | list[str] = arg(
        "none",
        "Logging backends: all (every installed one), none, or tensorboard, wandb, swanlab, mlflow; "
        "trainer_log.jsonl is always written.",
        choices=REPORTERS,
        sources="001,002,004",
        default_note="none, as in transformers 5 (spec 001, HF before v5, says all; spec 002 shows [tensorboard]).",
    )
    run_name: str | None = arg(
        None, "Run name shown in the backends; unset uses output_dir.", sources="001,002"
    )
    project: str = arg("huggingface", "Project name used by the backends (wandb, trackio).", sources="001")
    trackio_space_id: str | None = arg(
        "trackio", "Hugging Face Space that hosts the Trackio dashboard.", sources="001"
    )
    swanlab_project: str | None = arg(None, "SwanLab project name.", sources="004")
    swanlab_exp_name: str | None = arg(None, "SwanLab experiment name; unset uses run_name.", sources="004")
    swanlab_mode: str = arg(
        "cloud", "SwanLab mode.", choices=("cloud", "local", "offline", "disabled"), sources="004"
    )
    swanlab_token: str | None = arg(None, "SwanLab API key.", secret=True, sources="004")

    # --- hub upload -----------------------------------------------------------------------------------------------
    push_to_hub: bool = arg(False, "Upload the model to the Hugging Face hub when saving.", sources="001")
    hub_model_id: str | None = arg(
        None, "Hub repository to push to; unset uses the output_dir name.", sources="001"
    )
    hub_strategy: str = arg(
        "every_save",
        "What is pushed and when: end, every_save, checkpoint (also the last checkpoint) or all_checkpoints.",
        choices=("end", "every_save", "checkpoint", "all_checkpoints"),
        sources="001",
    )
    hub_token: str | None = arg(None, "Hub token for pushing.", secret=True, sources="001")
    hub_private_repo: bool | None = arg(None, "Create the hub repository as private.", sources="001")
    hub_always_push: bool = arg(
        False, "Push every checkpoint, even while the previous push runs.", sources="001"
    )
    hub_revision: str | None = arg(None, "Hub branch to push to.", sources="001")

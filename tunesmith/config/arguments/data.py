"""DataArguments: which datasets to read, how to render, tokenize, mask, split and pack them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.fields import arg


@dataclass
class DataArguments:
    """Dataset selection, chat rendering, label masking, splitting and packing."""

    # --- which data -----------------------------------------------------------------------------------------------
    dataset: str | list[Any] | dict[str, Any] | None = arg(
        None,
        "Training data: names in dataset_info.json (comma-separated or a list), files or hub ids (ms-swift's "
        "name#N takes N samples), or inline spec dicts.",
        aliases=("data_path",),
        sources="003,004",
    )
    eval_dataset: str | list[Any] | dict[str, Any] | None = arg(
        None, "Evaluation data, written like dataset; excludes val_size.", sources="003"
    )
    dataset_dir: str = arg(
        "data",
        "Directory holding dataset_info.json and relative data files.",
        sources="003",
        default_note="LLaMA-Factory's default; MindSpeed's ./configs/fsdp2/data only exists inside its repository.",
    )
    mix_strategy: str = arg(
        "concat",
        "How several datasets combine: concatenate, or interleave stopping at the shortest (under) or longest (over).",
        choices=("concat", "interleave_under", "interleave_over"),
        sources="003",
    )
    interleave_probs: str | None = arg(
        None, "Sampling probabilities of the datasets when interleaving, comma-separated.", sources="003"
    )
    max_samples: int | None = arg(
        None, "Keep at most this many examples per dataset (debugging).", minimum=1, sources="003"
    )
    streaming: bool = arg(
        False, "Stream the datasets instead of loading them; needs max_steps.", sources="003"
    )
    buffer_size: int = arg(16384, "Shuffle buffer size when streaming.", minimum=1, sources="003")
    val_size: int | float = arg(
        0.0,
        "Hold out this many examples (int) or this fraction (0-1) of the training data for evaluation.",
        minimum=0,
        sources="003",
    )
    split: str = arg(
        "100,0,0",
        "Pre-training: train,valid,test weights used to split the corpus, comma-separated.",
        sources="003",
    )

    # --- rendering and masking ------------------------------------------------------------------------------------
    template: str | None = arg(
        None, "Chat template name; unset uses the tokenizer's own chat template.", sources="003,004"
    )
    default_system: str | None = arg(
        None, "System prompt that replaces the template's default.", sources="003"
    )
    tool_format: str | None = arg(None, "Format used to render tool (function) calls.", sources="003")
    enable_thinking: bool | None = arg(
        True,
        "Reasoning models: true keeps thinking, false renders without it, null keeps the data's own thoughts as is.",
        sources="003",
    )
    cutoff_len: int = arg(
        2048,
        "Maximum tokens per example after tokenization; longer examples are truncated.",
        aliases=("max_length", "seq_length"),
        minimum=1,
        sources="000,003,004",
    )
    model_name: list[str] | None = arg(
        None,
        "Self-cognition data: replaces {{NAME}}; one name, or two (Chinese, English) as ms-swift takes them.",
    )
    model_author: list[str] | None = arg(
        None, "Self-cognition data: replaces {{AUTHOR}}; one name, or two (Chinese, English)."
    )
    dataset_text_field: str | None = arg(
        None, "Column holding the text of plain-text datasets given by path or hub id (TRL); stage pt."
    )
    lazy_tokenize: bool = arg(False, "Tokenize in the data loader instead of ahead (refused: see streaming).")
    truncation_strategy: str | None = arg(
        None,
        "Examples over cutoff_len: delete, left (keep the end), right (keep the start), split (pt documents); "
        "unset: LLaMA-Factory's per-turn budget.",
        choices=("delete", "left", "right", "split"),
        default_note="ms-swift defaults to delete; LLaMA-Factory has no such option (its per-turn rule).",
    )
    train_on_prompt: bool = arg(
        False, "Also compute the loss on prompt tokens; excludes mask_history.", sources="003"
    )
    mask_history: bool = arg(
        False,
        "Train only on the last assistant turn of each conversation; excludes train_on_prompt.",
        sources="003",
    )
    token_loss_weights: str | None = arg(
        None,
        "Answer-token loss weights: ms-swift loss_scale schemes (react, hermes, qwen, agentflan, alpha_umi, "
        "ignore_empty_think, ...; a+b) or a JSON file.",
    )
    ignore_pad_token_for_loss: bool = arg(True, "Exclude padding tokens from the loss.", sources="003")

    # --- packing --------------------------------------------------------------------------------------------------
    packing: bool = arg(
        False,
        "Pack several examples into each row of cutoff_len tokens.",
        aliases=("pack",),
        sources="003,004",
    )
    neat_packing: bool = arg(
        False, "Pack without attention across example boundaries; implies packing.", sources="003"
    )
    packing_length: int | None = arg(None, "Length of a packed row (ms-swift); unset: cutoff_len.", minimum=1)

    # --- preprocessing and caching --------------------------------------------------------------------------------
    preprocessing_batch_size: int = arg(1000, "Examples per preprocessing batch.", minimum=1, sources="003")
    preprocessing_num_workers: int | None = arg(
        None,
        "Processes used for preprocessing; unset uses one.",
        aliases=("workers",),
        minimum=1,
        sources="003",
    )
    overwrite_cache: bool = arg(
        False, "Re-run preprocessing even when a cached result exists.", sources="003"
    )
    tokenized_path: str | None = arg(
        None, "Save the tokenized dataset here, or load it from here when the path exists.", sources="003"
    )
    data_shared_file_system: bool = arg(
        False, "All nodes see the same file system: preprocess once on global rank 0.", sources="003"
    )
    no_shared_storage: bool = arg(
        False, "Nodes do not share storage: preprocess on each node's local rank 0.", sources="003"
    )
    data_manager_type: str = arg(
        "lf",
        "MindSpeed data pipeline: lf (fine-tuning conversations) or mg (Megatron pre-training corpus).",
        choices=("lf", "mg"),
        sources="003",
    )
    dataloader_type: str = arg(
        "single", "MindSpeed data loader type; single reads sequentially.", choices=("single",), sources="003"
    )
    create_attention_mask_in_dataloader: bool = arg(
        False, "Build the 4D attention mask in the data loader instead of inside the model.", sources="003"
    )

    # --- evaluation data ------------------------------------------------------------------------------------------
    eval_on_each_dataset: bool = arg(False, "Evaluate on each evaluation dataset separately.", sources="003")
    eval_num_beams: int | None = arg(
        None, "Beams for model.generate during evaluation with generation.", minimum=1, sources="003"
    )

"""GenerationArguments: Generation, export and serving: decoding options, merge/export, chat, the API server."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config.arguments.model import DTYPE_ALIASES, DTYPES
from tunesmith.config.fields import arg

_FROM_MODEL = "unset takes the model's generation_config.json (transformers' default when it has none)"


@dataclass
class GenerationArguments:
    """Generation, export and serving: decoding options, merge/export, chat, the API server."""

    # --- decoding (chat, generate, serve, predict_with_generate) -------------------------------------------------
    do_sample: bool | None = arg(
        None,
        f"Sample tokens instead of greedy/beam search; {_FROM_MODEL}.",
        default_note="LLaMA-Factory: true.",
    )
    temperature: float | None = arg(
        None, f"Sampling temperature (0 means greedy); {_FROM_MODEL}.", minimum=0, default_note="LF: 0.95."
    )
    top_p: float | None = arg(
        None,
        f"Nucleus sampling: keep the smallest token set of this probability; {_FROM_MODEL}.",
        minimum=0,
        maximum=1,
    )
    top_k: int | None = arg(
        None, f"Sample among the k most likely tokens (0: all); {_FROM_MODEL}.", minimum=0
    )
    num_beams: int | None = arg(None, f"Beam search width (1: no beam search); {_FROM_MODEL}.", minimum=1)
    max_new_tokens: int = arg(
        512,
        "Most tokens generated per answer (the server's cap on max_tokens).",
        minimum=1,
        default_note="LF: 1024.",
    )
    repetition_penalty: float | None = arg(
        None,
        f"Penalty on tokens already present (1.0: none); {_FROM_MODEL}.",
        minimum=0,
        exclusive_minimum=True,
    )
    length_penalty: float | None = arg(
        None, f"Beam search length exponent (>0 favours longer answers); {_FROM_MODEL}."
    )
    skip_special_tokens: bool = arg(True, "Leave special tokens out of the decoded answers.")
    stop_words: list[str] | None = arg(
        None, "Strings that end an answer when generated (comma-separated or a list); cut from the answer."
    )
    stream: bool = arg(True, "chat: print the answer token by token as it is generated (false: when done).")

    # --- loading for inference and export ------------------------------------------------------------------------
    infer_dtype: str | None = arg(
        None,
        "Dtype the model is loaded in for chat/generate/serve/export; unset uses torch_dtype.",
        choices=DTYPES,
        value_aliases=DTYPE_ALIASES,
        default_note="LLaMA-Factory: auto (the checkpoint's dtype).",
    )
    merge_lora: bool = arg(
        False, "chat/generate/serve: merge the adapters into the base before running (export always merges)."
    )

    # --- export ---------------------------------------------------------------------------------------------------
    export_dir: str | None = arg(None, "Folder the exported (merged) Hugging Face model is written to.")
    export_size: float = arg(
        5,
        "Largest weight file of the export, in GB; bigger models are sharded with an index.",
        minimum=0,
        exclusive_minimum=True,
    )
    export_device: str = arg(
        "cpu", "Device the merge runs on: cpu, or auto (the GPU when there is one).", choices=("cpu", "auto")
    )
    export_legacy_format: bool = arg(False, "Write PyTorch .bin weight files instead of safetensors.")
    export_hub_model_id: str | None = arg(None, "Hub repository to push the export to (refused: offline).")

    # --- OpenAI-compatible server ---------------------------------------------------------------------------------
    api_host: str = arg(
        "127.0.0.1", "serve: address to bind; 127.0.0.1 keeps the server local to this machine."
    )
    api_port: int = arg(8000, "serve: TCP port to listen on (0 picks a free one).", minimum=0, maximum=65535)
    api_key: str | None = arg(
        None,
        "serve: clients must send `Authorization: Bearer KEY`; unset accepts every request.",
        secret=True,
    )
    served_model_name: str | None = arg(
        None, "serve: the model id clients ask for in `model`; unset uses the model folder's name."
    )
    max_model_len: int | None = arg(
        None,
        "serve: most prompt + answer tokens per request; unset uses the model's max_position_embeddings.",
        minimum=1,
    )

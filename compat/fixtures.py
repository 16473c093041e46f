"""Small local data sets of each format the corpus configs read, written into a run's folder."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

ROWS = 32
IMAGE = "data/tiny.png"
MULTIMODAL_HINTS = (
    "multimodal",
    "mllm",
    "llava",
    "vl",
    "omni",
    "audio",
    "video",
    "image",
    "ocr",
    "coco",
    "grounding",
    "rlhf_v",
)
PAIRWISE_STAGES = ("dpo", "rm", "orpo", "simpo", "cpo", "ipo", "bco", "prm")
KTO_STAGES = ("kto", "bco")


def _qa(i: int) -> tuple[str, str, str]:
    a, b = i % 7 + 1, i % 5 + 2
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {a + b + 1 + i % 3}."


def _messages(q: str, a: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def data_kind(stage: str | None, *hints: str | None) -> str:
    """pt | sft | pairwise | kto, plus `+mm` when the names suggest images (multimodal configs)."""
    stage = (stage or "sft").lower()
    if stage == "pt":
        kind = "pt"
    elif stage in KTO_STAGES:
        kind = "kto"
    elif stage in PAIRWISE_STAGES:
        kind = "pairwise"
    else:
        kind = "sft"
    text = " ".join(h.lower() for h in hints if h)
    return kind + ("+mm" if any(h in text for h in MULTIMODAL_HINTS) else "")


def rows(style: str, kind: str) -> list[dict[str, Any]]:
    """`ROWS` examples in the data layout of `style` (lf, swift, trl) for a `data_kind`."""
    base, mm = kind.split("+")[0], kind.endswith("+mm")
    out = []
    for i in range(ROWS):
        q, a, wrong = _qa(i)
        q_mm = f"<image>{q}" if mm else q
        out.append(_row(style, base, i, q_mm, a, wrong) | ({"images": [IMAGE]} if mm else {}))
    return out


def _row(style: str, base: str, i: int, q: str, a: str, wrong: str) -> dict[str, Any]:
    if base == "pt":  # a paragraph: packed into 128-token blocks, 32 of them fill a batch of 8 twice over
        return {"text": " ".join(f"{q} {a}" for q, a, _ in map(_qa, range(i, i + 4)))}
    if style == "lf":
        if base == "pairwise":
            return {"instruction": q, "input": "", "chosen": a, "rejected": wrong}
        if base == "kto":
            return {"messages": _messages(q, a if i % 2 else wrong), "label": bool(i % 2)}
        return {"instruction": q, "input": "", "output": a}
    if style == "swift":
        if base == "pairwise":
            return {"messages": _messages(q, a), "rejected_response": wrong}
        if base == "kto":
            return {"messages": _messages(q, a if i % 2 else wrong), "label": bool(i % 2)}
        return {"messages": _messages(q, a)}
    prompt = [{"role": "user", "content": q}]
    if base == "pairwise":
        return {"prompt": prompt, "chosen": [_messages(q, a)[1]], "rejected": [_messages(q, wrong)[1]]}
    if base == "kto":
        return {
            "prompt": prompt,
            "completion": [_messages(q, a if i % 2 else wrong)[1]],
            "label": bool(i % 2),
        }
    return {"messages": _messages(q, a)}


def lf_entry(file_name: str, kind: str) -> dict[str, Any]:
    """A `dataset_info.json` entry written as LLaMA-Factory's own data/dataset_info.json writes one."""
    base, mm = kind.split("+")[0], kind.endswith("+mm")
    if base == "pt":
        return {"file_name": file_name, "columns": {"prompt": "text"}}
    if base == "pairwise":
        columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
        return {"file_name": file_name, "ranking": True, "columns": columns}
    if base == "kto" or mm:
        columns = {"messages": "messages"} | ({"kto_tag": "label"} if base == "kto" else {})
        tags = {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        }
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": columns | _mm_columns(mm),
            "tags": tags,
        }
    return {"file_name": file_name}


def _mm_columns(mm: bool) -> dict[str, str]:
    return {"images": "images"} if mm else {}


def write_rows(path: Path, data: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def lf_rows(kind: str) -> list[dict[str, Any]]:
    """LF rows; multimodal and KTO rows use the sharegpt messages layout that lf_entry declares."""
    if kind.endswith("+mm") and kind.split("+")[0] == "sft":
        return [
            {"messages": _messages(f"<image>{q}", a), "images": [IMAGE]} for q, a, _ in map(_qa, range(ROWS))
        ]
    return rows("lf", kind)


def write_image(run_dir: Path) -> None:
    """A 2x2 RGB PNG, for the configs whose data refer to images."""
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * 2 for _ in range(2))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (run_dir / IMAGE).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / IMAGE).write_bytes(png)

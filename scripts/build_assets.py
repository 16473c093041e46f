"""Regenerate tunesmith's built-in assets offline and deterministically.

Writes `tunesmith/assets/demo/` (the demo SFT set, a small pre-training text, `dataset_info.json`) and
`tunesmith/assets/tiny/` (a byte-level BPE tokenizer with ChatML tokens, a tiny Qwen2 config, a generation
config). Run: `.venv/bin/python scripts/build_assets.py [OUT_DIR]`. Nothing is downloaded; the same code gives the same files.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ASSETS = Path(__file__).resolve().parents[1] / "tunesmith" / "assets"
SEED = 1234
BPE_VOCAB = 2046  # incl. the 3 ChatML tokens; + 2 think tags = 2048 = the model vocab (a multiple of 64)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>"]
# Qwen2's pre-tokenizer split: words, single digits, punctuation runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- else %}{%- set system = none %}{%- endif %}"
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}{%- if system %}{{- system + '\\n\\n' }}{%- endif %}"
    '{{- \'You can call these tools. To call one, reply with <tool_call>{"name": NAME, "arguments": {...}}\''
    " + '</tool_call>.\\n' }}"
    "{%- for tool in tools %}{{- (tool | tojson) + '\\n' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif system is not none %}{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- if not loop.first %}{{- raise_exception('a system message is only allowed first') }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}"
    "{%- if message.get('reasoning_content') %}"
    "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}{%- endif %}"
    "{{- message['content'] or '' }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{%- set args = fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson) %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>{\"name\": \"' + fn['name'] + '\", \"arguments\": ' + args + '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Russia": "Moscow", "Canada": "Ottawa",
    "Australia": "Canberra", "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Mexico": "Mexico City",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat",
    "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota", "Cuba": "Havana", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Greece": "Athens", "Turkey": "Ankara", "Ireland": "Dublin", "Belgium": "Brussels",
    "Hungary": "Budapest", "Czechia": "Prague", "Romania": "Bucharest", "Ukraine": "Kyiv", "Iran": "Tehran",
    "Iraq": "Baghdad", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta",
    "Philippines": "Manila", "South Korea": "Seoul", "Pakistan": "Islamabad", "Nepal": "Kathmandu",
    "Mongolia": "Ulaanbaatar", "Ethiopia": "Addis Ababa", "Senegal": "Dakar", "Iceland": "Reykjavik",
    "Switzerland": "Bern", "Netherlands": "Amsterdam", "New Zealand": "Wellington", "Venezuela": "Caracas",
    "Bolivia": "Sucre", "Uruguay": "Montevideo", "Jamaica": "Kingston", "Qatar": "Doha", "Jordan": "Amman",
    "Latvia": "Riga",
}  # fmt: skip
QUESTIONS = [
    "What is the capital of {country}?",
    "Which city is the capital of {country}?",
    "Name the capital city of {country}.",
    "Tell me the capital of {country}.",
    "What city is {country}'s capital?",
    "Do you know the capital of {country}?",
    "Which city serves as the capital of {country}?",
    "What's the capital city of {country}?",
    "Capital of {country}?",
]
INPUT_INSTRUCTIONS = [
    "Give the capital city of this country.",
    "Answer with the capital of the country below.",
]

WORD_TEXT = (
    "the of and to in is was for on that with as by at from it this be are or an have not but which one all "
    "were they their there been has more when will would who so no if out up what about into than them can "
    "only other new some could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three small large number point water city country river mountain "
    "language model data training token learning rate batch step loss value function model weight layer "
    "attention head window memory process machine computer file folder config dataset result output input "
    "question answer capital north south east west island ocean history music school teacher student book "
    "morning evening friend family house garden market street bridge train station window table chair light "
    "green blue red white black yellow happy quickly slowly carefully simple clear short long early late "
    "build test check write read open close start stop run keep move follow change show call find give tell"
)
WORDS = WORD_TEXT.split()
CODE_SNIPPETS = [
    "def {a}({b}, {c}):\n    return {b} + {c}\n",
    "for {a} in range({n}):\n    print({a} * {n})\n",
    'if {a} is None:\n    raise ValueError("{a} must be set")\n',
    "class {A}:\n    def __init__(self, {b}):\n        self.{b} = {b}\n",
    "{a} = [{b} for {b} in {c} if {b} > {n}]\n",
    'import json\nwith open("{a}.json") as f:\n    {b} = json.load(f)\n',
    '{a}_{b} = {{"{c}": {n}, "{b}": [{n}, {m}]}}\n',
    "while {a} < {n}:\n    {a} += {m}\n",
]


def demo_rows() -> list[dict[str, str]]:
    """The demo SFT set: country -> capital questions in alpaca form, shuffled with a fixed seed."""
    rows = []
    for country, capital in CAPITALS.items():
        answer = f"The capital of {country} is {capital}."
        rows += [{"instruction": q.format(country=country), "input": "", "output": answer} for q in QUESTIONS]
        rows += [{"instruction": i, "input": country, "output": answer} for i in INPUT_INSTRUCTIONS]
    random.Random(SEED).shuffle(rows)
    return rows


def pretrain_lines() -> list[str]:
    """A few KB of plain text, one paragraph per line, for `stage: pt`."""
    rng = random.Random(SEED)
    items = list(CAPITALS.items())
    lines = []
    for start in range(0, len(items), 4):
        group = items[start : start + 4]
        facts = " ".join(f"{cap} is the capital of {country}." for country, cap in group)
        lines.append(
            f"{facts} {group[0][0]} and {group[-1][0]} are both {rng.choice(['large', 'small', 'old'])}."
        )
    lines += [generic_sentence(rng) + " " + generic_sentence(rng) for _ in range(12)]
    return lines


def generic_sentence(rng: random.Random) -> str:
    """A random English-like sentence drawn from the word list."""
    words = rng.choices(WORDS, k=rng.randint(5, 14))
    return " ".join(words).capitalize() + rng.choice([".", ".", "!", "?"])


def code_snippet(rng: random.Random) -> str:
    """A random Python-like snippet with made-up names."""
    a, b, c = rng.sample(WORDS[60:], 3)
    return rng.choice(CODE_SNIPPETS).format(
        a=a, b=b, c=c, A=a.capitalize(), n=rng.randint(0, 999), m=rng.randint(1, 9)
    )


def tokenizer_corpus(rows: list[dict[str, str]], pt_lines: list[str]) -> list[str]:
    """Training text for the BPE: demo data, pre-training text, generic English and code-like lines."""
    rng = random.Random(SEED + 1)
    texts = [" ".join(r.values()) for r in rows] + pt_lines
    texts += [" ".join(generic_sentence(rng) for _ in range(4)) for _ in range(3000)]
    texts += [code_snippet(rng) for _ in range(1500)]
    return texts


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """A byte-level BPE with Qwen2's split pattern; ChatML special tokens first, think tags added last."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != BPE_VOCAB:
        raise RuntimeError(f"BPE reached {tok.get_vocab_size()} tokens, wanted {BPE_VOCAB}: add corpus text")
    return tok


def save_tokenizer(tok: Tokenizer, out: Path) -> int:
    """Save as a transformers fast tokenizer with the ChatML template; returns its length."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens(ADDED_TOKENS, special_tokens=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out, save_jinja_files=False)
    config_path = out / "tokenizer_config.json"  # pin the class, so a Llama config next to it changes nothing
    write_json(config_path, {**json.loads(config_path.read_text()), "tokenizer_class": "Qwen2Tokenizer"})
    return len(fast)


def model_config(vocab_size: int, token_ids: dict[str, int]) -> dict:
    """The tiny Qwen2 architecture (about 3.7M parameters with tied embeddings)."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
        "torch_dtype": "float32",
    }


def generation_config(token_ids: dict[str, int]) -> dict:
    """Greedy decoding that stops at the end of a chat turn or of a document."""
    return {
        "do_sample": False,
        "eos_token_id": [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        "pad_token_id": token_ids["<|endoftext|>"],
        "max_new_tokens": 64,
    }


def dataset_info() -> dict:
    """LLaMA-Factory `dataset_info.json` entries for the demo SFT set and the pre-training text."""
    return {
        "demo": {
            "file_name": "demo.json",
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        },
        "demo_pt": {"file_name": "pretrain.txt", "columns": {"prompt": "text"}},
    }


def write_json(path: Path, obj: object) -> None:
    """Write pretty JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def build(out: Path = ASSETS) -> None:
    """Build every asset into `out` (by default the package's `tunesmith/assets/`)."""
    demo, tiny = out / "demo", out / "tiny"
    demo.mkdir(parents=True, exist_ok=True)
    tiny.mkdir(parents=True, exist_ok=True)
    rows, pt = demo_rows(), pretrain_lines()
    write_json(demo / "demo.json", rows)
    (demo / "pretrain.txt").write_text("\n".join(pt) + "\n")
    write_json(demo / "dataset_info.json", dataset_info())

    tok = train_tokenizer(tokenizer_corpus(rows, pt))
    length = save_tokenizer(tok, tiny)
    vocab_size = -(-length // 64) * 64
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    write_json(tiny / "config.json", model_config(vocab_size, ids))
    write_json(tiny / "generation_config.json", generation_config(ids))
    print(f"demo: {len(rows)} examples; tokenizer: {length} tokens; model vocab {vocab_size}")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ASSETS)

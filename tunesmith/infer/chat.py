"""`tunesmith chat`: an interactive terminal chat with the model's chat template: answers streamed token by
token, the conversation kept as history, `/clear` forgets it, `/exit` (or Ctrl-D) quits, Ctrl-C stops the
current answer (not the program), readline line editing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from tunesmith.infer.loading import Loaded
from tunesmith.infer.prompts import PromptBuilder
from tunesmith.model.generation import Decoding, Stream, decoding_from, generate
from tunesmith.utils.errors import DataError

USER_PROMPT = "user: "
ANSWER_PREFIX = "assistant: "
HELP = "/clear forgets the conversation, /exit or Ctrl-D quits, Ctrl-C stops an answer"


def run_chat(
    loaded: Loaded, *, system: str = "", read: Callable[[str], str] = input, out: TextIO = sys.stdout
) -> None:
    """The chat loop until /exit or end of input."""
    import readline  # noqa: F401  (importing it gives input() line editing and history)

    builder = PromptBuilder(loaded.cfg, loaded.tokenizer)
    decoding = decoding_from(
        loaded.model, loaded.tokenizer, loaded.cfg.generation, int(loaded.cfg.train.seed)
    )
    history: list[dict[str, str]] = []
    print(f"chat with {loaded.name}: {HELP}", file=out, flush=True)
    while True:
        try:
            line = read(USER_PROMPT).strip()
        except EOFError:
            print(file=out)
            return
        except KeyboardInterrupt:
            print(file=out)
            continue
        if line == "/exit":
            return
        if line == "/clear":
            history.clear()
            print("(history cleared)", file=out, flush=True)
            continue
        if line:
            history = _turn(
                loaded, builder, decoding, [*history, {"role": "user", "content": line}], system, out
            )


def _turn(
    loaded: Loaded,
    builder: PromptBuilder,
    decoding: Decoding,
    history: list[dict[str, str]],
    system: str,
    out: TextIO,
) -> list[dict[str, str]]:
    """Answer the last user message; returns the history with the answer (what was said, if interrupted)."""
    try:
        prompt = builder.chat(history, system)
    except DataError as err:
        print(f"(error: {err})", file=out, flush=True)
        return history[:-1]
    print(ANSWER_PREFIX, end="", file=out, flush=True)
    if loaded.cfg.generation.stream:
        text = _streamed(loaded, prompt, decoding, out)
    else:
        text = generate(loaded.model, loaded.tokenizer, [prompt], decoding)[0].text
        print(text, end="", file=out)
    print(file=out, flush=True)
    return [*history, {"role": "assistant", "content": text}]


def _streamed(loaded: Loaded, prompt: list[int], decoding: Decoding, out: TextIO) -> str:
    """Print the answer as it comes; Ctrl-C ends the generation and keeps what was printed."""
    stream = Stream(loaded.model, loaded.tokenizer, prompt, decoding)
    said = []
    try:
        for piece in stream:
            said.append(piece)
            print(piece, end="", file=out, flush=True)
    except KeyboardInterrupt:
        stream.stop()
        stream.thread.join()
        print(" (stopped)", end="", file=out)
    return "".join(said)

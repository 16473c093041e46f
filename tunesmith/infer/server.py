"""`tunesmith serve`: an OpenAI-compatible HTTP server (FastAPI on uvicorn) for one model per process.

Routes: `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (both with `stream: true` as
server-sent events ending in `data: [DONE]`), `GET /health`; the fields each takes: `server_requests`. Generations
run one at a time (a lock: no two interleave on the model; `n` answers to one request are one batch). Errors are OpenAI-shaped `{"error": {"message", "type", "param", "code"}}`:
400 malformed JSON / invalid field / prompt + max_tokens over the context (`context_length_exceeded`; without
max_tokens the answer is cut to the room left) / max_tokens over `max_new_tokens`; 401 missing or wrong API key (`invalid_api_key`); 404 unknown model
(`model_not_found`); 413 body over 1 MiB. Binds 127.0.0.1 unless `api_host` says otherwise."""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.infer.loading import Loaded
from tunesmith.infer.prompts import PromptBuilder
from tunesmith.infer.server_requests import (
    ApiError,
    ApiRequest,
    ChatRequest,
    CompletionRequest,
    parse_request,
)
from tunesmith.model.generation import Decoding, Generated, Stream, decoding_from, generate, with_overrides
from tunesmith.utils.errors import DataError

logger = logging.getLogger("tunesmith")

MAX_BODY = 1 << 20  # bytes
COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions


class Engine:
    """The model, its prompt builder and default decoding, behind a lock."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded, gen = loaded, loaded.cfg.generation
        self.builder = PromptBuilder(loaded.cfg, loaded.tokenizer)
        self.decoding = decoding_from(loaded.model, loaded.tokenizer, gen, None)
        self.max_new_tokens = int(gen.max_new_tokens)
        config = loaded.model.config
        self.context = int(gen.max_model_len or getattr(config, "max_position_embeddings", 0) or 2048)
        self.lock = threading.Lock()

    def decoding_for(self, req: ApiRequest, prompt: list[int], default_tokens: int) -> Decoding:
        """The request's settings over the server's, after checking the token budget."""
        asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
        if asked is not None and asked > self.max_new_tokens:
            raise ApiError(
                400,
                f"max_tokens {asked} is over this server's limit of {self.max_new_tokens}",
                param="max_tokens",
            )
        room = self.context - len(
            prompt
        )  # without max_tokens, the answer may take what is left of the context
        tokens = asked or min(default_tokens, room)
        if tokens < 1 or tokens > room:
            wanted = f"max_tokens asks for {asked} more" if asked else "no room is left for an answer"
            raise ApiError(
                400,
                f"this model's context is {self.context} tokens; the prompt has {len(prompt)} and {wanted}; "
                "shorten the prompt or lower max_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        sample = None if req.temperature is None else req.temperature > 0
        return with_overrides(
            self.decoding,
            max_new_tokens=tokens,
            do_sample=sample,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            repetition_penalty=req.repetition_penalty,
            stop_words=stop,
            seed=req.seed,
        )

    def complete(self, prompt: list[int], decoding: Decoding, n: int = 1) -> list[Generated]:
        """`n` answers to `prompt`, generated together (one batch)."""
        with self.lock:
            return generate(self.loaded.model, self.loaded.tokenizer, [prompt] * n, decoding)

    def stream(self, prompt: list[int], decoding: Decoding) -> Iterator[str | Generated]:
        """Text pieces, then the whole answer; the lock is held until the generation has ended."""
        with self.lock:
            stream = Stream(self.loaded.model, self.loaded.tokenizer, prompt, decoding)
            try:
                yield from stream
                yield stream.result
            finally:
                stream.stop()
                stream.thread.join()


def build_app(loaded: Loaded) -> FastAPI:
    """The FastAPI application serving `loaded`."""
    engine, name, key = Engine(loaded), loaded.name, loaded.cfg.generation.api_key
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, openapi_url=None)

    async def body_of(request: Request, model_cls: type[ApiRequest]) -> ApiRequest:
        _check_key(request, key)
        req = parse_request(await _read_body(request), model_cls)
        if req.model != name:
            raise ApiError(
                404,
                f"the model '{req.model}' does not exist; this server serves '{name}'",
                param="model",
                code="model_not_found",
            )
        return req

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _check_key(request, key)
        return {"object": "list", "data": [_model_card(name)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req = await body_of(request, ChatRequest)
        try:
            prompt = engine.builder.chat([m.plain() for m in req.messages])
        except DataError as err:
            raise ApiError(400, str(err), param="messages") from err
        decoding = engine.decoding_for(req, prompt, engine.max_new_tokens)
        return await _respond(engine, req, prompt, decoding, name, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req = await body_of(request, CompletionRequest)
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(texts) != 1:
            raise ApiError(400, "prompt: give one prompt per request", param="prompt")
        prompt = engine.builder.text(texts[0])
        decoding = engine.decoding_for(req, prompt, COMPLETION_DEFAULT_TOKENS)
        return await _respond(engine, req, prompt, decoding, name, chat=False)

    return app


def _check_key(request: Request, key: str | None) -> None:
    if key is None:
        return
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(
            401, "missing or incorrect API key (send `Authorization: Bearer KEY`)", code="invalid_api_key"
        )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
    return raw


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "tunesmith"}


async def _respond(
    engine: Engine, req: ApiRequest, prompt: list[int], decoding: Decoding, name: str, *, chat: bool
) -> Any:
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        events = _events(engine.stream(prompt, decoding), ident, name, chat, usage)
        return StreamingResponse(events, media_type="text/event-stream")
    outs = await run_in_threadpool(engine.complete, prompt, decoding, req.n)
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": name,
        "choices": [_choice(i, out, chat) for i, out in enumerate(outs)],
        "usage": _usage(outs),
    }


def _choice(index: int, out: Generated, chat: bool) -> dict[str, Any]:
    answer = (
        {"message": {"role": "assistant", "content": out.text}}
        if chat
        else {"text": out.text, "logprobs": None}
    )
    return {"index": index, "finish_reason": out.finish_reason} | answer


def _usage(outs: list[Generated]) -> dict[str, int]:
    """Token counts of one prompt and all its answers."""
    prompt, done = outs[0].prompt_tokens, sum(len(out.token_ids) for out in outs)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _events(
    pieces: Iterator[str | Generated], ident: str, name: str, chat: bool, usage: bool = False
) -> Iterator[str]:
    """Server-sent events: one chunk per text piece, a last chunk with the finish reason, with `usage` one more
    with the token counts and no choices (OpenAI's stream_options.include_usage), then [DONE]."""
    created, kind = int(time.time()), "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": ident, "object": kind, "created": created, "model": name, "choices": choices} | extra
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def chunk(text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta = ({"role": "assistant"} if role else {}) | ({"content": text} if text is not None else {})
            return event([{"index": 0, "delta": delta, "finish_reason": finish}])
        return event([{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}])

    if chat:
        yield chunk("", None, role=True)
    for piece in pieces:
        if isinstance(piece, Generated):
            yield chunk(None, piece.finish_reason)
            if usage:
                yield event([], usage=_usage([piece]))
        elif piece:
            yield chunk(piece, None)
    yield "data: [DONE]\n\n"


def serve(loaded: Loaded) -> None:
    """Run the server until interrupted; prints the address it listens on (the real port when api_port is 0)."""
    import uvicorn

    gen = loaded.cfg.generation
    family = socket.AF_INET6 if ":" in gen.api_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((gen.api_host, gen.api_port))
    sock.listen(128)  # connections made from now on wait in the backlog until uvicorn accepts them
    port = sock.getsockname()[1]
    if gen.api_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("api_host %s: the server is reachable from other machines", gen.api_host)
    print(f"serving {loaded.name} on http://{gen.api_host}:{port}/v1", flush=True)
    config = uvicorn.Config(build_app(loaded), log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])

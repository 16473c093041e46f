"""The request bodies `tunesmith serve` accepts, checked: OpenAI's fields that it honours, OpenAI's fields that it
does not (refused with a 400 naming the field unless they hold their "off" value), and the OpenAI-shaped error.

Honoured: model, messages (text parts) / prompt, max_tokens / max_completion_tokens, temperature, top_p, n (not
with stream), stream, stream_options.include_usage, stop, seed; and the vLLM-style extras top_k and
repetition_penalty. Fields no generation reads (user, metadata, store, service_tier, parallel_tool_calls) are
accepted as OpenAI accepts them."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# field -> (the values that mean "not used", what to do instead)
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": ((None, []), "tool calls are not parsed: describe the tools in the system message"),
    "tool_choice": ((None, "none"), "tool calls are not parsed"),
    "functions": ((None, []), "function calls are not parsed"),
    "function_call": ((None, "none"), "function calls are not parsed"),
    "response_format": ((None, {"type": "text"}), "constrained (JSON) decoding is not available"),
    "logprobs": ((None, False, 0), "log-probabilities are not returned"),
    "top_logprobs": ((None, 0), "log-probabilities are not returned"),
    "logit_bias": ((None, {}), "logit biases are not applied"),
    "presence_penalty": ((None, 0, 0.0), "use repetition_penalty"),
    "frequency_penalty": ((None, 0, 0.0), "use repetition_penalty"),
    "best_of": ((None, 1), "use n"),
    "echo": ((None, False), "the prompt is not echoed: prepend it yourself"),
    "suffix": ((None, ""), "insertion (fill-in-the-middle) is not available"),
    "audio": ((None,), "this server generates text only"),
    "modalities": ((None, ["text"]), "this server generates text only"),
    "prediction": ((None,), "predicted outputs are not used"),
}
ACCEPTED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")


class ApiError(Exception):
    """An HTTP error with an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param

    def response(self) -> JSONResponse:
        body = {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ApiRequest(BaseModel):
    """The fields both routes share; any other field is an error (see UNSUPPORTED and ACCEPTED)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. `name`, `refusal`: carried by clients, not by templates

    role: str
    content: str | list[dict[str, Any]] | None = None

    def plain(self) -> dict[str, str]:
        """{role, content} with the text parts joined; any other part (an image, audio) is a 400."""
        content = self.content or ""
        if isinstance(content, list):
            other = sorted({str(part.get("type")) for part in content if part.get("type") != "text"})
            if other:
                raise ApiError(
                    400, f"messages: content parts of type {other} are not supported: this model reads text only",
                    param="messages",
                )  # fmt: skip
            content = "".join(str(part.get("text", "")) for part in content)
        return {"role": self.role, "content": content}


class ChatRequest(ApiRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(ApiRequest):
    prompt: str | list[str]


def parse_request(raw: bytes, model_cls: type[ApiRequest]) -> ApiRequest:
    """The validated request of body `raw`; a 400 naming the first field that is wrong or not honoured."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    for name, (off, instead) in UNSUPPORTED.items():
        if data.get(name) not in off:
            raise ApiError(400, f"{name}: not supported by this server ({instead})", param=name)
    data = {k: v for k, v in data.items() if k not in UNSUPPORTED and k not in ACCEPTED}
    try:
        req = model_cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{param}: {first['msg']}", param=param) from err
    if req.n > 1 and req.stream:
        raise ApiError(400, "n: several choices are not streamed; use stream: false with n > 1", param="n")
    return req

"""The board's web app: JSON endpoints over the run folders, the start/stop actions and the static page."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tunesmith.board.chat import ChatModels
from tunesmith.board.details import PLOT_GLOB, run_details
from tunesmith.board.jobs import Jobs
from tunesmith.board.launch import check_config, start_run
from tunesmith.board.logs import LOG_FILE, read_rows
from tunesmith.board.runs import list_runs, summarize
from tunesmith.board.templates import config_templates
from tunesmith.utils.errors import TunesmithError

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "tunesmith_board_token"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def create_app(root: str | Path, token: str | None = None) -> FastAPI:
    """The app serving the runs under `root`; with `token`, every request must carry it (query, cookie or header)."""
    root = Path(root).resolve()
    jobs = Jobs(root)
    models = ChatModels()
    app = FastAPI(title="tunesmith board", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        problem = _refusal(request, token)
        if problem is not None:
            return JSONResponse({"detail": problem}, status_code=403)
        response = await call_next(request)
        if token and request.query_params.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"root": str(root), "runs": list_runs(root, jobs)}

    @app.get("/api/run")
    def run(name: str) -> dict[str, Any]:
        return run_details(root, _run_name(root, name), jobs)

    @app.get("/api/log")
    def log(name: str, offset: int = 0) -> dict[str, Any]:
        return dataclasses.asdict(read_rows(root / _run_name(root, name) / LOG_FILE, offset))

    @app.get("/api/plot")
    def plot(name: str, file: str) -> FileResponse:
        folder = root / _run_name(root, name)
        if file not in {p.name for p in folder.glob(PLOT_GLOB)}:
            raise HTTPException(404, f"no plot {file!r} in {name!r}")
        return FileResponse(folder / file)

    @app.get("/api/templates")
    def templates() -> list[dict[str, str]]:
        return config_templates(root, jobs)

    @app.post("/api/check")
    def check(body: dict[str, Any]) -> dict[str, Any]:
        plan, problems = check_config(root, *_name_and_text(body))
        return {"plan": plan, "problems": [dataclasses.asdict(p) for p in problems]}

    @app.post("/api/start")
    def start(body: dict[str, Any]) -> dict[str, Any]:
        job, plan, problems = start_run(root, jobs, *_name_and_text(body))
        return {
            "started": job.name if job else None,
            "plan": plan,
            "problems": [dataclasses.asdict(p) for p in problems],
        }

    @app.post("/api/stop")
    def stop(body: dict[str, Any]) -> dict[str, Any]:
        name = _run_name(root, str(body.get("name", "")))
        if jobs.stop(name) is None:
            raise HTTPException(409, f"{name!r} is not a running job started from this board")
        return {"stopping": name}

    @app.post("/api/chat")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        name = _run_name(root, str(body.get("name", "")))
        status = summarize(root, name, jobs)["status"]
        if status != "finished":
            raise HTTPException(409, f"{name!r} is {status}: chat works with a finished run's model")
        try:
            return models.answer(root / name, body.get("messages"), body.get("max_new_tokens"))
        except TunesmithError as exc:
            raise HTTPException(400, str(exc)) from None

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _refusal(request: Request, token: str | None) -> str | None:
    """Why a request is refused: a missing token, or a state-changing request that a foreign page could send."""
    if token:
        given = (
            request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or request.headers.get("authorization", "").removeprefix("Bearer ")
        )
        if not secrets.compare_digest(given.encode(), token.encode()):
            return "this board needs its token: open the address it printed (…/?token=…)"
    elif request.headers.get("host", "").rsplit(":", 1)[0] not in LOOPBACK:
        return "without a token the board answers only to 127.0.0.1 / localhost addresses"
    if request.method != "GET":
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "send JSON (Content-Type: application/json)"
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return f"cross-origin request from {origin} refused"
    return None


def _run_name(root: Path, name: str) -> str:
    """`name` when it is a folder inside `root` (no '..', no hidden parts), else a 404."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p.startswith(".") for p in parts):
        raise HTTPException(404, f"no run {name!r}")
    if not (root / name).resolve().is_relative_to(root):
        raise HTTPException(404, f"no run {name!r}")
    return Path(name).as_posix()


def _name_and_text(body: dict[str, Any]) -> tuple[str, str]:
    name, text = body.get("name"), body.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        raise HTTPException(422, "send {'name': run name, 'text': config YAML}")
    return name.strip(), text

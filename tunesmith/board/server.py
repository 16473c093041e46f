"""`tunesmith board`: serve the board for a runs folder with uvicorn (127.0.0.1 unless asked otherwise)."""

from __future__ import annotations

import secrets
from pathlib import Path

from tunesmith.board.heavy import start_warm_up
from tunesmith.utils.errors import ConfigError, TunesmithError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7870
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def board_url(host: str, port: int, token: str | None) -> str:
    """The address to open (with the token when there is one)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    runs_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None
) -> None:
    """Serve the board until interrupted. Binding beyond loopback always uses a token (a random one if none given)."""
    try:
        import uvicorn

        from tunesmith.board.app import create_app
    except ImportError as exc:
        raise TunesmithError(f"tunesmith board needs {exc.name}: pip install 'tunesmith[serve]'") from None
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(
            f"board: RUNS_DIR {str(root)!r} is not a folder; give the folder holding your output_dirs"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"board: --port {port} is out of range; must be 1-65535")
    if host not in LOOPBACK_HOSTS and not token:
        token = secrets.token_urlsafe(18)
    print(f"tunesmith board for {root.resolve()}: {board_url(host, port, token)}", flush=True)
    start_warm_up()
    uvicorn.run(create_app(root, token), host=host, port=port, log_level="warning")

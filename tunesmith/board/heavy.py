"""One lock around the board's work that imports the training libraries (config checks, plans, chat models).

Importing transformers from two threads at once fails ("cannot import name ..." from its half-filled lazy
module), and the web server answers requests on several threads; the start-up warm-up takes the lock too.
"""

from __future__ import annotations

import importlib
import threading

LOCK = threading.Lock()
WARM_MODULES = ("tunesmith.planning", "tunesmith.config.validate", "tunesmith.data", "tunesmith.model")


def warm_up() -> None:
    """Import what checking a config needs while the user opens the page."""
    with LOCK:
        for module in WARM_MODULES:
            importlib.import_module(module)


def start_warm_up() -> None:
    """Run `warm_up` in a background thread."""
    threading.Thread(target=warm_up, name="board-warm-up", daemon=True).start()

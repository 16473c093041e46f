"""When steps are logged (HF semantics) and which log level each process gets."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from tunesmith.config import load_config
from tunesmith.config.plan import step_interval as logging_interval
from tunesmith.report.schedule import should_log
from tunesmith.utils.logging import process_log_level, setup_logging


def cfg_with(*overrides: str):
    return load_config(None, ["model_name_or_path=builtin:tiny", "output_dir=unused", *overrides])


def logged(cfg, max_steps: int, epoch_ends: tuple[int, ...] = ()) -> list[int]:
    return [s for s in range(1, max_steps + 1) if should_log(s, max_steps, cfg, epoch_end=s in epoch_ends)]


def test_integer_steps_and_first_step():
    assert logged(cfg_with("logging_steps=4"), 10) == [4, 8]
    assert logged(cfg_with("logging_steps=4", "logging_first_step=true"), 10) == [1, 4, 8]


def test_fraction_of_total_steps_rounds_up_like_hf():
    # HF: logging_steps < 1 -> ceil(max_steps * logging_steps); 25 * 0.1 = 2.5 -> every 3 steps
    assert logging_interval(0.1, 25) == 3
    assert logged(cfg_with("logging_steps=0.1"), 25) == [3, 6, 9, 12, 15, 18, 21, 24]
    assert logging_interval(0.001, 25) == 1


def test_epoch_and_no_strategies():
    assert logged(cfg_with("logging_strategy=epoch"), 9, epoch_ends=(3, 6, 9)) == [3, 6, 9]
    assert logged(cfg_with("logging_strategy=no"), 9, epoch_ends=(3,)) == []
    # HF logs the first step when asked, whatever the strategy
    assert logged(cfg_with("logging_strategy=no", "logging_first_step=true"), 9) == [1]


@pytest.mark.parametrize(
    ("on_each_node", "rank", "local_rank", "expected"),
    [
        (True, 0, 0, "info"),
        (True, 2, 0, "info"),
        (True, 3, 1, "error"),
        (False, 2, 0, "error"),
        (False, 0, 0, "info"),
    ],
)
def test_main_and_replica_levels(on_each_node, rank, local_rank, expected):
    args = SimpleNamespace(log_level="info", log_level_replica="error", log_on_each_node=on_each_node)
    assert process_log_level(args, rank, local_rank) == expected


def test_setup_logging_sets_levels_and_passive_leaves_them():
    loggers = [logging.getLogger(n) for n in ("tunesmith", "transformers")]
    before = [lg.level for lg in loggers]
    try:
        cfg = cfg_with("log_level=debug", "log_level_replica=error")
        assert setup_logging(cfg, 0, 0) == "debug"
        assert [lg.level for lg in loggers] == [logging.DEBUG, logging.DEBUG]
        assert setup_logging(cfg, 1, 1) == "error"
        assert [lg.level for lg in loggers] == [logging.ERROR, logging.ERROR]
        setup_logging(cfg_with("log_level=passive"), 0, 0)
        assert [lg.level for lg in loggers] == [logging.ERROR, logging.ERROR]
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

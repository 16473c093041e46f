"""Arguments that used to do nothing, checked at the unit level: each test fails if its argument is ignored."""

from __future__ import annotations

import logging

import pytest

from tunesmith.config import load_config
from tunesmith.report import reporter as reporting
from tunesmith.utils.errors import TunesmithError


def cfg_of(*overrides: str, validate: bool = True):
    return load_config(None, ["model_name_or_path=builtin:tiny", *overrides], validate=validate)


class _Broken:
    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("backend down")


class _FailsOnLog:
    def log(self, metrics, step):
        raise RuntimeError("disk full")

    def log_hparams(self, params):
        pass

    def close(self):
        pass


def test_report_to_defaults_to_none_and_unnamed_backends_never_stop_a_run(tmp_path, monkeypatch, caplog):
    assert cfg_of().train.report_to == "none"
    monkeypatch.setattr(reporting, "installed", lambda name: name in ("tensorboard", "mlflow"))
    opened = {"tensorboard": _Broken, "mlflow": lambda *a: _FailsOnLog()}
    monkeypatch.setattr(reporting, "_open_backend", lambda name, args, out: opened[name]())
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        rep = reporting.build_reporter(
            cfg_of(f"output_dir={tmp_path}", "report_to=all"), tmp_path, is_main=True
        )
        rep.log({"loss": 1.0, "tokens": 3, "input_tokens": 4, "elapsed_s": 1.0}, 1)
        rep.close()
    assert "tensorboard failed to start" in caplog.text and "mlflow failed" in caplog.text
    assert (tmp_path / "trainer_log.jsonl").read_text().count("loss") == 1
    with pytest.raises(TunesmithError, match="report_to: tensorboard failed to start: backend down"):
        reporting.build_reporter(
            cfg_of(f"output_dir={tmp_path}", "report_to=tensorboard"), tmp_path, is_main=True
        )

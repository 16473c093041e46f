"""Bad config input is a one-line error naming the key (file, line, byte) and never silently accepted; a config's
own code runs only when training; secrets and URL credentials never reach messages, logs or the saved config."""

from __future__ import annotations

import logging
import sys

import pytest
import yaml

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.config.serialize import save_config
from tunesmith.report.secrets import scrub, secret_values
from tunesmith.utils.errors import ConfigError

BASE = ["model_name_or_path=builtin:tiny"]


def _error(capsys, *argv: str) -> str:
    """The one line `tunesmith ARGV` prints on stderr when it fails (exit status 2, no traceback)."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunesmith: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"seed: 1\nlearning_rate: 1e-4\nseed: 2\n",
            "line 3: key 'seed' is given twice in one mapping (also on line 1)",
        ),
        (
            b"model_name_or_path: builtin:tiny\nrun_name: caf\xe9\n",
            "line 2 (byte 46): byte 0xe9 is not UTF-8",
        ),
        ("seed: 1\n".encode("utf-16"), "is UTF-16 text"),
        (b"seed: 1\n\x00\x01\x02", "line 2 (byte 8): a NUL byte"),
        (
            b"a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            + b"".join(
                f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]\n".encode()
                for p, c in zip("abcde", "bcdef", strict=True)
            ),
            "aliases expand to more than 100000 values",
        ),
    ],
    ids=["duplicate-key", "latin-1", "utf-16", "binary", "alias-bomb"],
)
def test_bad_yaml_files(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert expected in _error(capsys, "plan", str(path), "--no-data")


def test_duplicate_json_key(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"model_name_or_path": "builtin:tiny", "seed": 1, "seed": 2}')
    assert "key 'seed' is given twice" in _error(capsys, "plan", str(path), "--no-data")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"learning_rate": float("nan")}, "'learning_rate' (cfg.yaml line 2): nan is not a finite number"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm' (cfg.yaml line 2): nan is not a finite number"),
        (
            {"num_train_epochs": float("inf")},
            "num_train_epochs' (cfg.yaml line 2): inf is not a finite number",
        ),
        ({"seed": -1}, "a seed is 0 to 4294967295"),
        ({"seed": 2**32}, "a seed is 0 to 4294967295"),
        ({"num_train_epochs": 0}, "trains no step"),
        ({"num_train_epochs": 0, "max_steps": 0}, "trains no step"),
        ({"output_dir": ""}, "'output_dir' (cfg.yaml line 2): empty"),
        ({"dataset_dir": "/no/such/folder"}, "/no/such/folder is not an existing folder"),
        ({"deepspeed": "/no/such/ds.json"}, "DeepSpeed config file /no/such/ds.json does not exist"),
    ],
)
def test_bad_values(tmp_path, capsys, settings, expected):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "builtin:tiny", **settings}, sort_keys=False))
    assert expected in _error(capsys, "plan", str(path), "--no-data")


def test_max_steps_zero_falls_back_to_epochs_as_in_hf():
    assert load_config(None, [*BASE, "max_steps=0", "num_train_epochs=2"]).train.num_train_epochs == 2


def test_output_dir_that_is_a_file_or_holds_the_model(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in _error(
        capsys, "plan", *BASE, f"output_dir={tmp_path / 'file'}", "--no-data"
    )
    model = tmp_path / "models" / "base"
    model.mkdir(parents=True)
    for out, relation in ((model, "is"), (tmp_path / "models", "contains")):
        err = _error(capsys, "plan", f"model_name_or_path={model}", f"output_dir={out}", "--no-data")
        assert f"{relation} the model_name_or_path this run reads" in err


PLUGIN = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from dataclasses import dataclass
from tunesmith.config.plugins import OPTIM

@dataclass
class P:
    momentum: float = 0.9

@OPTIM.register("reliab_sgd", params=P)
def build(param_groups, lr, params):
    import torch
    return torch.optim.SGD(param_groups, lr=lr, momentum=params.momentum)
"""


def test_plugin_modules_run_only_for_training(tmp_path, monkeypatch, capsys, caplog):
    marker = tmp_path / "imported.txt"
    (tmp_path / "reliab_plugin.py").write_text(PLUGIN.format(marker=str(marker)))
    (tmp_path / "reliab_raises.py").write_text("raise ValueError('broken plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = [*BASE, 'plugin_modules=["reliab_plugin"]', 'optim_config={"name": "reliab_sgd", "momentum": 0.5}']
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        assert main(["plan", *args, "--no-data"]) == 0
    assert not marker.exists() and "plugin_modules reliab_plugin not imported" in caplog.text
    cfg = load_config(None, args)  # what `tunesmith train` does before it trains
    assert marker.exists() and cfg.train.optim_config.params.momentum == 0.5
    with pytest.raises(ConfigError, match="importing 'reliab_raises' failed: ValueError: broken plugin"):
        load_config(None, [*BASE, 'plugin_modules=["reliab_raises"]'])
    sys.modules.pop("reliab_plugin", None)


def test_secret_reused_elsewhere_is_hidden_in_the_saved_config(tmp_path):
    token = "wandbkey-0123456789"
    cfg = load_config(None, [*BASE, "report_to=wandb", f"api_key={token}", f"run_name=run-{token}"])
    secrets = secret_values(cfg)
    text = save_config(cfg, tmp_path / "c.yaml", lambda flat: scrub(flat, secrets)).read_text()
    assert token not in text and "run-***" in text


def test_urls_credentials_and_secret_type_errors_are_hidden(tmp_path, capsys, monkeypatch):
    url = "https://alice:pw123@example.com/d.jsonl?X-Amz-Signature=deadbeef42&page=2"
    err = _error(capsys, "data", *BASE, f"dataset={url}", "--export", "/dev/null")
    assert (
        "pw123" not in err
        and "deadbeef42" not in err
        and "https://***@example.com/d.jsonl?X-Amz-Signature=***&page=2" in err
    )
    monkeypatch.setenv("MY_SERVICE_TOKEN", "envtoken-98765")
    assert "envtoken-98765" not in _error(
        capsys, "data", *BASE, "dataset=envtoken-98765", "--export", "/dev/null"
    )
    bad = tmp_path / "secret.yaml"
    bad.write_text("model_name_or_path: builtin:tiny\napi_key: {k: secretvalue-1}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(bad)
    assert "secretvalue-1" not in str(raised.value) and "hidden" in str(raised.value)

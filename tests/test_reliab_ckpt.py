"""Checkpoints load no code and no silent corruption: a torch distributed checkpoint whose `.metadata` pickle
carries anything but DCP's own classes is refused before it is unpickled (a real one still loads); checksums catch
a same-size change to any file; a garbled `trainer_state.json` is a clear error even under an old marker."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import pytest
import torch
from helpers import tiny_model

from tunesmith.dist.checkpoint_io import load_sharded, save_sharded
from tunesmith.train import checkpoint_find as ckpt_find
from tunesmith.utils.errors import ConfigError
from tunesmith.utils.hashing import file_digest


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _trained(seed: int = 0):
    model = tiny_model(seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(5, 100, (2, 8))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    return model, optimizer


def test_dcp_metadata_allow_list(tmp_path):
    model, optimizer = _trained()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_sharded(tmp_path / "dcp", model, optimizer)
        other, other_opt = _trained(seed=1)
        load_sharded(tmp_path / "dcp", other, other_opt)  # a real checkpoint loads through the allow-list
    assert all(other.state_dict()[k].equal(v) for k, v in model.state_dict().items())
    marker = tmp_path / "code-ran"
    (tmp_path / "dcp" / ".metadata").write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(ConfigError, match=r"refused to load posix.system"):
        load_sharded(tmp_path / "dcp", other, other_opt)
    assert not marker.exists()


def test_checksum_catches_a_same_size_change_and_old_markers_still_work(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    state = {"global_step": 2}
    (ckpt / ckpt_find.STATE_FILE).write_text(json.dumps(state))
    files = {ckpt_find.STATE_FILE: {"size": (ckpt / ckpt_find.STATE_FILE).stat().st_size}}
    files[ckpt_find.STATE_FILE]["blake2b"] = file_digest(ckpt / ckpt_find.STATE_FILE)
    (ckpt / ckpt_find.MARKER).write_text(json.dumps({"files": files}))
    assert ckpt_find.problem(ckpt, checksums=True) is None
    (ckpt / ckpt_find.STATE_FILE).write_text(json.dumps({"global_step": 9}))  # same size, other content
    assert ckpt_find.problem(ckpt) is None  # sizes alone do not see it
    assert "does not match its checksum" in ckpt_find.problem(ckpt, checksums=True)
    (ckpt / ckpt_find.STATE_FILE).write_text('{"global_step": 2')  # garbled, under an old sizes-only marker
    size = (ckpt / ckpt_find.STATE_FILE).stat().st_size
    (ckpt / ckpt_find.MARKER).write_text(json.dumps({ckpt_find.STATE_FILE: size}))
    assert ckpt_find.problem(ckpt, checksums=True) is None
    with pytest.raises(ConfigError, match="trainer_state.json is unreadable"):
        ckpt_find.read_state(ckpt)


def test_a_half_written_log_line_is_skipped_by_readers_and_dropped_on_resume(tmp_path, caplog):
    from tunesmith.recipes.output_dir import truncate_log
    from tunesmith.report.jsonl import read_log

    log = tmp_path / "trainer_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_log(tmp_path)] == [1, 2]
    truncate_log(log, 1)
    assert log.read_text() == '{"step": 1, "loss": 2.0}\n'
    assert "dropped 1 half-written line" in caplog.text


def test_final_export_is_all_or_nothing(tmp_path, monkeypatch):
    from tunesmith.model.saving import save_pretrained_output

    model = tiny_model()
    out = tmp_path / "out"
    real = type(model).save_pretrained

    def dies_half_way(self, path, **kwargs):
        (path / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(model), "save_pretrained", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained_output(model, None, out)
    assert list(out.iterdir()) == []  # neither half weights nor the temporary folder
    monkeypatch.setattr(type(model), "save_pretrained", real)
    save_pretrained_output(model, None, out)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors"}
    assert not list(out.glob(".export-*"))

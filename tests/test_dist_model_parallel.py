"""On 4 real processes: tensor parallel, Ulysses context parallel, dp2 x tp2, HSDP (fsdp_size 2) and expert
parallel with replicated experts (ep 2 x 2) match 1 process."""

from __future__ import annotations

import pytest
from dist_utils import read_json, run_script

pytestmark = pytest.mark.dist

TOL = 1e-5


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("model_parallel")
    run_script("run_model_parallel.py", str(work), nproc=4)
    return read_json(work / "model_parallel.json")


@pytest.mark.parametrize(
    "key",
    [
        "tp2_llama_logits",
        "tp2_llama_loss",
        "tp2_qwen2_logits",
        "tp2_qwen2_loss",
        "dp2_tp2_loss",
        "cp2_logits",
        "cp2_loss",
        "cp2_eager_sinks_window_logits",
        "dp2_cp2_logits",
        "dp2_cp2_loss",
        "hsdp_2x2_loss",
        "ep2_replicated_loss",
    ],
)
def test_matches_one_process(results, key):
    assert results[key] < TOL

"""Step arithmetic equals transformers.Trainer's, case by case."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from tunesmith.config.plan import micro_batches_per_rank, step_plan, warmup_for


@pytest.fixture(scope="module")
def hf_trainer(tmp_path_factory):
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
        )
    )
    args = TrainingArguments(output_dir=str(tmp_path_factory.mktemp("hf")), report_to="none", use_cpu=True)
    return Trainer(model=model, args=args)


CASES = list(itertools.product([1, 7, 10, 33], [1, 4], [1, 3], [1.0, 2.5, 0.3], [-1, 7], [False, True]))


@pytest.mark.parametrize(("examples", "batch", "accum", "epochs", "max_steps", "drop_last"), CASES)
def test_matches_transformers(hf_trainer, examples, batch, accum, epochs, max_steps, drop_last):
    if drop_last and examples < batch:
        pytest.skip("no full batch: transformers refuses an empty dataloader")
    args = TrainingArguments(
        output_dir=hf_trainer.args.output_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        num_train_epochs=epochs,
        max_steps=max_steps,
        dataloader_drop_last=drop_last,
        report_to="none",
        use_cpu=True,
    )
    loader = DataLoader(torch.arange(examples), batch_size=batch, drop_last=drop_last)
    hf_epochs, hf_per_epoch, *_, hf_max_steps = hf_trainer.set_initial_training_values(args, loader)
    ours = step_plan(micro_batches_per_rank(examples, batch, 1, drop_last), accum, epochs, max_steps, 0, 0.0)
    assert (ours.num_train_epochs, ours.update_steps_per_epoch, ours.max_steps) == (
        hf_epochs,
        hf_per_epoch,
        hf_max_steps,
    )


@pytest.mark.parametrize(("warmup_steps", "ratio"), [(0, 0.1), (5, 0.1), (0.25, 0.0), (0, 0.0), (0.05, 0.5)])
def test_warmup_matches_transformers(warmup_steps, ratio):
    args = TrainingArguments(output_dir="unused", warmup_steps=warmup_steps, report_to="none")
    expected = args.get_warmup_steps(37) if ratio == 0.0 or warmup_steps else None
    ours = warmup_for(37, warmup_steps, ratio)
    if expected is not None:
        assert ours == expected
    else:  # warmup_ratio, which transformers 5.23 dropped: ceil(total x ratio) as transformers 4 computed it
        assert ours == 4


def test_micro_batches_shard_like_accelerate():
    # 10 examples, batch 3 -> 4 global batches; over 3 ranks: 2 each (even_batches pads the last rank)
    assert micro_batches_per_rank(10, 3, 3, drop_last=False) == 2
    assert micro_batches_per_rank(10, 3, 3, drop_last=True) == 1
    assert micro_batches_per_rank(12, 3, 2, drop_last=False) == 2

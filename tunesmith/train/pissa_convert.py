"""pissa_convert: save the PiSSA adapter as initialised when training starts, and at the end the trained adapter
converted to a plain LoRA of the original base weights (output_dir/pissa_converted), as LLaMA-Factory does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.model.adapter_variants import PISSA_INIT_DIR, save_pissa_converted, save_pissa_init
from tunesmith.train.callbacks import Callback
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer


class PissaConvert(Callback):
    """Saves the initial adapter before the first step and the converted adapter after the last."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def on_train_begin(self, trainer: Trainer) -> None:
        if dist_env.rank() != 0:
            return
        if trainer.state.global_step == 0:
            save_pissa_init(_peft(trainer), self.output_dir)
        elif not (Path(self.output_dir) / PISSA_INIT_DIR).is_dir():
            raise ConfigError(
                f"pissa_convert: resuming needs {Path(self.output_dir) / PISSA_INIT_DIR}, saved when the run started"
            )

    def on_train_end(self, trainer: Trainer) -> None:
        if dist_env.rank() == 0:
            save_pissa_converted(_peft(trainer), self.output_dir)


def _peft(trainer: Trainer) -> Any:
    model = trainer.model
    return getattr(model, "module", model)  # through DDP


def build_pissa_convert(cfg: Any) -> PissaConvert | None:
    """The callback when `pissa_convert` is set (with pissa_init or a PiSSA init_lora_weights)."""
    methods = cfg.methods
    if not methods.pissa_convert:
        return None
    pissa = methods.pissa_init or str(methods.init_lora_weights).startswith("pissa")
    if not pissa or cfg.model.finetuning_type not in ("lora", "qlora"):
        raise ConfigError("pissa_convert: needs a PiSSA LoRA (finetuning_type: lora with pissa_init: true)")
    return PissaConvert(cfg.train.output_dir)

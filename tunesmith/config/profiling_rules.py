"""Rules for the profiling arguments, checked with the rest of the config before anything loads."""

from __future__ import annotations

import logging

from tunesmith.config.loader import TunesmithConfig
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def check_profiling(cfg: TunesmithConfig) -> None:
    """Raise ConfigError for a bad profiling window, rank list or export type (needs no model or data)."""
    p = cfg.profiling
    if not p.profile:
        return
    if p.profile_export_type == "db":
        raise ConfigError(
            f"{cfg.where('profile_export_type')}: 'db' is torch_npu's database export, which torch.profiler "
            "(CPU/CUDA) does not have; use profile_export_type: text"
        )
    if p.profile_step_start < 0:
        raise ConfigError(f"{cfg.where('profile_step_start')}: must be >= 0, got {p.profile_step_start}")
    if p.profile_step_end != -1 and p.profile_step_end <= p.profile_step_start:
        raise ConfigError(
            f"{cfg.where('profile_step_end')}: must be -1 (to the end) or greater than "
            f"{cfg.where('profile_step_start')} ({p.profile_step_start}), got {p.profile_step_end}"
        )
    bad = [r for r in p.profile_ranks if r < -1]
    if bad or not p.profile_ranks:
        raise ConfigError(
            f"{cfg.where('profile_ranks')}: a list of ranks >= 0, or [-1] for all ranks; got {p.profile_ranks}"
        )
    world = dist_env.world_size()
    if -1 not in p.profile_ranks and all(r >= world for r in p.profile_ranks) and dist_env.rank() == 0:
        logger.warning(
            "%s: this job has %d process(es) (ranks 0-%d), so no rank records a profile",
            cfg.where("profile_ranks"),
            world,
            world - 1,
        )

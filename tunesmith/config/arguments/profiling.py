"""ProfilingArguments: when and what the torch profiler records."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config.fields import arg


@dataclass
class ProfilingArguments:
    """Profiler window, ranks, detail level and output."""

    profile: bool = arg(False, "Record a profile of the training steps.", sources="003")
    profile_step_start: int = arg(0, "First profiled step (included).", minimum=0, sources="003")
    profile_step_end: int = arg(
        -1, "Step where profiling stops (excluded); -1 profiles to the end.", minimum=-1, sources="003"
    )
    profile_ranks: list[int] = arg(
        help="Ranks that record a profile; -1 means all ranks.", factory=lambda: [-1], sources="003"
    )
    profile_level: str = arg(
        "level0",
        "Detail level; higher levels record more.",
        choices=("level_none", "level0", "level1", "level2"),
        sources="003",
    )
    profile_export_type: str = arg(
        "text", "Export format of the profile.", choices=("text", "db"), sources="003"
    )
    profile_data_simplification: bool = arg(
        False, "Drop intermediate profiler data to keep results small.", sources="003"
    )
    profile_with_cpu: bool = arg(False, "Record CPU activity.", sources="003")
    profile_with_stack: bool = arg(False, "Record call stacks.", sources="003")
    profile_with_memory: bool = arg(False, "Record memory allocations.", sources="003")
    profile_record_shapes: bool = arg(False, "Record tensor shapes.", sources="003")
    profile_save_path: str = arg("./profile", "Directory the profile is written to.", sources="003")

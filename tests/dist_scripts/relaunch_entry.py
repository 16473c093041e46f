"""Stand-in for `tunesmith train`: relaunch itself under torchrun (module launch_probe) when asked, via the launcher."""

from __future__ import annotations

import sys

from tunesmith.launcher import relaunch

if __name__ == "__main__":
    code = relaunch(sys.argv[1:], module="launch_probe")
    sys.exit(2 if code is None else code)  # 2: the launcher did not relaunch

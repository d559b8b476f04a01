"""`python -m allele.watchdog [--finish-on-clean-exit] [ENGINE START OPTIONS...]`: the watchdog process.

`allele start --detach` runs it in the background; a container's watchdog service runs it directly (with
`[watchdog] restart_command` set, it then only watches heartbeats). Options it does not know are passed to
the engine it spawns (`allele start --no-watchdog ...`, e.g. `--speed 20`). ALLELE_HOME names the home.
"""

from __future__ import annotations

import argparse
import sys

from allele.kernel.config import ConfigError
from allele.kernel.paths import allele_home

from .config import load_watchdog_config
from .state import running_watchdog
from .supervisor import Supervisor, WatchdogError, configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allele.watchdog",
                                     description="Run the Allele engine under the watchdog (see README).")
    parser.add_argument("--finish-on-clean-exit", action="store_true",
                        help="an engine exiting with status 0 has finished its session: stop, do not restart")
    args, engine_args = parser.parse_known_args(argv)
    home = allele_home()
    try:
        config = load_watchdog_config(home)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    other = running_watchdog(home)
    if other is not None:
        print(f"error: a watchdog is already running for {home} (pid {other}); `allele stop` it first",
              file=sys.stderr)
        return 2
    configure_logging(home)
    try:
        return Supervisor(home, config, engine_args, finish_on_clean_exit=args.finish_on_clean_exit).run()
    except WatchdogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

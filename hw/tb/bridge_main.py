"""Launcher of the rtl-sim bridge (started by kernel/orders/rtl_sim.py, one process per session).

    python hw/tb/bridge_main.py --slots N --symbols S --port P

Builds the kernel for (N, S) under build/hw/bridge_n<N>_s<S>/ and runs the cocotb test module
`bridge`, which connects to 127.0.0.1:P and serves frames until the connection closes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hwbuild


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--symbols", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    runner, build_dir = hwbuild.build(args.slots, args.symbols, name=f"bridge_n{args.slots}_s{args.symbols}")
    hwbuild.run(runner, build_dir, "bridge", {"OK_BRIDGE_PORT": str(args.port), "OK_SLOTS": str(args.slots)},
                test_dir=build_dir / f"run-{os.getpid()}")


if __name__ == "__main__":
    main()

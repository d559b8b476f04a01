"""Building and running the order-kernel RTL with cocotb's Python runner (Icarus).

Used by the pytest files (tests/test_hw_*.py) and by the rtl-sim bridge launcher. Build
output goes under build/hw/<name>/, one directory per parameter set.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

HW = Path(__file__).resolve().parents[1]
REPO = HW.parent
RTL = HW / "rtl"
TB = HW / "tb"
BUILD = REPO / "build" / "hw"
TOPLEVEL = "order_kernel"


def sources() -> list[Path]:
    return sorted(RTL.glob("*.v"))


def require_icarus() -> None:
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise RuntimeError("Icarus Verilog (iverilog, vvp) is not on PATH; install it: apt-get install -y iverilog")


def build(slots: int, symbols: int, name: str | None = None) -> tuple[Any, Path]:
    """Compile the kernel with N=slots, NSYM=symbols; return (runner, build_dir)."""
    require_icarus()
    from cocotb_tools.runner import get_runner

    if str(TB) not in sys.path:
        sys.path.insert(0, str(TB))  # the runner hands sys.path to the simulator's Python as PYTHONPATH
    build_dir = BUILD / (name or f"kernel_n{slots}_s{symbols}")
    runner = get_runner("icarus")
    runner.build(sources=sources(), hdl_toplevel=TOPLEVEL, build_dir=build_dir, timescale=("1ns", "1ps"),
                 parameters={"N": slots, "NSYM": symbols}, build_args=["-g2005"])
    return runner, build_dir


def run(runner: Any, build_dir: Path, module: str, env: dict[str, str], test_dir: Path | None = None) -> Path:
    """Run one cocotb test module against a build; return the results file."""
    full_env = {"COCOTB_TRUST_INERTIAL_WRITES": "1", **env}
    results: Path = runner.test(hdl_toplevel=TOPLEVEL, test_module=module, build_dir=build_dir,
                                test_dir=test_dir or build_dir, extra_env=full_env)
    return results

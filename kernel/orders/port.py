"""The seam between the engine and an order kernel: frames in, frames out.

`SoftwareOrderKernel` is the Python reference model; an RTL simulation (cocotb) or the
FPGA itself sits behind the same `OrderKernelPort`, so the engine and the equivalence
tests do not care which one answers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .kernel import OrderKernel


@runtime_checkable
class OrderKernelPort(Protocol):
    def submit(self, frame: bytes) -> list[bytes]:
        """Hand one inbound frame to the kernel; return its outbound frames, in order."""
        ...


class SoftwareOrderKernel:
    """The reference model behind the port."""

    def __init__(self, slots: int) -> None:
        self.kernel = OrderKernel(slots)

    def submit(self, frame: bytes) -> list[bytes]:
        return self.kernel.step(frame)

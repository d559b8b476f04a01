"""The rtl-sim bridge: serve inbound frames from a socket to the RTL kernel (see kernel/orders/rtl_sim.py).

Connects to 127.0.0.1:OK_BRIDGE_PORT; per 64-byte frame received, drives it into the kernel,
clocks until the kernel's end-of-answer beat for it has left (out_eor) and answers with
a 2-byte little-endian count and the frames. End of stream ends the test and the simulation.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import cocotb
from okbench import reset, run_frames

FRAME_LEN = 64


def _recv_frame(sock: socket.socket) -> bytes | None:
    buf = bytearray()
    while len(buf) < FRAME_LEN:
        chunk = sock.recv(FRAME_LEN - len(buf))
        if not chunk:
            if buf:
                raise ConnectionError(f"the engine closed the bridge mid-frame ({len(buf)} of {FRAME_LEN} bytes)")
            return None
        buf += chunk
    return bytes(buf)


@cocotb.test()
async def serve(dut: Any) -> None:
    port = int(os.environ["OK_BRIDGE_PORT"])
    await reset(dut)
    # Blocking socket reads are fine here: simulated time only advances when this test awaits.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        served = 0
        while (frame := _recv_frame(sock)) is not None:
            outs = (await run_frames(dut, [frame]))[0]
            sock.sendall(len(outs).to_bytes(2, "little") + b"".join(outs))
            served += 1
    dut._log.info("bridge served %d frames", served)

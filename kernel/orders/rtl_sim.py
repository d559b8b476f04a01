"""The order kernel as Verilog RTL, simulated: an `OrderKernelPort` over a socket bridge.

`RtlSimOrderKernel(slots, symbols)` compiles hw/rtl/order_kernel.v with Icarus (N = slots,
NSYM = symbols), starts a cocotb simulation in a child process (hw/tb/bridge_main.py running the
bridge test hw/tb/bridge.py) and talks to it over one TCP connection on 127.0.0.1:

- this side listens on an ephemeral port and passes it to the child, which connects back;
- ``submit`` sends one 64-byte inbound frame; the bridge drives it into the RTL, clocks until the
  kernel's end-of-answer beat for it has left (``out_eor``: the RTL's output contract), and answers
  with a 2-byte little-endian count followed by that many 64-byte frames;
- ``close`` half-closes the connection; the bridge sees end-of-stream, ends its test, and the
  simulator exits. A child that does not exit in time is killed with its process group.

Frames are decoded here first, so a malformed or outbound frame raises `FrameError` exactly as the
software model does, and never reaches the RTL (which assumes well-formed frames).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Final

import allele.kernel

from .frames import FRAME_LEN, FrameError, decode, msg_type_of

HW_DIR: Final = Path(allele.kernel.__file__).resolve().parents[1] / "hw"
COUNT_LEN: Final = 2


class RtlSimError(RuntimeError):
    """The RTL simulation cannot be started or has stopped; the message says why and what to do."""


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Stop the simulator child and everything it started (it runs in its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


class RtlSimOrderKernel:
    """The RTL order kernel in an Icarus + cocotb simulation, behind the order-kernel port."""

    def __init__(self, slots: int, symbols: int, *, start_timeout_s: float = 300.0,
                 frame_timeout_s: float = 60.0, log_dir: Path | None = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if symbols < 1:
            raise ValueError(f"symbols must be >= 1, got {symbols}")
        launcher = HW_DIR / "tb" / "bridge_main.py"
        rtl = HW_DIR / "rtl" / "order_kernel.v"
        for needed in (launcher, rtl):
            if not needed.is_file():
                raise RtlSimError(f"order_kernel = \"rtl-sim\" needs the hw/ tree of the Allele source checkout, "
                                  f"but {needed} is missing; run from a source checkout or use "
                                  f"order_kernel = \"software\"")
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise RtlSimError(f"order_kernel = \"rtl-sim\" needs Icarus Verilog, but `{tool}` is not on PATH; "
                                  "install it (apt-get install -y iverilog) or use order_kernel = \"software\"")
        self.slots: Final = slots
        self.symbols: Final = symbols
        self._frame_timeout_s = frame_timeout_s
        self._log_path = (log_dir or HW_DIR.parent / "build" / "hw" / "bridge") / f"bridge-{os.getpid()}-{id(self)}.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        log = self._log_path.open("wb")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, str(launcher), "--slots", str(slots), "--symbols", str(symbols), "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(HW_DIR.parent))
        finally:
            log.close()
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        self._sock: socket.socket | None = None
        try:
            self._sock = self._accept(listener, start_timeout_s)
        except BaseException:
            self._finalizer()
            raise
        finally:
            listener.close()
        self._sock.settimeout(frame_timeout_s)

    def _accept(self, listener: socket.socket, timeout_s: float) -> socket.socket:
        listener.settimeout(0.5)
        waited = 0.0
        while waited < timeout_s:
            try:
                conn, _ = listener.accept()
                return conn
            except TimeoutError:
                waited += 0.5
            if self._proc.poll() is not None:
                raise RtlSimError(f"the RTL simulation exited (code {self._proc.returncode}) before it connected; "
                                  f"its log is {self._log_path}:\n{self._log_tail()}")
        raise RtlSimError(f"the RTL simulation did not connect within {timeout_s:.0f} s; its log is {self._log_path}")

    def _log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _died(self, what: str) -> RtlSimError:
        code = self._proc.poll()
        state = "is still running" if code is None else f"exited with code {code}"
        return RtlSimError(f"the RTL simulation {what}; the simulator {state}. Log {self._log_path}:\n"
                           f"{self._log_tail()}")

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._sock.recv(n - len(buf))
            except TimeoutError:
                raise self._died(f"did not answer within {self._frame_timeout_s:.0f} s") from None
            except OSError as exc:
                raise self._died(f"connection failed ({exc})") from None
            if not chunk:
                raise self._died("closed the connection")
            buf += chunk
        return bytes(buf)

    def submit(self, frame: bytes) -> list[bytes]:
        """Hand one inbound frame to the RTL; return its outbound frames, in order."""
        msg = decode(frame)
        if msg_type_of(msg) >= 0x80:
            raise FrameError(f"{msg_type_of(msg).name} is an outbound message; the kernel takes inbound frames only")
        if self._sock is None:
            raise RtlSimError("the RTL order kernel is closed; open a new session")
        try:
            self._sock.sendall(bytes(frame))
        except OSError as exc:
            raise self._died(f"cannot take a frame ({exc})") from None
        count = int.from_bytes(self._recv_exact(COUNT_LEN), "little")
        data = self._recv_exact(count * FRAME_LEN)
        return [data[k:k + FRAME_LEN] for k in range(0, len(data), FRAME_LEN)]

    def close(self, timeout_s: float = 30.0) -> None:
        """End the simulation; idempotent. The child is killed if it does not exit within `timeout_s`."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self._finalizer()

    def __enter__(self) -> RtlSimOrderKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

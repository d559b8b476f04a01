"""Hostile: loops forever on every event and every batch."""

from allele_guest import Manifest, Strategy, export_strategy


class Looper(Strategy):
    manifest = Manifest(name="looper", version="0.1.0", kind="strategy", author="tests",
                        description="Never returns.", proof="docs/strategies/looper.md")

    def on_event(self, event):
        n = 0
        while True:
            n += 1

    def on_batch(self, batch):
        while True:
            pass


StrategyApi = export_strategy(Looper)

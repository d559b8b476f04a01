"""Hostile: allocates without bound on every event and every batch."""

from allele_guest import Manifest, Strategy, export_strategy


class MemoryHog(Strategy):
    manifest = Manifest(name="memory_hog", version="0.1.0", kind="strategy", author="tests",
                        description="Eats memory.", proof="docs/strategies/memory_hog.md")

    def _eat(self):
        hoard = []
        while True:
            hoard.append(bytearray(4 << 20))

    def on_event(self, event):
        self._eat()

    def on_batch(self, batch):
        self._eat()


StrategyApi = export_strategy(MemoryHog)

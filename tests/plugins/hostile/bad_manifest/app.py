"""Hostile: a manifest whose parameter range is inverted (min above max)."""

from allele_guest import Manifest, Param, Strategy, export_strategy


class BadManifest(Strategy):
    manifest = Manifest(name="bad_manifest", version="0.1.0", kind="strategy", author="tests",
                        description="Inconsistent ranges.", proof="docs/strategies/bad_manifest.md",
                        parameters=(Param("window", "int", 10, 50, 5, 1),))

    def __init__(self):
        self.params = {"window": 10}  # skip the SDK's own checks: the host must catch this


StrategyApi = export_strategy(BadManifest)

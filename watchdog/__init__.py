"""allele.watchdog: the supervisor process that watches the engine's heartbeats.

Built with the operator's view (issue 6); empty until then.
"""

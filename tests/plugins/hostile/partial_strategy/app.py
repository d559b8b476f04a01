"""A component of a look-alike world whose strategy-api lacks on-event and on-batch."""


class StrategyApi:
    def manifest(self):
        return "{}"

    def reset(self):
        pass

    def configure(self, params):
        pass

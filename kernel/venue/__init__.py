"""The embedded default venue: an exact price-time-priority matching engine behind a seeded latency model."""

from .book import Instrument, OrderBook, RestingOrder, TopOfBook
from .latency import LatencyModel, SimulatedVenue
from .matching import PUBLIC, Emitted, MatchingEngine, market_data, quote_event, updates_for

__all__ = [
    "PUBLIC",
    "Emitted",
    "Instrument",
    "LatencyModel",
    "MatchingEngine",
    "OrderBook",
    "RestingOrder",
    "SimulatedVenue",
    "TopOfBook",
    "market_data",
    "quote_event",
    "updates_for",
]

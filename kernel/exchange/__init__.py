"""Exchange adapters behind the venue port: ccxt for real venues; credentials attached only at execution."""

"""A local venue emulator speaking the Binance spot API subset ccxt uses, backed by the simulated matching engine."""

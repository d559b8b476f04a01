"""allele.kernel.ledger: the SQLite ledger (aiosqlite, WAL). Everything is written here before it is acted on."""

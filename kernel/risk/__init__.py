"""allele.kernel.risk: the risk gate every signal passes before it can become an order."""

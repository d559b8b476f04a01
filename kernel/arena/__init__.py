"""allele.kernel.arena: organisms, honest fitness, evolution and capital allocation."""

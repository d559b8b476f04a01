"""allele.vault: credentials the host uses on a plugin's behalf; plugins never see them."""

"""allele.kernel.orders: the hardware-shaped order kernel (software reference model).

`frames` is the binary contract shared with the RTL in hw/, `kernel` the reference
model, `port` the seam behind which either the software model or an RTL simulation sits.
"""

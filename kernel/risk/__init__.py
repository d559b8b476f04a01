"""allele.kernel.risk: the risk gate every signal passes before it can become an order."""

from allele.kernel.risk.config import RiskConfig, load_risk_config
from allele.kernel.risk.gate import (
    RATE_WINDOW_NS,
    InstrumentKind,
    OrderIntent,
    RiskDecision,
    RiskGate,
    RiskState,
    RuleName,
)
from allele.kernel.risk.killswitch import KillSwitch

__all__ = [
    "RATE_WINDOW_NS",
    "InstrumentKind",
    "KillSwitch",
    "OrderIntent",
    "RiskConfig",
    "RiskDecision",
    "RiskGate",
    "RiskState",
    "RuleName",
    "load_risk_config",
]

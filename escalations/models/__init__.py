"""The data of the domain: agents, policies, runs, escalations, decisions, events, deliveries.

Rows are the truth. Writes go through escalations.services; models hold single-row facts.
One module an entity; everything is importable from here (`from escalations.models import
Escalation`), as migrations and the other apps do.
"""

from .agents import TOKEN_PREFIX, Agent, AgentToken, AgentTokenQuerySet, hash_token
from .calibration import CalibrationBin
from .decisions import Approval, Decision, FlagReview, Recommendation
from .deliveries import Delivery, DeliveryAttempt, MachineOffer, OutboxQuerySet
from .escalations import Escalation, EscalationQuerySet, Event, Run
from .policies import EscalationLevel, GateCheck, Policy, PolicyVersion

__all__ = [
    "TOKEN_PREFIX",
    "Agent",
    "AgentToken",
    "AgentTokenQuerySet",
    "Approval",
    "CalibrationBin",
    "Decision",
    "Delivery",
    "DeliveryAttempt",
    "Escalation",
    "EscalationLevel",
    "EscalationQuerySet",
    "Event",
    "FlagReview",
    "GateCheck",
    "MachineOffer",
    "OutboxQuerySet",
    "Policy",
    "PolicyVersion",
    "Recommendation",
    "Run",
    "hash_token",
]

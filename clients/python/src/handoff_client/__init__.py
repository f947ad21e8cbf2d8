"""Client for Handoff: AI agents post escalation packages, humans decide, agents resume.

from handoff_client import Handoff
client = Handoff("http://127.0.0.1:8000", token)
escalation = client.escalate(run_id=..., title=..., uncertainty=..., ...)
decided = client.wait(escalation, timeout=3600)
"""

from ._core import Backoff
from .aio import AsyncDecisionFeed, AsyncHandoff
from .approval import requires_approval
from .client import DecisionFeed, Handoff, __version__
from .errors import (
    BadRequest,
    Conflict,
    DecisionExpired,
    DecisionOutcome,
    FieldError,
    Halted,
    HandoffError,
    InstructionGiven,
    InvalidReceipt,
    InvalidSignature,
    NotFound,
    RateLimited,
    Rejected,
    ServerError,
    TakenOver,
    TransportError,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
    Withdrawn,
)
from .models import (
    Action,
    CostOfDelay,
    DecidedBy,
    Decision,
    Escalation,
    GateVerdict,
    Link,
    Option,
    PackageFields,
    Question,
    Step,
)
from .receipts import args_sha256, canonical_json, verify_receipt
from .webhooks import compute_signature, sign_webhook, verify_webhook

__all__ = [
    "Action",
    "AsyncDecisionFeed",
    "AsyncHandoff",
    "Backoff",
    "BadRequest",
    "Conflict",
    "CostOfDelay",
    "DecidedBy",
    "Decision",
    "DecisionExpired",
    "DecisionFeed",
    "DecisionOutcome",
    "Escalation",
    "FieldError",
    "GateVerdict",
    "Halted",
    "Handoff",
    "HandoffError",
    "InstructionGiven",
    "InvalidReceipt",
    "InvalidSignature",
    "Link",
    "NotFound",
    "Option",
    "PackageFields",
    "Question",
    "RateLimited",
    "Rejected",
    "ServerError",
    "Step",
    "TakenOver",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "WaitTimeout",
    "Withdrawn",
    "__version__",
    "args_sha256",
    "canonical_json",
    "compute_signature",
    "requires_approval",
    "sign_webhook",
    "verify_receipt",
    "verify_webhook",
]

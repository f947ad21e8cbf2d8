"""Every write of the domain. Views, the API, tasks and commands call these; nothing else writes.

One module an entity (agents and tokens, policies and the gate, intake, decisions and
approvals, claims, comments and flag reviews, agent callbacks, questions to the agent,
deliveries, the outbox,
the timeline, periodic jobs); this package re-exports what callers outside it use, so
`services.escalation_decide(...)` reads the same wherever it is called.

Each service runs in one transaction and announces its change after commit (events.announce,
tasks enqueued on commit). Decisions are written once, by a conditional UPDATE that only an
open escalation passes, under a one-to-one constraint.
"""

from escalations.errors import AlreadyDecided, ClaimedByOther, ClaimLost

from .agents import (
    NewAgent,
    agent_create,
    agent_for_token,
    agent_secret_roll,
    agent_update,
    token_issue,
    token_revoke,
    token_rotate,
)
from .calibration import calibration_for, calibration_maps, calibration_store
from .callbacks import escalation_acknowledge, escalation_withdraw
from .claims import (
    escalation_claim,
    escalation_claim_renew,
    escalation_reassign,
    escalation_release,
)
from .comments import escalation_comment, flag_review_record, flag_reviews_mark_fine, run_close
from .decisions import DecisionRequest, decision_errors, escalation_decide, needs_approvals
from .deliveries import (
    deliveries_sweep,
    delivery_claim,
    delivery_claim_next,
    delivery_leases,
    delivery_record_attempt,
    delivery_redeliver,
)
from .first_look import offer_claim, offer_record
from .intake import Created, escalation_create
from .periodic import (
    claims_expire,
    decisions_expire,
    escalations_delete,
    idempotency_keys_purge,
    levels_advance,
    priorities_refresh,
    timeouts_apply,
)
from .policies import (
    LevelSpec,
    gate_check,
    policy_create,
    policy_levels_replace,
    policy_update,
    rules_for,
    rules_of,
)
from .questions import escalation_answer, escalation_ask, question_errors
from .recommendations import RecommendationRequest, escalation_recommend

__all__ = [
    "AlreadyDecided",
    "ClaimLost",
    "ClaimedByOther",
    "Created",
    "DecisionRequest",
    "LevelSpec",
    "NewAgent",
    "RecommendationRequest",
    "agent_create",
    "agent_for_token",
    "agent_secret_roll",
    "agent_update",
    "calibration_for",
    "calibration_maps",
    "calibration_store",
    "claims_expire",
    "decision_errors",
    "decisions_expire",
    "deliveries_sweep",
    "delivery_claim",
    "delivery_claim_next",
    "delivery_leases",
    "delivery_record_attempt",
    "delivery_redeliver",
    "escalation_acknowledge",
    "escalation_answer",
    "escalation_ask",
    "escalation_claim",
    "escalation_claim_renew",
    "escalation_comment",
    "escalation_create",
    "escalation_decide",
    "escalation_reassign",
    "escalation_recommend",
    "escalation_release",
    "escalation_withdraw",
    "escalations_delete",
    "flag_review_record",
    "flag_reviews_mark_fine",
    "gate_check",
    "idempotency_keys_purge",
    "levels_advance",
    "needs_approvals",
    "offer_claim",
    "offer_record",
    "policy_create",
    "policy_levels_replace",
    "policy_update",
    "priorities_refresh",
    "question_errors",
    "rules_for",
    "rules_of",
    "run_close",
    "timeouts_apply",
    "token_issue",
    "token_revoke",
    "token_rotate",
]

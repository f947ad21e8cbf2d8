/** The wire objects of the agent API (shared/API.md, version 1) as TypeScript types.
 *
 * Answers are the parsed JSON as sent: the API only ever adds fields, so a newer server
 * never breaks an older client (unknown fields stay on the object). */

/** `pending`, `claimed` and `awaiting_agent` are open: a run has at most one open escalation. */
export type Status =
  | "pending"
  | "claimed"
  | "awaiting_agent"
  | "decided"
  | "resumed"
  | "withdrawn"
  | "expired"
  | (string & {});

export type DecisionKind = "option" | "instruction" | "take_over" | "halt" | (string & {});

export type Reason =
  | "approach_choice"
  | "missing_information"
  | "missing_access"
  | "irreversible_action"
  | "novelty"
  | "scope_mismatch"
  | "repeated_failure"
  | "other";

export type Impact = "low" | "medium" | "high" | "critical";

/** Who decided: `human`, `machine` (a machine reviewer), `policy` or `timeout`. */
export interface DecidedBy {
  type: "human" | "machine" | "policy" | "timeout" | (string & {});
  name?: string | null;
}

/** A decision: once made, it never changes. */
export interface Decision {
  kind: DecisionKind;
  /** The chosen option's key (`kind: "option"`). */
  option: string | null;
  /** The option's args as the reviewer left them, edited or not. */
  args: Record<string, unknown> | null;
  instruction: string | null;
  decided_by: DecidedBy;
  decided_at: string;
  /** Set when the domain's policy gives decisions a lifetime: do not act after it. */
  valid_until?: string | null;
  /** `<payload>.<signature>`: check it with `verifyReceipt` before acting. */
  receipt?: string | null;
  [extra: string]: unknown;
}

/** A reviewer's open question (status `awaiting_agent`): answer it with `answer()`. */
export interface Question {
  text: string;
  asked_by?: string | null;
  asked_at?: string | null;
  [extra: string]: unknown;
}

export interface Escalation {
  id: string;
  run_id: string;
  title: string;
  status: Status;
  tier: number | null;
  tier_reasons?: string[];
  priority: number | null;
  priority_reasons: string[];
  reason: Reason | (string & {});
  confidence: number | null;
  calibrated_confidence?: number | null;
  domain: string | null;
  question?: Question | null;
  respond_by: string | null;
  created_at: string;
  updated_at: string;
  /** The reviewer's page in the dashboard. */
  url: string;
  decision: Decision | null;
  [extra: string]: unknown;
}

export interface GateVerdict {
  verdict: "proceed" | "flag" | "escalate" | "halt" | (string & {});
  tier: number;
  reasons: string[];
  policy: string;
  [extra: string]: unknown;
}

/** Times may be `Date`s (sent as ISO 8601 UTC) or ISO strings with a zone. */
export type Time = Date | string;

export interface Step {
  at: Time;
  action: string;
  outcome?: "ok" | "failed" | "skipped" | "info";
  detail?: string;
}

export interface Option {
  key: string;
  label: string;
  description?: string;
  irreversible?: boolean;
  recommended?: boolean;
  args?: Record<string, unknown>;
}

export interface CostOfDelay {
  blocking: boolean;
  impact: Impact;
  blocked_tasks?: number;
  stuck_since?: Time;
  respond_by?: Time;
  note?: string;
}

export interface Action {
  name?: string;
  irreversible?: boolean;
  planned_scope?: number;
  actual_scope?: number;
}

export interface Link {
  label: string;
  url: string;
}

/** An escalation package (POST /api/v1/escalations); API.md gives each field's rule. */
export interface EscalationPackage {
  run_id: string;
  title: string;
  uncertainty: string;
  reason: Reason;
  confidence: number;
  history: Step[];
  options: Option[];
  cost_of_delay: CostOfDelay;
  action?: Action;
  attempts?: number;
  domain?: string;
  timeout_option?: string;
  links?: Link[];
  metadata?: Record<string, unknown>;
}

/** The gate's body (POST /api/v1/gate). */
export interface GateRequest {
  action: Action;
  confidence: number;
  attempts?: number;
  novel?: boolean;
  domain?: string;
  run_id?: string;
}

/** The answer to a reviewer's question (POST /api/v1/escalations/{id}/answer). */
export interface AnswerBody {
  text: string;
  history?: Step[];
  links?: Link[];
}

export interface DecisionsPage {
  items: Escalation[];
  next_cursor: string | null;
}

export const OPEN_STATUSES: ReadonlySet<string> = new Set(["pending", "claimed", "awaiting_agent"]);

/** Pending, claimed or awaiting the agent's answer: not decided (or withdrawn) yet. */
export function isOpen(escalation: Pick<Escalation, "status">): boolean {
  return OPEN_STATUSES.has(escalation.status);
}

/** Something the agent must act on: a decision, the end, or a question to answer. */
export function needsAgent(escalation: Pick<Escalation, "status">): boolean {
  return !isOpen(escalation) || escalation.status === "awaiting_agent";
}

/** Client for Handoff: AI agents hand paused runs to humans and resume with the decision.
 *
 *     import { Handoff } from "@handoff/client";
 *     const handoff = new Handoff("http://127.0.0.1:8000", { token });
 *     const escalation = await handoff.escalate({ run_id, title, uncertainty, ... });
 *     const decided = await handoff.wait(escalation, { timeout: 3600 });
 */
export { DEFAULT_BACKOFF, DecisionFeed, Handoff, LONG_POLL_MAX, VERSION, backoffDelay } from "./client.js";
export type { Backoff, CallOptions, EscalateOptions, FeedOptions, HandoffOptions, WaitOptions } from "./client.js";
export {
  BadRequest,
  Conflict,
  DecisionOutcome,
  Expired,
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
  errorFromResponse,
  parseRetryAfter,
} from "./errors.js";
export type { FieldError, ProblemDetails } from "./errors.js";
export { OPEN_STATUSES, isOpen, needsAgent } from "./models.js";
export type {
  Action,
  AnswerBody,
  CostOfDelay,
  DecidedBy,
  Decision,
  DecisionKind,
  DecisionsPage,
  Escalation,
  EscalationPackage,
  GateRequest,
  GateVerdict,
  Impact,
  Link,
  Option,
  Question,
  Reason,
  Status,
  Step,
  Time,
} from "./models.js";
export { argsSha256, canonicalJson, signReceipt, verifyReceipt } from "./receipts.js";
export type { ReceiptPayload, VerifyReceiptOptions } from "./receipts.js";
export { DEFAULT_TOLERANCE, SIGNATURE_HEADER, computeSignature, signWebhook, verifyWebhook } from "./webhooks.js";
export type { HeaderSource, VerifyWebhookOptions, WebhookEvent } from "./webhooks.js";

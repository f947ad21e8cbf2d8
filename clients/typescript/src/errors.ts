/** Typed errors. HTTP errors carry the RFC 9457 problem+json fields of the answer. */
import type { Decision, Escalation } from "./models.js";

/** One entry of a problem's `errors` list: a dotted `field` path (`history.3.at`). */
export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemDetails {
  status?: number;
  type?: string;
  title?: string;
  detail?: string;
  errors?: FieldError[];
  body?: Record<string, unknown>;
  headers?: Record<string, string>;
  cause?: unknown;
}

/** Base of every error this package throws on purpose. For an HTTP error answer,
 * `status`, `type`, `title`, `detail` and `errors` are the problem+json fields (empty when
 * the body was not problem+json), `body` the parsed body, `headers` the response headers
 * (lower-case names). */
export class HandoffError extends Error {
  readonly status: number | undefined;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  readonly errors: FieldError[];
  readonly body: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(detail = "", problem: ProblemDetails = {}) {
    const errors = [...(problem.errors ?? [])];
    const head = [problem.status, problem.title].filter((part) => part).join(" ");
    let message = head && detail ? `${head}: ${detail}` : head || detail;
    if (errors.length) message += ` (${errors.map((e) => `${e.field}: ${e.message}`).join("; ")})`;
    super(message, problem.cause === undefined ? undefined : { cause: problem.cause });
    this.name = new.target.name;
    this.status = problem.status;
    this.type = problem.type ?? "";
    this.title = problem.title ?? "";
    this.detail = detail;
    this.errors = errors;
    this.body = { ...(problem.body ?? {}) };
    this.headers = { ...(problem.headers ?? {}) };
  }

  /** The messages for one field path (e.g. `"cost_of_delay.impact"`); `[]` if none. */
  messagesFor(field: string): string[] {
    return this.errors.filter((e) => e.field === field).map((e) => e.message);
  }

  /** The field paths named by the problem, in order. */
  get fields(): string[] {
    return this.errors.map((e) => e.field);
  }
}

/** 400 (malformed JSON or query), 413 (body over 1 MiB) or 415 (not JSON). */
export class BadRequest extends HandoffError {}

/** 401: unknown or revoked token (or 403: an agent token on the reviewer API). */
export class Unauthorized extends HandoffError {}

/** 404: no such escalation for this agent (another agent's is not found either). */
export class NotFound extends HandoffError {}

/** 409. `openEscalation`: the run's open escalation when that is the conflict;
 * `escalation`: the one an idempotency key already names; `decision`: the decision that
 * stands when something was already decided. Each is null when the body lacks it. */
export class Conflict extends HandoffError {
  get openEscalation(): Escalation | null {
    return asObject(this.body["open_escalation"]) as Escalation | null;
  }

  get escalation(): Escalation | null {
    return asObject(this.body["escalation"]) as Escalation | null;
  }

  get decision(): Decision | null {
    const own = asObject(this.body["decision"]) as Decision | null;
    if (own) return own;
    const found = this.escalation ?? this.openEscalation;
    return found?.decision ?? null;
  }
}

/** 422: the package (or request) is invalid; `errors` names each field. */
export class ValidationFailed extends HandoffError {}

/** 429 after the retries ran out. `retryAfter` is the server's hint in seconds. */
export class RateLimited extends HandoffError {
  get retryAfter(): number | null {
    return parseRetryAfter(this.headers["retry-after"]);
  }
}

/** 5xx after the retries ran out. */
export class ServerError extends HandoffError {}

/** The server could not be reached (after the retries ran out); `cause` is fetch's error. */
export class TransportError extends HandoffError {}

/** `wait()` gave up: the escalation is still open. `escalation` is its last state. */
export class WaitTimeout extends HandoffError {
  constructor(
    readonly escalation: Escalation,
    timeout: number,
  ) {
    super(`escalation ${escalation.id} is still ${escalation.status} after ${timeout} s`);
  }
}

/** A webhook's Handoff-Signature is missing, malformed, stale or does not match. */
export class InvalidSignature extends HandoffError {}

/** A decision's receipt is malformed, forged, expired or does not match what will run. */
export class InvalidReceipt extends HandoffError {}

/** The decision tells the agent not to run the step. `escalation` carries it. */
export class DecisionOutcome extends HandoffError {
  constructor(
    readonly escalation: Escalation,
    message: string,
  ) {
    super(message);
  }

  get decision(): Decision | null {
    return this.escalation.decision;
  }
}

/** The reviewer halted the run: stop it and abandon the step. */
export class Halted extends DecisionOutcome {}

/** A human took the run over: stop it and do not resume it. */
export class TakenOver extends DecisionOutcome {}

/** The reviewer chose none of the options; `instruction` says what to do instead. */
export class InstructionGiven extends DecisionOutcome {
  get instruction(): string {
    return this.escalation.decision?.instruction ?? "";
  }
}

/** The reviewer chose an option that declines the action. */
export class Rejected extends DecisionOutcome {
  get option(): string | null {
    return this.escalation.decision?.option ?? null;
  }
}

/** The escalation ended without a decision (withdrawn): there is nothing to act on. */
export class Withdrawn extends DecisionOutcome {}

/** The decision's `valid_until` has passed: do not act on it; escalate again. */
export class Expired extends DecisionOutcome {}

const STATUS_ERRORS: Record<number, new (detail: string, problem: ProblemDetails) => HandoffError> = {
  400: BadRequest,
  401: Unauthorized,
  403: Unauthorized,
  404: NotFound,
  409: Conflict,
  413: BadRequest,
  415: BadRequest,
  422: ValidationFailed,
  429: RateLimited,
};

/** `Retry-After` as seconds from now: delta-seconds or an HTTP date; null if absent or bad. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | null {
  if (!value) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - now) / 1000);
}

/** The typed error for an error answer, from its status and problem+json body. */
export function errorFromResponse(
  status: number,
  statusText: string,
  body: unknown,
  headers: Record<string, string>,
): HandoffError {
  const problem = (asObject(body) ?? {}) as Record<string, unknown>;
  const errors: FieldError[] = Array.isArray(problem["errors"])
    ? problem["errors"]
        .filter((e): e is Record<string, unknown> => asObject(e) !== null)
        .map((e) => ({ field: String(e["field"] ?? ""), message: String(e["message"] ?? "") }))
    : [];
  const Class = STATUS_ERRORS[status] ?? (status >= 500 ? ServerError : HandoffError);
  return new Class(String(problem["detail"] || statusText || ""), {
    status,
    type: String(problem["type"] ?? ""),
    title: String(problem["title"] ?? ""),
    errors,
    body: problem,
    headers,
  });
}

function asObject(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** The client of a Handoff server's agent API (shared/API.md), on the platform's fetch. */
import {
  errorFromResponse,
  HandoffError,
  parseRetryAfter,
  TransportError,
  WaitTimeout,
} from "./errors.js";
import type {
  AnswerBody,
  DecisionsPage,
  Escalation,
  EscalationPackage,
  GateRequest,
  GateVerdict,
} from "./models.js";
import { needsAgent } from "./models.js";

export const VERSION = "0.1.0";
const API = "/api/v1";
/** Seconds: the API's cap for `?wait=N`. */
export const LONG_POLL_MAX = 60;

/** Exponential backoff with full jitter: attempt n sleeps U(0, min(cap, base * 2^n)) seconds.
 * A `Retry-After` from the server is a floor: the client never comes back sooner.
 * `maxRetryAfter` bounds what one call is willing to sleep before giving up. */
export interface Backoff {
  base: number;
  cap: number;
  maxRetries: number;
  maxRetryAfter: number;
}

export const DEFAULT_BACKOFF: Backoff = { base: 0.5, cap: 30, maxRetries: 5, maxRetryAfter: 120 };

export function backoffDelay(backoff: Backoff, attempt: number, retryAfter: number | null = null): number {
  if (retryAfter !== null) return retryAfter + Math.random() * Math.min(1, backoff.base);
  return Math.random() * Math.min(backoff.cap, backoff.base * 2 ** attempt);
}

export interface HandoffOptions {
  /** The agent's bearer token. */
  token: string;
  /** Seconds a request may take (long-polls get their wait on top). Default 30. */
  timeout?: number;
  /** Retries and their pacing; `maxRetries` defaults to 5. */
  backoff?: Partial<Backoff>;
  /** A fetch to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
  userAgent?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface EscalateOptions extends CallOptions {
  /** Sent as `Idempotency-Key`; a fresh UUID by default, the same on every retry. */
  idempotencyKey?: string;
}

export interface WaitOptions extends CallOptions {
  /** Seconds to wait in all; undefined waits for ever. 0: one look, no waiting. */
  timeout?: number;
}

export interface FeedOptions extends CallOptions {
  /** Resume after this cursor (from a previous feed's `cursor`). */
  after?: string;
  /** 0: stop once caught up. 1-60: long-poll for new decisions and never stop. */
  wait?: number;
  limit?: number;
}

interface Send {
  method: string;
  path: string;
  query?: Record<string, string | number>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Seconds for this request; the client's timeout by default. */
  timeout?: number;
  /** `all`: retrying is safe whatever happened; `connect`: only if the request provably
   * never reached the server. */
  retry?: "all" | "connect";
  signal?: AbortSignal;
}

interface Answer {
  status: number;
  statusText: string;
  headers: Record<string, string>;
  body: unknown;
}

type Outcome = Answer | { error: unknown };

const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Did the request provably never reach the server? (a refused or unresolved connection) */
function neverArrived(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && CONNECT_ERRORS.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function retryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

function sleep(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, seconds * 1000));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function idOf(escalation: Escalation | string): string {
  return typeof escalation === "string" ? escalation : escalation.id;
}

/** Client of a Handoff server's agent API, for one agent token.
 *
 * Every method resolves to the parsed answer or rejects with a `HandoffError` subclass.
 * `escalate` is always idempotent; `get`, `ack`, `withdraw` and `answer` retry network
 * errors, 429 and 5xx up to `maxRetries` times with backoff, jitter and `Retry-After`. */
export class Handoff {
  readonly baseUrl: string;
  readonly timeout: number;
  readonly backoff: Backoff;
  private readonly token: string;
  private readonly fetch: typeof fetch;
  private readonly userAgent: string;

  constructor(baseUrl: string, options: HandoffOptions) {
    if (!options?.token) throw new TypeError("Handoff: a token is required");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeout = options.timeout ?? 30;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.userAgent = options.userAgent ?? `handoff-client-typescript/${VERSION}`;
  }

  /** Hand a paused run to a human. A retry (after a network error, 429 or 5xx) sends the
   * same `Idempotency-Key`, so it creates nothing twice. Rejects with ValidationFailed
   * (422) naming each bad field, Conflict (409) when the run already has an open
   * escalation (`.openEscalation`) or the key was used with another body. */
  async escalate(pkg: EscalationPackage, options: EscalateOptions = {}): Promise<Escalation> {
    const key = options.idempotencyKey ?? globalThis.crypto.randomUUID();
    return (await this.call({
      method: "POST",
      path: `${API}/escalations`,
      body: pkg,
      headers: { "Idempotency-Key": key },
      signal: options.signal,
    })) as Escalation;
  }

  /** The escalation's current state. */
  async get(escalation: Escalation | string, options: CallOptions = {}): Promise<Escalation> {
    const path = `${API}/escalations/${encodeURIComponent(idOf(escalation))}`;
    return (await this.call({ method: "GET", path, signal: options.signal })) as Escalation;
  }

  /** Resolve once the escalation needs the agent: decided, withdrawn, resumed or expired,
   * or `awaiting_agent` (a reviewer's `question` to `answer`).
   *
   * Built on the long-poll (`?wait=N`, N <= 60, looped) with `If-None-Match`, reconnecting
   * after network errors, 429 and 5xx with backoff, jitter and `Retry-After`. Rejects with
   * WaitTimeout (carrying the last state) after `timeout` seconds; an escalation object
   * that already needs the agent resolves at once without a request. */
  async wait(escalation: Escalation | string, options: WaitOptions = {}): Promise<Escalation> {
    let current = typeof escalation === "string" ? null : escalation;
    if (current && needsAgent(current)) return current;
    const { timeout, signal } = options;
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout * 1000;
    const path = `${API}/escalations/${encodeURIComponent(idOf(escalation))}`;
    let etag: string | undefined;
    let failures = 0;
    let last: Outcome | undefined;
    for (;;) {
      const remaining = (deadline - Date.now()) / 1000;
      if (remaining <= 0 || (timeout === 0 && last !== undefined)) {
        if (current) throw new WaitTimeout(current, timeout ?? 0);
        if (last && "error" in last) throw this.transportError("GET", path, last.error);
        if (last) throw errorFromResponse(last.status, last.statusText, last.body, last.headers);
      }
      const seconds =
        timeout === 0 ? 0 : remaining > LONG_POLL_MAX ? LONG_POLL_MAX : Math.max(1, Math.ceil(remaining));
      const started = Date.now();
      last = await this.perform({
        method: "GET",
        path,
        query: { wait: seconds },
        headers: etag ? { "If-None-Match": etag } : {},
        timeout: seconds + this.timeout,
        signal,
      });
      if ("error" in last || retryableStatus(last.status)) {
        const retryAfter = "error" in last ? null : parseRetryAfter(last.headers["retry-after"]);
        const delay = backoffDelay(this.backoff, Math.min(failures, 10), retryAfter);
        failures += 1;
        await sleep(Math.max(0, Math.min(delay, remaining)), signal);
        continue;
      }
      failures = 0;
      if (last.status >= 400 && last.status !== 304) {
        throw errorFromResponse(last.status, last.statusText, last.body, last.headers);
      }
      if (last.status !== 304) {
        current = last.body as Escalation;
        etag = last.headers["etag"];
        if (needsAgent(current)) return current;
      }
      if (timeout !== 0) await this.pace(started, seconds, remaining, signal);
    }
  }

  /** The decided escalations of this agent, oldest first, from cursor `after`.
   *
   * `wait: 0` ends once caught up; `wait: N` (1-60) long-polls for new ones for ever
   * (break out of the loop yourself), reconnecting after network errors, 429 and 5xx.
   * The feed's `cursor` is safe to persist after handling the item just yielded. */
  decisions(options: FeedOptions = {}): DecisionFeed {
    const wait = options.wait ?? 0;
    if (!(wait >= 0 && wait <= LONG_POLL_MAX)) {
      throw new RangeError(`wait must be 0-${LONG_POLL_MAX} seconds`);
    }
    return new DecisionFeed(this, { ...options, wait });
  }

  /** Ask the governance policy before acting: proceed, flag, escalate or halt. Every call
   * is counted, so it is retried only when it provably never reached the server. */
  async gate(request: GateRequest, options: CallOptions = {}): Promise<GateVerdict> {
    const body = { attempts: 0, novel: false, ...request };
    return (await this.call({
      method: "POST",
      path: `${API}/gate`,
      body,
      retry: "connect",
      signal: options.signal,
    })) as GateVerdict;
  }

  /** Confirm the run resumed with the decision (status `resumed`). Idempotent; Conflict
   * (409) before a decision, or after its `valid_until` (`decision-expired`). */
  async ack(escalation: Escalation | string, options: CallOptions = {}): Promise<Escalation> {
    return this.post(escalation, "ack", undefined, options);
  }

  /** Take an open escalation back (the agent solved it alone). Conflict (409) once decided:
   * then the error's `decision` may carry the decision that stands. */
  async withdraw(escalation: Escalation | string, options: CallOptions = {}): Promise<Escalation> {
    return this.post(escalation, "withdraw", undefined, options);
  }

  /** Answer a reviewer's question (status `awaiting_agent`, the question in `question`):
   * the escalation goes back to the queue. Conflict (409) when no question is open. */
  async answer(
    escalation: Escalation | string,
    body: AnswerBody | string,
    options: CallOptions = {},
  ): Promise<Escalation> {
    const answer = typeof body === "string" ? { text: body } : body;
    return this.post(escalation, "answer", answer, options);
  }

  // -- the decisions feed's pages (used by DecisionFeed)

  /** @internal One page of the feed; `null` after a retryable failure (already slept). */
  async feedPage(
    cursor: string | undefined,
    wait: number,
    limit: number,
    failures: number,
    signal?: AbortSignal,
  ): Promise<DecisionsPage | null> {
    const query: Record<string, string | number> = { limit, wait };
    if (cursor) query["after"] = cursor;
    const send: Send = { method: "GET", path: `${API}/decisions`, query, timeout: wait + this.timeout, signal };
    if (wait === 0) return (await this.call(send)) as DecisionsPage;
    const outcome = await this.perform(send);
    if ("error" in outcome || retryableStatus(outcome.status)) {
      const retryAfter = "error" in outcome ? null : parseRetryAfter(outcome.headers["retry-after"]);
      await sleep(backoffDelay(this.backoff, Math.min(failures, 10), retryAfter), signal);
      return null;
    }
    if (outcome.status >= 400) {
      throw errorFromResponse(outcome.status, outcome.statusText, outcome.body, outcome.headers);
    }
    return outcome.body as DecisionsPage;
  }

  /** @internal Never ask again sooner than about a second after the last long-poll (a
   * server or proxy that answers long-polls at once must not be hammered). */
  async pace(started: number, seconds: number, remaining: number, signal?: AbortSignal): Promise<void> {
    const elapsed = (Date.now() - started) / 1000;
    if (seconds >= 1 && elapsed < 1) await sleep(Math.min(remaining, 1 + Math.random()), signal);
  }

  // -- HTTP

  private async post(
    escalation: Escalation | string,
    verb: string,
    body: unknown,
    options: CallOptions,
  ): Promise<Escalation> {
    const path = `${API}/escalations/${encodeURIComponent(idOf(escalation))}/${verb}`;
    return (await this.call({ method: "POST", path, body, signal: options.signal })) as Escalation;
  }

  /** `request`, then the JSON body of a 2xx, or the typed error of an error answer. */
  private async call(send: Send): Promise<unknown> {
    const answer = await this.request(send);
    if (answer.status >= 400) {
      throw errorFromResponse(answer.status, answer.statusText, answer.body, answer.headers);
    }
    return answer.body;
  }

  /** Send with retries: the very same request (so the same Idempotency-Key), backoff with
   * jitter, and at least the server's Retry-After. Retries network errors (see
   * `Send.retry`), 429 and 5xx; gives up on a Retry-After longer than `maxRetryAfter`. */
  private async request(send: Send): Promise<Answer> {
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.perform(send);
      let delay: number;
      if ("error" in outcome) {
        const retryable = (send.retry ?? "all") === "all" || neverArrived(outcome.error);
        if (attempt >= this.backoff.maxRetries || !retryable || send.signal?.aborted) {
          throw this.transportError(send.method, send.path, outcome.error);
        }
        delay = backoffDelay(this.backoff, attempt);
      } else {
        if (attempt >= this.backoff.maxRetries || !retryableStatus(outcome.status)) return outcome;
        const retryAfter = parseRetryAfter(outcome.headers["retry-after"]);
        if (retryAfter !== null && retryAfter > this.backoff.maxRetryAfter) return outcome;
        delay = backoffDelay(this.backoff, attempt, retryAfter);
      }
      await sleep(delay, send.signal);
    }
  }

  /** One HTTP exchange; a network failure or timeout comes back as `{error}`. An abort
   * by the caller's signal rejects. */
  private async perform(send: Send): Promise<Outcome> {
    const url = new URL(this.baseUrl + send.path);
    for (const [name, value] of Object.entries(send.query ?? {})) url.searchParams.set(name, String(value));
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.token}`,
      Accept: "application/json",
      "User-Agent": this.userAgent,
      ...send.headers,
    };
    let body: string | undefined;
    if (send.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(send.body);
    }
    const timeout = AbortSignal.timeout((send.timeout ?? this.timeout) * 1000);
    const signal = send.signal ? AbortSignal.any([send.signal, timeout]) : timeout;
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, { method: send.method, headers, body, signal });
      text = await response.text();
    } catch (error) {
      if (send.signal?.aborted) throw send.signal.reason;
      return { error };
    }
    const answerHeaders: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      answerHeaders[name.toLowerCase()] = value;
    });
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
        if (response.status < 300) {
          return { error: new HandoffError(`${send.method} ${send.path}: the answer is not JSON`) };
        }
      }
    }
    return { status: response.status, statusText: response.statusText, headers: answerHeaders, body: parsed };
  }

  private transportError(method: string, path: string, error: unknown): TransportError {
    const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new TransportError(`${method} ${path}: ${why}`, { cause: error });
  }
}

/** The decisions feed as an async iterable; `cursor` follows what was handed out. */
export class DecisionFeed implements AsyncIterable<Escalation> {
  /** Safe to persist after handling the item just yielded: resuming from it repeats
   * nothing unhandled (delivery is at least once: dedupe on the escalation's id). */
  cursor: string | undefined;
  private readonly options: Required<Pick<FeedOptions, "wait" | "limit">> & FeedOptions;

  constructor(
    private readonly client: Handoff,
    options: FeedOptions & { wait: number },
  ) {
    this.cursor = options.after;
    this.options = { limit: 100, ...options };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Escalation> {
    const { wait, limit, signal } = this.options;
    let cursor = this.cursor;
    let failures = 0;
    for (;;) {
      const started = Date.now();
      const page = await this.client.feedPage(cursor, wait, limit, failures, signal);
      if (page === null) {
        failures += 1;
        continue;
      }
      failures = 0;
      const items = page.items ?? [];
      const next = page.next_cursor || cursor;
      for (const [index, item] of items.entries()) {
        this.cursor = index === items.length - 1 ? next : cursor;
        yield item;
      }
      cursor = next;
      this.cursor = cursor;
      if (!items.length) {
        if (wait === 0) return;
        await this.client.pace(started, wait, Infinity, signal);
      }
    }
  }
}

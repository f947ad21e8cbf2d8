/** Retries, Retry-After, idempotency across retries and problem+json errors, against a
 * scripted fetch (no server): what a live server will not do on demand. */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BadRequest,
  Conflict,
  Handoff,
  RateLimited,
  ServerError,
  TransportError,
  ValidationFailed,
  WaitTimeout,
  parseRetryAfter,
  type Escalation,
} from "../src/index.js";
import { pkg } from "./helpers.js";

type Step = Response | Error | ((request: Request) => Response);

/** A fetch that answers from a script and records every request. */
function scripted(...steps: Step[]): { fetch: typeof fetch; requests: Request[] } {
  const requests: Request[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    requests.push(request);
    const step = steps.shift();
    if (step === undefined) throw new Error("the script ran out");
    if (step instanceof Error) throw step;
    return typeof step === "function" ? step(request) : step;
  }) as typeof fetch;
  return { fetch: fetchImpl, requests };
}

const ESCALATION: Escalation = {
  id: "8f0c6b1e-0000-4000-8000-000000000001",
  run_id: "run-42",
  title: "t",
  status: "pending",
  tier: 3,
  priority: 50,
  priority_reasons: [],
  reason: "irreversible_action",
  confidence: 0.5,
  domain: "default",
  respond_by: null,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  url: "http://h/escalations/8f0c",
  decision: null,
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const type = status >= 400 ? "application/problem+json" : "application/json";
  return new Response(status === 304 ? null : JSON.stringify(body), { status, headers: { "Content-Type": type, ...headers } });
}

const refused = (): Error => Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } });
const reset = (): Error => Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNRESET" } });
const fast = { base: 0.001, cap: 0.01, maxRetries: 3, maxRetryAfter: 5 };

test("escalate retries 5xx, 429 and network errors with the same Idempotency-Key", async () => {
  const { fetch, requests } = scripted(
    json(503, { title: "Unavailable", status: 503 }),
    reset(),
    json(429, { title: "Too many", status: 429 }, { "Retry-After": "1" }),
    json(201, ESCALATION),
  );
  const handoff = new Handoff("http://h/", { token: "t", fetch, backoff: fast });
  const started = Date.now();
  const escalation = await handoff.escalate(pkg());
  assert.equal(escalation.id, ESCALATION.id);
  assert.equal(requests.length, 4);
  const keys = new Set(requests.map((r) => r.headers.get("idempotency-key")));
  assert.equal(keys.size, 1);
  assert.match([...keys][0]!, /^[0-9a-f-]{36}$/);
  assert.ok(Date.now() - started >= 1000, "Retry-After is a floor");
  assert.equal(requests[0]!.headers.get("authorization"), "Bearer t");
  assert.equal(requests[0]!.url, "http://h/api/v1/escalations");
  const sent = JSON.parse(await requests[0]!.text());
  assert.match(sent.history[0].at, /Z$/, "Dates are sent as ISO 8601 UTC");
});

test("a Retry-After longer than maxRetryAfter is not slept: RateLimited with the hint", async () => {
  const { fetch, requests } = scripted(json(429, { title: "Too many", status: 429, detail: "slow down" }, { "Retry-After": "600" }));
  const error = await new Handoff("http://h", { token: "t", fetch, backoff: fast }).get("x").catch((e) => e);
  assert.ok(error instanceof RateLimited);
  assert.equal(error.retryAfter, 600);
  assert.equal(requests.length, 1);
});

test("retries run out: ServerError, TransportError with the cause", async () => {
  const five = scripted(...Array.from({ length: 4 }, () => json(500, { title: "Oops", status: 500 })));
  const error = await new Handoff("http://h", { token: "t", fetch: five.fetch, backoff: fast }).ack("x").catch((e) => e);
  assert.ok(error instanceof ServerError);
  assert.equal(five.requests.length, 4);
  const net = scripted(reset(), reset(), reset(), reset());
  const down = await new Handoff("http://h", { token: "t", fetch: net.fetch, backoff: fast }).get("x").catch((e) => e);
  assert.ok(down instanceof TransportError);
  assert.ok(down.cause instanceof TypeError);
});

test("the gate is retried only when the request provably never arrived", async () => {
  const verdict = { verdict: "escalate", tier: 3, reasons: ["irreversible"], policy: "default" };
  const ok = scripted(refused(), json(200, verdict));
  const handoff = new Handoff("http://h", { token: "t", fetch: ok.fetch, backoff: fast });
  assert.equal((await handoff.gate({ action: { name: "x" }, confidence: 0.5 })).verdict, "escalate");
  assert.equal(ok.requests.length, 2);
  const body = JSON.parse(await ok.requests[1]!.text());
  assert.deepEqual(body, { attempts: 0, novel: false, action: { name: "x" }, confidence: 0.5 });
  const lost = scripted(reset());
  const error = await new Handoff("http://h", { token: "t", fetch: lost.fetch, backoff: fast })
    .gate({ action: { name: "x" }, confidence: 0.5 })
    .catch((e) => e);
  assert.ok(error instanceof TransportError);
  assert.equal(lost.requests.length, 1);
});

test("problem+json becomes a typed error with its field paths", async () => {
  const problem = {
    type: "https://handoff.dev/problems/incomplete-package",
    title: "Escalation package is incomplete",
    status: 422,
    detail: "2 fields need attention",
    errors: [
      { field: "options", message: "at least one option is required" },
      { field: "cost_of_delay.impact", message: "must be one of low, medium, high, critical" },
    ],
  };
  const { fetch } = scripted(json(422, problem));
  const error = await new Handoff("http://h", { token: "t", fetch }).escalate(pkg()).catch((e) => e);
  assert.ok(error instanceof ValidationFailed);
  assert.deepEqual(error.fields, ["options", "cost_of_delay.impact"]);
  assert.deepEqual(error.messagesFor("cost_of_delay.impact"), ["must be one of low, medium, high, critical"]);
  assert.equal(error.type, problem.type);
  assert.equal(error.detail, "2 fields need attention");
  assert.equal(
    error.message,
    "422 Escalation package is incomplete: 2 fields need attention (options: at least one option is required; " +
      "cost_of_delay.impact: must be one of low, medium, high, critical)",
  );
  const html = scripted(new Response("<h1>Bad gateway</h1>", { status: 413, statusText: "Too Large" }));
  const big = await new Handoff("http://h", { token: "t", fetch: html.fetch }).escalate(pkg()).catch((e) => e);
  assert.ok(big instanceof BadRequest);
  assert.equal(big.status, 413);
});

test("Conflict carries the decision that stands", async () => {
  const decided = {
    ...ESCALATION,
    status: "decided",
    decision: { kind: "halt", option: null, args: null, instruction: null, decided_by: { type: "human", name: "a" }, decided_at: "2026-01-01T00:00:00Z" },
  };
  const { fetch } = scripted(json(409, { title: "Conflict", status: 409, escalation: decided }));
  const error = await new Handoff("http://h", { token: "t", fetch }).withdraw("x").catch((e) => e);
  assert.ok(error instanceof Conflict);
  assert.equal(error.decision?.kind, "halt");
  assert.equal(error.openEscalation, null);
});

test("wait sends If-None-Match, rides out 304 and 503, returns on a question", async () => {
  const { fetch, requests } = scripted(
    json(200, ESCALATION, { ETag: '"v1"' }),
    json(304, null, { ETag: '"v1"' }),
    json(503, { title: "Down", status: 503 }, { "Retry-After": "0" }),
    json(200, { ...ESCALATION, status: "awaiting_agent", question: { text: "Which rows?" } }),
  );
  const handoff = new Handoff("http://h", { token: "t", fetch, backoff: fast });
  const originalRandom = Math.random;
  Math.random = () => 0; // no pacing jitter
  try {
    const result = await handoff.wait(ESCALATION.id, { timeout: 30 });
    assert.equal(result.status, "awaiting_agent");
    assert.equal(result.question?.text, "Which rows?");
  } finally {
    Math.random = originalRandom;
  }
  assert.equal(new URL(requests[0]!.url).searchParams.get("wait"), "30");
  assert.equal(requests[1]!.headers.get("if-none-match"), '"v1"');
});

test("wait with timeout 0 looks once", async () => {
  const { fetch, requests } = scripted(json(200, ESCALATION));
  const error = await new Handoff("http://h", { token: "t", fetch }).wait(ESCALATION.id, { timeout: 0 }).catch((e) => e);
  assert.ok(error instanceof WaitTimeout);
  assert.equal(new URL(requests[0]!.url).searchParams.get("wait"), "0");
});

test("an abort signal stops a wait at once", async () => {
  const controller = new AbortController();
  const fetchImpl = ((_: unknown, init?: RequestInit) =>
    new Promise((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)))) as typeof fetch;
  const waiting = new Handoff("http://h", { token: "t", fetch: fetchImpl }).wait("x", { signal: controller.signal });
  setTimeout(() => controller.abort(new Error("stop")), 50);
  await assert.rejects(waiting, /stop/);
});

test("answer posts the text and history", async () => {
  const { fetch, requests } = scripted(json(200, { ...ESCALATION, status: "pending" }), json(409, { title: "No question", status: 409 }));
  const handoff = new Handoff("http://h", { token: "t", fetch });
  await handoff.answer(ESCALATION, { text: "Three rows.", history: [{ at: "2026-01-01T00:00:00Z", action: "Counted" }] });
  assert.equal(requests[0]!.url, `http://h/api/v1/escalations/${ESCALATION.id}/answer`);
  assert.deepEqual(JSON.parse(await requests[0]!.text()), { text: "Three rows.", history: [{ at: "2026-01-01T00:00:00Z", action: "Counted" }] });
  assert.ok((await handoff.answer(ESCALATION.id, "again").catch((e) => e)) instanceof Conflict);
});

test("Retry-After: seconds or an HTTP date", () => {
  assert.equal(parseRetryAfter("7"), 7);
  assert.equal(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString(), Date.now()) ! > 8, true);
  assert.equal(parseRetryAfter("soon"), null);
  assert.equal(parseRetryAfter(undefined), null);
});

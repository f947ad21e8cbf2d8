/** The client against the real server (started by run.ts), over real HTTP. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Conflict,
  Handoff,
  NotFound,
  Unauthorized,
  ValidationFailed,
  WaitTimeout,
  isOpen,
  verifyWebhook,
} from "../src/index.js";
import { client, deliveryFor, env, live, pkg, reviewer, runId, sleep } from "./helpers.js";

describe("live: the agent API", () => {
  test("escalate is idempotent: a replayed key answers the same escalation", async () => {
    const handoff = client();
    const body = pkg();
    const key = `ts-${globalThis.crypto.randomUUID()}`;
    const first = await handoff.escalate(body, { idempotencyKey: key });
    assert.equal(first.status, "pending");
    assert.ok(isOpen(first));
    assert.ok((first.tier ?? 0) >= 3, "irreversible: a human decides");
    assert.ok(first.url.endsWith(first.id));
    assert.equal(first.decision, null);
    const again = await handoff.escalate(body, { idempotencyKey: key });
    assert.equal(again.id, first.id);
    const conflict = await handoff.escalate({ ...body, title: "Another body" }, { idempotencyKey: key }).catch((e) => e);
    assert.ok(conflict instanceof Conflict, String(conflict));
    assert.equal(conflict.status, 409);
    await handoff.withdraw(first);
  });

  test("a run has one open escalation: the 409 links it", async () => {
    const handoff = client();
    const first = await handoff.escalate(pkg());
    const error = await handoff.escalate(pkg({ run_id: first.run_id })).catch((e) => e);
    assert.ok(error instanceof Conflict);
    assert.equal(error.openEscalation?.id, first.id);
    await handoff.withdraw(first);
  });

  test("an invalid package names each field by its path", async () => {
    const body = pkg({ uncertainty: "I'm stuck", options: [] });
    body.cost_of_delay = { blocking: true, impact: "dire" as never };
    body.history = [{ at: "not a time", action: "x" }];
    const error = await client().escalate(body).catch((e) => e);
    assert.ok(error instanceof ValidationFailed, String(error));
    assert.equal(error.status, 422);
    assert.match(error.type, /^http/);
    for (const field of ["uncertainty", "options", "cost_of_delay.impact", "history.0.at"]) {
      assert.ok(error.fields.includes(field), `${field} in ${error.fields.join(", ")}`);
      assert.ok(error.messagesFor(field).length > 0);
    }
    assert.match(error.message, /cost_of_delay\.impact: /);
  });

  test("wait long-polls until a reviewer decides; ack is idempotent", async () => {
    const handoff = client();
    const escalation = await handoff.escalate(pkg());
    const started = Date.now();
    const decided = reviewer.decideLater(escalation.run_id, {
      option: "drop",
      args: { table: "billing_legacy_v1" },
      instruction: "Take a dump first.",
    }, 1000);
    const result = await handoff.wait(escalation, { timeout: 30 });
    assert.ok(Date.now() - started >= 1000);
    await decided;
    // "resumed" when the run's webhook was delivered before the wait read the row.
    assert.ok(["decided", "resumed"].includes(result.status), result.status);
    assert.equal(result.decision?.kind, "option");
    assert.equal(result.decision?.option, "drop");
    assert.deepEqual(result.decision?.args, { table: "billing_legacy_v1" });
    assert.equal(result.decision?.instruction, "Take a dump first.");
    assert.equal(result.decision?.decided_by.type, "human");
    assert.equal((await handoff.ack(result)).status, "resumed");
    assert.equal((await handoff.ack(result.id)).status, "resumed");
    const late = await handoff.withdraw(result).catch((e) => e);
    assert.ok(late instanceof Conflict);
  });

  test("wait gives up after its timeout with the last state; withdraw ends it", async () => {
    const handoff = client();
    const escalation = await handoff.escalate(pkg());
    const started = Date.now();
    const error = await handoff.wait(escalation.id, { timeout: 1.5 }).catch((e) => e);
    const took = Date.now() - started;
    assert.ok(error instanceof WaitTimeout, String(error));
    assert.ok(took >= 1400 && took < 10_000, `${took} ms`);
    assert.ok(isOpen(error.escalation));
    const withdrawn = await handoff.withdraw(escalation);
    assert.equal(withdrawn.status, "withdrawn");
    assert.equal((await handoff.wait(escalation, { timeout: 5 })).status, "withdrawn");
    const once = await handoff.wait(escalation.id, { timeout: 0 });
    assert.equal(once.status, "withdrawn");
  });

  test("another agent's escalation is not found; a bad token is unauthorized", async () => {
    const escalation = await client().escalate(pkg());
    const other = client({ token: env("HANDOFF_OTHER_TOKEN") });
    assert.ok((await other.get(escalation.id).catch((e) => e)) instanceof NotFound);
    assert.ok((await other.withdraw(escalation.id).catch((e) => e)) instanceof NotFound);
    const stranger = new Handoff(live.url, { token: "hnd_not_a_token" });
    const error = await stranger.get(escalation.id).catch((e) => e);
    assert.ok(error instanceof Unauthorized, String(error));
    assert.equal(error.status, 401);
    await client().withdraw(escalation);
  });

  test("the decisions feed pages oldest first and its cursor resumes", async () => {
    const handoff = client();
    const everything = [];
    for await (const item of handoff.decisions()) everything.push(item);
    const before = handoff.decisions();
    for await (const _ of before); // caught up: its cursor is the end
    const escalation = await handoff.escalate(pkg());
    await reviewer.decide(escalation.id, { kind: "instruction", instruction: "Ask the billing team first." });
    const feed = handoff.decisions({ after: before.cursor });
    const fresh = [];
    for await (const item of feed) fresh.push(item);
    assert.ok(fresh.some((item) => item.id === escalation.id));
    const mine = fresh.find((item) => item.id === escalation.id)!;
    assert.equal(mine.decision?.kind, "instruction");
    assert.notEqual(feed.cursor, before.cursor);
    const again = [];
    for await (const item of handoff.decisions({ limit: 2 })) again.push(item);
    assert.ok(again.length >= everything.length + 1, "paging with limit 2 reaches the end");
  });

  test("the decisions feed long-polls for the next decision", async () => {
    const handoff = client();
    const start = handoff.decisions();
    for await (const _ of start);
    const escalation = await handoff.escalate(pkg());
    const started = Date.now();
    void reviewer.decideLater(escalation.run_id, { kind: "halt" }, 800);
    const controller = new AbortController();
    const feed = handoff.decisions({ after: start.cursor, wait: 20, signal: controller.signal });
    let found;
    for await (const item of feed) {
      if (item.id === escalation.id) {
        found = item;
        break;
      }
    }
    assert.equal(found?.decision?.kind, "halt");
    assert.ok(Date.now() - started < 15_000);
  });

  test("the gate answers a verdict with reasons", async () => {
    const verdict = await client().gate({ action: { name: "drop_table", irreversible: true }, confidence: 0.9 });
    assert.ok(["proceed", "flag", "escalate", "halt"].includes(verdict.verdict));
    assert.ok(verdict.tier >= 3);
    assert.ok(verdict.reasons.length > 0);
  });

  test("the decision's webhook verifies with the agent's secret", async () => {
    const handoff = client();
    const escalation = await handoff.escalate(pkg());
    await reviewer.decide(escalation.id, { option: "keep" });
    const { headers, body } = await deliveryFor(escalation.id);
    const event = verifyWebhook(headers, body, live.secret);
    assert.equal(event.event, "escalation.decided");
    assert.equal(event.delivery_id, headers["handoff-delivery"]);
    assert.equal(event.escalation.decision?.option, "keep");
    assert.throws(() => verifyWebhook(headers, Buffer.concat([body, Buffer.from(" ")]), live.secret));
    for (let i = 0; i < 50 && (await handoff.get(escalation)).status !== "resumed"; i++) await sleep(100);
    assert.equal((await handoff.get(escalation)).status, "resumed", "the receiver's 2xx marked it resumed");
  });

  test("a long-poll with the current ETag answers 304 after waiting", async () => {
    const escalation = await client().escalate(pkg());
    const url = `${live.url}/api/v1/escalations/${escalation.id}`;
    const headers = { Authorization: `Bearer ${live.token}` };
    const first = await fetch(url, { headers });
    assert.equal(first.status, 200);
    assert.ok(first.headers.get("etag"));
    assert.ok(first.headers.get("handoff-budget-limit") !== null);
    const started = Date.now();
    const again = await fetch(`${url}?wait=1`, { headers: { ...headers, "If-None-Match": first.headers.get("etag")! } });
    assert.equal(again.status, 304);
    assert.ok(Date.now() - started >= 900);
    await client().withdraw(escalation);
  });
});

describe("live: questions to the agent", async () => {
  const spec = (await (await fetch(`${live.url}/api/v1/openapi.json`)).json()) as { paths: Record<string, unknown> };
  const served = Object.keys(spec.paths).some((path) => path.endsWith("/answer"));

  test("a reviewer's question comes back through wait, and the answer returns it to the queue", { skip: !served && "this server has no questions yet (POST /escalations/{id}/answer)" }, async () => {
    const handoff = client();
    const escalation = await handoff.escalate(pkg({ run_id: runId("ts-question") }));
    const asked = await reviewer.request("POST", `/escalations/${escalation.id}/question`, { text: "How many rows, exactly?" });
    assert.equal(asked.status, 201, JSON.stringify(asked.json));
    const waiting = await handoff.wait(escalation, { timeout: 30 });
    assert.equal(waiting.status, "awaiting_agent");
    assert.equal(waiting.question?.text, "How many rows, exactly?");
    const answered = await handoff.answer(waiting, {
      text: "Three rows, all written by the nightly export.",
      history: [{ at: new Date(), action: "Counted rows again", outcome: "ok" }],
    });
    assert.equal(answered.status, "pending");
    const none = await handoff.answer(answered, "Nothing was asked").catch((e) => e);
    assert.ok(none instanceof Conflict);
    await handoff.withdraw(answered);
  });
});

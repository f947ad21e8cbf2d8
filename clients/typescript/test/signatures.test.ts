/** verifyWebhook with the Python client's vectors (computed with openssl), verifyReceipt
 * with a vector computed independently in Python (hmac, hashlib, json.dumps(sort_keys=True,
 * separators=(",", ":"), ensure_ascii=False)), and their refusals. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  InvalidReceipt,
  InvalidSignature,
  argsSha256,
  canonicalJson,
  computeSignature,
  signReceipt,
  signWebhook,
  verifyReceipt,
  verifyWebhook,
} from "../src/index.js";

// The vectors of clients/python/tests/test_webhooks.py.
const SECRET = "whsec_test_secret";
const T = 1700000000;
const BODY = Buffer.from('{"event":"escalation.decided","delivery_id":"3f1c2a9e-0000-4000-8000-000000000001"}');
// printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
const KNOWN = "a43f6616567691beeb9269255ebb04f460a592381a778d609e33a463bdb079b8";
const KNOWN_OTHER = "1021616b99cc5ba63d01ec367262b0ced15b7c71eeda764969d440cfad3cae70";

describe("verifyWebhook", () => {
  test("the known vectors", () => {
    assert.equal(computeSignature(SECRET, BODY, T), KNOWN);
    assert.equal(computeSignature("other_secret", BODY.toString(), T), KNOWN_OTHER);
    assert.equal(signWebhook(SECRET, BODY, T), `t=${T},v1=${KNOWN}`);
  });

  test("a valid signature returns the event; header names are case-insensitive", () => {
    const event = verifyWebhook({ "Handoff-Signature": `t=${T},v1=${KNOWN}` }, BODY, SECRET, { now: T + 10 });
    assert.equal(event.delivery_id, "3f1c2a9e-0000-4000-8000-000000000001");
    assert.equal(verifyWebhook({ "handoff-signature": `t=${T},v1=${KNOWN}` }, BODY.toString(), SECRET, { now: T }).event, "escalation.decided");
    const fetchHeaders = new Headers({ "Handoff-Signature": `t=${T},v1=${KNOWN}` });
    assert.ok(verifyWebhook(fetchHeaders, new Uint8Array(BODY), SECRET, { now: T }));
  });

  test("any v1 may match while a secret rotates", () => {
    const header = { "Handoff-Signature": `t=${T},v1=${KNOWN_OTHER},v1=${KNOWN}` };
    assert.ok(verifyWebhook(header, BODY, SECRET, { now: T }));
    assert.ok(verifyWebhook(header, BODY, "other_secret", { now: T }));
  });

  for (const skew of [301, -301, 10_000]) {
    test(`a timestamp ${skew} s away is a replay`, () => {
      assert.throws(() => verifyWebhook({ "Handoff-Signature": `t=${T},v1=${KNOWN}` }, BODY, SECRET, { now: T + skew }), /tolerance/);
    });
  }

  test("the tolerance is configurable", () => {
    const header = { "Handoff-Signature": `t=${T},v1=${KNOWN}` };
    assert.ok(verifyWebhook(header, BODY, SECRET, { tolerance: 3600, now: T + 3000 }));
    assert.throws(() => verifyWebhook(header, BODY, SECRET, { tolerance: 5, now: T + 6 }), InvalidSignature);
  });

  const refusals: [string, Buffer, string][] = [
    [`t=${T},v1=${KNOWN}`, Buffer.concat([BODY, Buffer.from(" ")]), SECRET], // body changed
    [`t=${T},v1=${KNOWN}`, BODY, "wrong"],
    [`t=${T + 1},v1=${KNOWN}`, BODY, SECRET],
    [`t=${T},v0=${KNOWN}`, BODY, SECRET],
    [`v1=${KNOWN}`, BODY, SECRET],
    [`t=soon,v1=${KNOWN}`, BODY, SECRET],
    ["garbage", BODY, SECRET],
    [`t=${T},v1=é${KNOWN.slice(1)}`, BODY, SECRET],
  ];
  for (const [header, body, secret] of refusals) {
    test(`refuses ${header.slice(0, 24)}… (${body.length} bytes, ${secret})`, () => {
      assert.throws(() => verifyWebhook({ "Handoff-Signature": header }, body, secret, { now: T }), InvalidSignature);
    });
  }

  test("a missing header; a fresh signature with the real clock", () => {
    assert.throws(() => verifyWebhook({}, BODY, SECRET, { now: T }), /missing/);
    assert.ok(verifyWebhook({ "Handoff-Signature": signWebhook(SECRET, BODY) }, BODY, SECRET));
  });
});

// Computed in Python, see the file's docstring.
const ARGS = { paths: ["billing/"], note: "é ünïcode", n: 3, nested: { b: 1, a: [true, null] } };
const CANONICAL = '{"n":3,"nested":{"a":[true,null],"b":1},"note":"é ünïcode","paths":["billing/"]}';
const ARGS_SHA = "3ab7d2c7bba3b2dde604efbdb279188ea67df239d8c237ed8641d8364a410038";
const RECEIPT =
  "eyJlc2NhbGF0aW9uIjoiOGYwYzZiMWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxIiwicnVuX2lkIjoicnVuLTQyIiwia2luZCI6Im9wdGlvbiIsIm9wdGlvbiI6InVwZGF0ZS1jYWxsZXJzIiwiYXJnc19zaGEyNTYiOiIzYWI3ZDJjN2JiYTNiMmRkZTYwNGVmYmRiMjc5MTg4ZWE2N2RmMjM5ZDhjMjM3ZWQ4NjQxZDgzNjRhNDEwMDM4IiwiZGVjaWRlZF9ieSI6eyJ0eXBlIjoiaHVtYW4iLCJuYW1lIjoiYWxpY2UifSwiZGVjaWRlZF9hdCI6IjIwMjYtMTEtMjFUMTA6MDA6MDBaIiwidmFsaWRfdW50aWwiOiIyMDI2LTExLTIxVDEyOjAwOjAwWiJ9" +
  ".ba0bc829f2e5056ba14174b24de4a6e3471226e211f41bf5b72e2d3376d46cd1";
const BEFORE = Date.parse("2026-11-21T11:00:00Z");
const ESCALATION = {
  id: "8f0c6b1e-0000-4000-8000-000000000001",
  run_id: "run-42",
  decision: {
    kind: "option",
    option: "update-callers",
    args: ARGS,
    instruction: null,
    decided_by: { type: "human", name: "alice" },
    decided_at: "2026-11-21T10:00:00Z",
  },
};

describe("verifyReceipt", () => {
  test("canonical JSON and its hash match Python's", () => {
    assert.equal(canonicalJson(ARGS), CANONICAL);
    assert.equal(argsSha256(ARGS), ARGS_SHA);
  });

  test("the known receipt verifies and gives its payload", () => {
    const payload = verifyReceipt(RECEIPT, SECRET, { now: BEFORE, args: ARGS, escalation: ESCALATION });
    assert.equal(payload.escalation, ESCALATION.id);
    assert.equal(payload.option, "update-callers");
    assert.equal(payload.args_sha256, ARGS_SHA);
    assert.deepEqual(payload.decided_by, { type: "human", name: "alice" });
  });

  test("signReceipt round-trips", () => {
    const payload = verifyReceipt(RECEIPT, SECRET, { now: BEFORE });
    assert.deepEqual(verifyReceipt(signReceipt(payload, "s2"), "s2", { now: BEFORE }), payload);
  });

  test("a tampered payload, a wrong secret, a bad shape are refused", () => {
    const [payload, signature] = RECEIPT.split(".") as [string, string];
    const decoded = JSON.parse(Buffer.from(payload, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...decoded, option: "drop-everything" })).toString("base64url");
    assert.throws(() => verifyReceipt(`${forged}.${signature}`, SECRET, { now: BEFORE }), /signature/);
    assert.throws(() => verifyReceipt(RECEIPT, "wrong", { now: BEFORE }), InvalidReceipt);
    for (const bad of ["", "abc", `${payload}.`, `${payload}.${signature}.x`, `${payload}.zz${signature.slice(2)}`]) {
      assert.throws(() => verifyReceipt(bad, SECRET, { now: BEFORE }), InvalidReceipt, bad);
    }
  });

  test("an expired decision is refused", () => {
    assert.throws(() => verifyReceipt(RECEIPT, SECRET, { now: new Date("2026-11-21T12:00:01Z") }), /expired/);
  });

  test("other args, or another escalation's decision, are refused", () => {
    assert.throws(() => verifyReceipt(RECEIPT, SECRET, { now: BEFORE, args: { ...ARGS, n: 4 } }), /approved args/);
    const other = { ...ESCALATION, decision: { ...ESCALATION.decision, option: "drop" } };
    assert.throws(() => verifyReceipt(RECEIPT, SECRET, { now: BEFORE, escalation: other }), /not for this/);
    assert.throws(() => verifyReceipt(RECEIPT, SECRET, { now: BEFORE, escalation: { ...ESCALATION, id: "x" } }), /not for this/);
  });
});

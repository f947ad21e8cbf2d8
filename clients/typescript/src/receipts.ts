/** Decision receipts: `<payload>.<signature>`, where `payload` is the unpadded base64url of
 * a JSON object and `signature` the hex HMAC-SHA256 of `payload` under the agent's signing
 * secret (shared/API.md, "The decision"). An executor checks one before acting, so that
 * what runs is exactly what was approved. */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

import { InvalidReceipt } from "./errors.js";
import type { DecidedBy, DecisionKind, Escalation } from "./models.js";

export interface ReceiptPayload {
  escalation: string;
  run_id: string;
  kind: DecisionKind;
  option: string | null;
  /** Hex SHA-256 of the args as canonical JSON (see `canonicalJson`). */
  args_sha256: string;
  decided_by: DecidedBy;
  decided_at: string;
  valid_until: string | null;
  [extra: string]: unknown;
}

/** JSON with object keys sorted, no spaces, non-ASCII characters as themselves (UTF-8).
 * Numbers are written as JavaScript writes them: `1.0` is `1`, so args that are meant to be
 * hashed should hold integers, strings, booleans, null, arrays and objects. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`canonicalJson: ${typeof value} is not JSON`);
    return text;
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(",")}]`;
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") {
    return canonicalJson((value as { toJSON(): unknown }).toJSON());
  }
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
}

/** Hex SHA-256 of `args` as canonical JSON: a receipt's `args_sha256`. */
export function argsSha256(args: unknown): string {
  return createHash("sha256").update(canonicalJson(args ?? null), "utf8").digest("hex");
}

/** A receipt for `payload` (for tests and for servers written against the contract). */
export function signReceipt(payload: ReceiptPayload, secret: string | Uint8Array): string {
  const encoded = Buffer.from(JSON.stringify(payload), "utf8").toString("base64url");
  return `${encoded}.${createHmac("sha256", secret).update(encoded).digest("hex")}`;
}

export interface VerifyReceiptOptions {
  /** The args the executor is about to act with: their hash must be the receipt's. */
  args?: unknown;
  /** The escalation it claims to decide: id, run, kind and option must match its decision. */
  escalation?: Pick<Escalation, "id" | "run_id" | "decision">;
  /** Now, as a Date or unix milliseconds (tests). */
  now?: Date | number;
}

/** Check a receipt and return its payload. Throws InvalidReceipt when it is malformed, its
 * signature does not match (forged or altered), its `valid_until` has passed, or it does
 * not match `args` / `escalation` when given. */
export function verifyReceipt(
  receipt: string,
  secret: string | Uint8Array,
  options: VerifyReceiptOptions = {},
): ReceiptPayload {
  const parts = typeof receipt === "string" ? receipt.split(".") : [];
  if (parts.length !== 2 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!) || !/^[0-9a-f]{64}$/i.test(parts[1]!)) {
    throw new InvalidReceipt("a receipt is <base64url payload>.<hex signature>");
  }
  const [encoded, signature] = parts as [string, string];
  const expected = createHmac("sha256", secret).update(encoded).digest();
  const given = Buffer.from(signature, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new InvalidReceipt("the receipt's signature does not match (forged or altered)");
  }
  let payload: ReceiptPayload;
  try {
    payload = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8")) as ReceiptPayload;
  } catch {
    throw new InvalidReceipt("the receipt's payload is not JSON");
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidReceipt("the receipt's payload is not a JSON object");
  }
  if (payload.valid_until) {
    const until = Date.parse(payload.valid_until);
    const now = options.now === undefined ? Date.now() : +options.now;
    if (Number.isNaN(until) || now > until) {
      throw new InvalidReceipt(`the decision expired at ${payload.valid_until}: do not act on it`);
    }
  }
  if ("args" in options && argsSha256(options.args) !== payload.args_sha256) {
    throw new InvalidReceipt("the args to run are not the approved args");
  }
  const escalation = options.escalation;
  if (escalation) {
    const decision = escalation.decision;
    const mismatch =
      payload.escalation !== escalation.id ||
      payload.run_id !== escalation.run_id ||
      !decision ||
      payload.kind !== decision.kind ||
      (payload.option ?? null) !== (decision.option ?? null) ||
      (decision.args != null && argsSha256(decision.args) !== payload.args_sha256);
    if (mismatch) throw new InvalidReceipt("the receipt is not for this escalation's decision");
  }
  return payload;
}

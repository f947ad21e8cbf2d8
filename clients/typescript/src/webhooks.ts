/** Webhook signatures: `Handoff-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */
import { createHmac, timingSafeEqual } from "node:crypto";

import { InvalidSignature } from "./errors.js";
import type { Escalation } from "./models.js";

export const SIGNATURE_HEADER = "Handoff-Signature";
export const DEFAULT_TOLERANCE = 300;

/** A fetch `Headers`, Node's `IncomingHttpHeaders`, or a plain object of header values. */
export type HeaderSource =
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>;

export interface WebhookEvent {
  event: "escalation.decided" | "escalation.question" | (string & {});
  delivery_id: string;
  escalation: Escalation;
  [extra: string]: unknown;
}

function bytes(value: string | Uint8Array): Buffer {
  return typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
}

function header(headers: HeaderSource, name: string): string | null {
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get(name: string): string | null }).get(name);
  }
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (key.toLowerCase() === wanted && value !== undefined) {
      return Array.isArray(value) ? value.join(",") : value;
    }
  }
  return null;
}

/** The hex v1 signature of `body` signed at `timestamp` (unix seconds). */
export function computeSignature(secret: string | Uint8Array, body: string | Uint8Array, timestamp: number): string {
  return createHmac("sha256", bytes(secret))
    .update(Buffer.concat([Buffer.from(`${timestamp}.`), bytes(body)]))
    .digest("hex");
}

/** A Handoff-Signature header value for `body` (for tests and local replays). */
export function signWebhook(secret: string | Uint8Array, body: string | Uint8Array, timestamp?: number): string {
  const t = timestamp ?? Math.floor(Date.now() / 1000);
  return `t=${t},v1=${computeSignature(secret, body, t)}`;
}

export interface VerifyWebhookOptions {
  /** Seconds a signature stays acceptable either side of now (default 300). */
  tolerance?: number;
  /** Now, in unix seconds (tests). */
  now?: number;
}

/** Check a delivery's signature and return its parsed JSON body.
 *
 * `body` must be the raw body as received (re-serialized JSON will not match). Passes
 * when any `v1=` entry matches (several appear while a secret is rotated), compared in
 * constant time, and the `t=` timestamp is within `tolerance` seconds of now (older or
 * future ones are replays). Throws InvalidSignature otherwise. Deliveries are at least
 * once: dedupe on `delivery_id` (or the escalation's `id`). */
export function verifyWebhook(
  headers: HeaderSource,
  body: string | Uint8Array,
  secret: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): WebhookEvent {
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  const value = header(headers, SIGNATURE_HEADER);
  if (!value) throw new InvalidSignature(`missing ${SIGNATURE_HEADER} header`);
  let timestamp: number | null = null;
  const candidates: string[] = [];
  for (const part of value.split(",")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    const key = part.slice(0, at).trim();
    const entry = part.slice(at + 1).trim();
    if (key === "t") {
      if (!/^-?\d+$/.test(entry)) throw new InvalidSignature("malformed timestamp in signature header");
      timestamp = Number(entry);
    } else if (key === "v1") {
      candidates.push(entry);
    }
  }
  if (timestamp === null || !candidates.length) {
    throw new InvalidSignature("signature header needs t= and at least one v1=");
  }
  const now = options.now ?? Date.now() / 1000;
  if (Math.abs(now - timestamp) > tolerance) {
    throw new InvalidSignature(`timestamp outside the ${tolerance} s tolerance (replay?)`);
  }
  const expected = Buffer.from(computeSignature(secret, body, timestamp), "utf8");
  const matches = candidates.some((candidate) => {
    const given = Buffer.from(candidate, "utf8");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) throw new InvalidSignature("no v1 signature matches");
  let event: unknown;
  try {
    event = JSON.parse(bytes(body).toString("utf8"));
  } catch {
    throw new InvalidSignature("signed body is not JSON");
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    throw new InvalidSignature("signed body is not a JSON object");
  }
  return event as WebhookEvent;
}

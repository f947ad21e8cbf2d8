/** What the live tests share: the server run.ts started, a reviewer, a package. */
import { Handoff, type EscalationPackage, type Escalation } from "../src/index.js";

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`npm test\` (test/run.ts starts the server)`);
  return value;
}

export const live = {
  get url(): string {
    return env("HANDOFF_URL");
  },
  get token(): string {
    return env("HANDOFF_TOKEN");
  },
  get secret(): string {
    return env("HANDOFF_SECRET");
  },
};

export function client(options: { token?: string; timeout?: number } = {}): Handoff {
  return new Handoff(live.url, { token: options.token ?? live.token, timeout: options.timeout ?? 30 });
}

export function runId(prefix = "ts-run"): string {
  return `${prefix}-${globalThis.crypto.randomUUID().slice(0, 10)}`;
}

export const UNCERTAINTY =
  "billing_legacy received 3 writes last week, although the migration plan says nothing " +
  "uses it any more; dropping it loses those rows for good.";

export function pkg(overrides: Partial<EscalationPackage> = {}): EscalationPackage {
  return {
    run_id: runId(),
    title: "Drop the legacy billing table?",
    uncertainty: UNCERTAINTY,
    reason: "irreversible_action",
    confidence: 0.55,
    history: [
      { at: new Date(), action: "Listed unused tables", outcome: "ok" },
      { at: new Date(), action: "Counted recent writes", outcome: "info", detail: "3 rows since 2026-11-14" },
    ],
    options: [
      { key: "drop", label: "Drop the table", irreversible: true, recommended: true, args: { table: "billing_legacy" } },
      { key: "keep", label: "Keep it and report the writers" },
    ],
    cost_of_delay: { blocking: true, impact: "medium", blocked_tasks: 2 },
    action: { name: "drop_table", irreversible: true },
    ...overrides,
  };
}

export interface DecisionBody {
  kind?: string;
  option?: string;
  args?: Record<string, unknown>;
  instruction?: string;
}

/** A dashboard user deciding through the reviewer API (/api/v1/review). */
export const reviewer = {
  async request(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const response = await fetch(`${live.url}/api/v1/review${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${env("HANDOFF_REVIEWER_TOKEN")}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  },

  async decide(id: string, decision: DecisionBody = {}): Promise<Escalation> {
    const answer = await this.request("POST", `/escalations/${id}/decision`, { kind: "option", ...decision });
    if (answer.status !== 201) throw new Error(`decision on ${id}: ${answer.status} ${JSON.stringify(answer.json)}`);
    return answer.json as Escalation;
  },

  /** The id of `run`'s open escalation once it is in the queue (the agent escalated it). */
  async find(run: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (let cursor: string | null = null, first = true; first || cursor; first = false) {
        const answer = await this.request("GET", `/queue?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        if (answer.status !== 200) throw new Error(`queue: ${answer.status} ${JSON.stringify(answer.json)}`);
        const found = (answer.json.items as Escalation[]).find((item) => item.run_id === run || item.run_id.startsWith(`${run}/`));
        if (found) return found.id;
        cursor = answer.json.next_cursor;
      }
      await sleep(200);
    }
    throw new Error(`${run} never reached the queue`);
  },

  /** In the background: wait for `run` in the queue, then decide it. */
  decideLater(run: string, decision: DecisionBody = {}, delayMs = 300): Promise<Escalation> {
    return (async () => {
      const id = await this.find(run);
      await sleep(delayMs);
      return this.decide(id, decision);
    })();
  },
};

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** Deliveries the run's webhook receiver got about `escalationId`, waiting for one. */
export async function deliveryFor(
  escalationId: string,
  timeoutMs = 30_000,
): Promise<{ headers: Record<string, string>; body: Buffer }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const all = (await (await fetch(env("HANDOFF_HOOKS_URL"))).json()) as { headers: Record<string, string>; body: string }[];
    for (const delivery of all) {
      const body = Buffer.from(delivery.body, "base64");
      if ((JSON.parse(body.toString()) as { escalation?: { id?: string } }).escalation?.id === escalationId) {
        return { headers: delivery.headers, body };
      }
    }
    await sleep(200);
  }
  throw new Error(`no webhook for ${escalationId} in ${timeoutMs} ms`);
}

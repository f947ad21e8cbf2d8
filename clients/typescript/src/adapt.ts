/** Shared pieces of the framework adapters: package defaults, escalate-and-wait, outcomes. */
import type { Handoff } from "./client.js";
import { Conflict, Halted, TakenOver, Withdrawn } from "./errors.js";
import type { Escalation, EscalationPackage, Option } from "./models.js";
import { isOpen } from "./models.js";
import { canonicalJson } from "./receipts.js";

/** What every adapter takes besides the client. */
export interface AdapterOptions {
  /** The agent's id of the paused run; each proposed call gets `<runId>/<call id>`. */
  runId: string;
  /** The agent's confidence in running the call as proposed (0-1). Default 0.5. */
  confidence?: number;
  /** Package fields overriding the defaults: pass a real `history` and `uncertainty`. */
  package?: Partial<EscalationPackage>;
  /** Mark the "run it" option irreversible (default true: it then always needs a person). */
  irreversible?: boolean;
  /** Seconds to wait for the decisions; undefined waits for ever. */
  timeout?: number;
  /** Acknowledge each decision once received (default true). */
  ack?: boolean;
  signal?: AbortSignal;
}

/** A package for one proposed tool call; the caller's `fields` override the defaults,
 * which are honest but thin: pass a real `history` and `uncertainty` when you have them. */
export function defaultPackage(input: {
  name: string;
  args: Record<string, unknown>;
  description?: string | undefined;
  runId: string;
  confidence: number;
  options: Option[];
  fields?: Partial<EscalationPackage> | undefined;
}): EscalationPackage {
  const shown = canonicalJson(input.args);
  let uncertainty = `Should the agent run \`${input.name}\` with ${shown.slice(0, 3000)}?`;
  if (input.description) uncertainty += ` ${input.description.trim()}`;
  return {
    run_id: input.runId.slice(0, 200),
    title: `Approve ${input.name}?`.slice(0, 200),
    uncertainty: uncertainty.slice(0, 4000),
    reason: "irreversible_action",
    confidence: input.confidence,
    history: [
      {
        at: new Date(),
        action: `Proposed the tool call ${input.name}`.slice(0, 200),
        outcome: "info",
        detail: shown.slice(0, 20000),
      },
    ],
    options: input.options,
    cost_of_delay: { blocking: true, impact: "medium" },
    action: { name: input.name.slice(0, 200), irreversible: true },
    ...input.fields,
  };
}

/** The two options of an approval: run it (recommended, with the call's args, editable by
 * the reviewer) or not. */
export function approvalOptions(name: string, args: Record<string, unknown>, irreversible = true): Option[] {
  return [
    { key: "approve", label: `Run ${name}`.slice(0, 200), irreversible, recommended: true, args },
    { key: "reject", label: "Reject: don't run it" },
  ];
}

/** Escalate each package (adopting a run's open escalation after an agent restart instead
 * of failing with Conflict), wait for every decision side by side, ack them. */
export async function escalateAll(
  handoff: Handoff,
  packages: EscalationPackage[],
  options: Pick<AdapterOptions, "timeout" | "ack" | "signal">,
): Promise<Escalation[]> {
  const escalations: Escalation[] = [];
  for (const pkg of packages) {
    try {
      escalations.push(await handoff.escalate(pkg, { signal: options.signal }));
    } catch (error) {
      const open = error instanceof Conflict ? error.openEscalation : null;
      if (!open || !isOpen(open)) throw error;
      escalations.push(open);
    }
  }
  const decided = await Promise.all(
    escalations.map((e) => handoff.wait(e, { timeout: options.timeout, signal: options.signal })),
  );
  if (options.ack ?? true) {
    for (const escalation of decided) {
      if (escalation.decision) await handoff.ack(escalation, { signal: options.signal });
    }
  }
  return decided;
}

/** Throw for outcomes no framework can resume with: halt, take over, no decision. */
export function stopUnlessDecided(escalation: Escalation): void {
  const decision = escalation.decision;
  if (!decision) throw new Withdrawn(escalation, `escalation ${escalation.id} ended ${escalation.status} without a decision`);
  if (decision.kind === "halt") throw new Halted(escalation, `a reviewer halted the run (${escalation.url})`);
  if (decision.kind === "take_over") throw new TakenOver(escalation, `a human took the run over (${escalation.url})`);
}

/** The same JSON data, key order aside. */
export function sameArgs(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? {}) === canonicalJson(b ?? {});
}

/** What the model is told when a reviewer's edited args cannot be applied as such. */
export function editedNote(name: string, args: unknown): string {
  return (
    `A reviewer approved \`${name}\` only with these arguments: ${canonicalJson(args)}. ` +
    "Call it again with exactly them if that still makes sense."
  );
}

/** How one proposed call was decided, for the caller's log. */
export interface Outcome {
  escalation: Escalation;
  /** `approved` as proposed, `edited` (approved with the reviewer's args), `rejected`. */
  outcome: "approved" | "edited" | "rejected";
  args: Record<string, unknown>;
  /** The reviewer's instruction or the rejection's reason, if any. */
  message: string | null;
}

/** Map a decided escalation of an approval package to an outcome (after stopUnlessDecided). */
export function outcomeOf(escalation: Escalation, proposed: Record<string, unknown>): Outcome {
  stopUnlessDecided(escalation);
  const decision = escalation.decision!;
  if (decision.kind === "option" && decision.option === "approve") {
    const args = (decision.args ?? proposed) as Record<string, unknown>;
    return {
      escalation,
      outcome: sameArgs(args, proposed) ? "approved" : "edited",
      args,
      message: decision.instruction ?? null,
    };
  }
  const message =
    decision.instruction ??
    (decision.kind === "option" ? `A reviewer chose "${decision.option}": do not run it.` : "A reviewer rejected this call.");
  return { escalation, outcome: "rejected", args: proposed, message };
}

/** OpenAI Agents JS SDK adapter: pending tool approvals in, `approve` / `reject` out.
 *
 * A run paused on tools with `needsApproval` has `result.interruptions`:
 * `RunToolApprovalItem`s. Each becomes one escalation (run id `<runId>/<callId>`) whose
 * recommended option "approve" carries the call's arguments and whose "reject" option
 * declines. `decideApprovals` waits for the decisions and applies them to `result.state`
 * (`state.approve(item)`, or `state.reject(item, { message })` with the reviewer's
 * instruction); then continue with `run(agent, result.state)`.
 *
 * Args a reviewer edited cannot be run as such: the SDK binds an approval to the call as
 * the model made it (changing the pending call's arguments fails the resumed run with
 * "Tool call ID … was reused for a different invocation after an approval decision"). So
 * an edit becomes a rejection whose message gives the model the approved arguments to call
 * with again, which then needs a second approval. A halt or take over rejects with
 * Halted / TakenOver: don't resume the run.
 *
 * Only types are imported from `@openai/agents`: this module loads without it. */
import type { RunState, RunToolApprovalItem } from "@openai/agents";

import { approvalOptions, defaultPackage, editedNote, escalateAll, outcomeOf, type AdapterOptions, type Outcome } from "../adapt.js";
import type { Handoff } from "../client.js";

export type { AdapterOptions, Outcome } from "../adapt.js";

export type OpenAIAgentsOptions = AdapterOptions;

/** What `run()` answers: the pending approvals and the state to resume. */
export interface PausedRun {
  interruptions?: RunToolApprovalItem[];
  state: RunState<any, any>;
}

/** The call's arguments as an object (the SDK keeps them as a JSON string). */
export function callArgs(item: RunToolApprovalItem): Record<string, unknown> {
  const raw = item.arguments;
  if (!raw) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : { arguments: parsed };
  } catch {
    return { arguments: raw };
  }
}

function callId(item: RunToolApprovalItem, index: number): string {
  const raw = item.rawItem as { callId?: string; id?: string };
  return raw.callId ?? raw.id ?? String(index);
}

/** Escalate every pending approval of a paused run, wait, ack, and apply the decisions to
 * its state. Resolves to one outcome per approval; then `run(agent, result.state)`. */
export async function decideApprovals(
  handoff: Handoff,
  result: PausedRun,
  options: OpenAIAgentsOptions,
): Promise<(Outcome & { item: RunToolApprovalItem })[]> {
  const items = result.interruptions ?? result.state.getInterruptions();
  if (!items.length) return [];
  const packages = items.map((item, index) => {
    const name = item.name ?? item.toolName ?? "tool";
    const args = callArgs(item);
    return defaultPackage({
      name,
      args,
      description: `Agent ${item.agent?.name ?? "?"} asked to call ${name}.`,
      runId: `${options.runId}/${callId(item, index)}`,
      confidence: options.confidence ?? 0.5,
      options: approvalOptions(name, args, options.irreversible ?? true),
      fields: options.package,
    });
  });
  const decided = await escalateAll(handoff, packages, options);
  return items.map((item, index) => {
    const outcome = outcomeOf(decided[index]!, callArgs(item));
    const name = item.name ?? item.toolName ?? "tool";
    if (outcome.outcome === "approved") {
      result.state.approve(item);
    } else if (outcome.outcome === "edited") {
      result.state.reject(item, { message: editedNote(name, outcome.args) });
    } else {
      result.state.reject(item, { message: outcome.message ?? "A reviewer rejected this call." });
    }
    return { ...outcome, item };
  });
}

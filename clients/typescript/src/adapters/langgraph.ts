/** LangGraph.js adapter: `interrupt()` payloads in, `Command({ resume })` out.
 *
 * Speaks the two approval shapes graphs raise with `interrupt()`:
 *
 * - LangChain v1 `humanInTheLoopMiddleware`'s `HITLRequest` (`{ actionRequests: [{ name,
 *   args, description }], reviewConfigs: [{ actionName, allowedDecisions }] }`), resumed
 *   with `{ decisions: [{ type: "approve" } | { type: "edit", editedAction: { name, args } }
 *   | { type: "reject", message }] }`, one per action in order;
 * - Agent Inbox `HumanInterrupt` (`{ action_request: { action, args }, config: { allow_accept,
 *   allow_edit, allow_respond, allow_ignore }, description }`, usually in a one-element
 *   list), resumed with a list of `{ type: "accept" | "edit" | "response" | "ignore", args }`.
 *
 * Each proposed action becomes one escalation (run id `<runId>`, or `<runId>/0`, `/1`...
 * when there are several) whose recommended option carries the action's args, editable by
 * the reviewer when the shape allows edits. A halt or take over rejects with Halted /
 * TakenOver: no resume value says "stop the run". `resumeCommand` needs
 * `@langchain/langgraph` (imported when called); the rest runs without it. */
import { defaultPackage, editedNote, escalateAll, sameArgs, stopUnlessDecided, type AdapterOptions } from "../adapt.js";
import type { Handoff } from "../client.js";
import { HandoffError, InstructionGiven } from "../errors.js";
import type { Escalation, Option } from "../models.js";

export type { AdapterOptions } from "../adapt.js";

export type Shape = "hitl_request" | "agent_inbox";
type Json = Record<string, unknown>;

/** One proposed action of an interrupt, as the reviewer will see it. */
export interface Proposal {
  name: string;
  args: Json;
  description: string | undefined;
  canAccept: boolean;
  canEdit: boolean;
  /** LangChain: reject; inbox: ignore. */
  canDecline: boolean;
  /** LangChain: reject with a message; inbox: response. */
  canMessage: boolean;
}

/** An `Interrupt` as LangGraph.js hands it out (`result.__interrupt__[i]`), or its value. */
export interface InterruptLike {
  id?: string;
  value?: unknown;
}

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The interrupts of an `invoke` result (its `__interrupt__`), or of a list of them. */
export function interruptsOf(result: unknown): InterruptLike[] {
  if (Array.isArray(result)) return result as InterruptLike[];
  if (isObject(result) && Array.isArray(result["__interrupt__"])) return result["__interrupt__"] as InterruptLike[];
  return [];
}

function valueOf(interrupt: unknown): unknown {
  return isObject(interrupt) && "value" in interrupt && !("actionRequests" in interrupt) ? interrupt["value"] : interrupt;
}

/** Which approval shape an interrupt payload has; an Error for anything else. */
export function shapeOf(interrupt: unknown): Shape {
  const value = valueOf(interrupt);
  if (isObject(value) && Array.isArray(value["actionRequests"])) return "hitl_request";
  const items = Array.isArray(value) ? value : [value];
  if (items.length && items.every((item) => isObject(item) && isObject(item["action_request"]))) return "agent_inbox";
  throw new HandoffError("not a HITLRequest ({ actionRequests, reviewConfigs }) or an Agent Inbox HumanInterrupt");
}

/** The proposed actions of an interrupt payload, in order. */
export function proposals(interrupt: unknown): Proposal[] {
  const value = valueOf(interrupt);
  if (shapeOf(value) === "agent_inbox") {
    const items = (Array.isArray(value) ? value : [value]) as Json[];
    return items.map((item) => {
      const action = item["action_request"] as Json;
      const config = (isObject(item["config"]) ? item["config"] : {}) as Json;
      return {
        name: String(action["action"] ?? ""),
        args: (isObject(action["args"]) ? action["args"] : {}) as Json,
        description: typeof item["description"] === "string" ? item["description"] : undefined,
        canAccept: Boolean(config["allow_accept"]),
        canEdit: Boolean(config["allow_edit"]),
        canDecline: Boolean(config["allow_ignore"]),
        canMessage: Boolean(config["allow_respond"]),
      };
    });
  }
  const request = value as { actionRequests: Json[]; reviewConfigs?: Json[] };
  const configs = new Map((request.reviewConfigs ?? []).map((config) => [config["actionName"], config]));
  return request.actionRequests.map((action) => {
    const allowed = (configs.get(action["name"])?.["allowedDecisions"] as string[] | undefined) ?? ["approve", "edit", "reject"];
    return {
      name: String(action["name"] ?? ""),
      args: (isObject(action["args"]) ? action["args"] : {}) as Json,
      description: typeof action["description"] === "string" ? action["description"] : undefined,
      canAccept: allowed.includes("approve"),
      canEdit: allowed.includes("edit"),
      canDecline: allowed.includes("reject"),
      canMessage: allowed.includes("reject"),
    };
  });
}

function optionsFor(proposal: Proposal, irreversible: boolean): Option[] {
  const options: Option[] = [];
  if (proposal.canAccept || proposal.canEdit) {
    options.push({
      key: "approve",
      label: `Run ${proposal.name}`.slice(0, 200),
      ...(proposal.canEdit ? {} : { description: "The graph does not accept edited arguments for this action." }),
      irreversible,
      recommended: true,
      args: proposal.args,
    });
  }
  if (proposal.canDecline || proposal.canMessage) {
    options.push({ key: "reject", label: "Reject: don't run it", recommended: options.length === 0 });
  }
  if (!options.length) throw new HandoffError(`action ${proposal.name}: the interrupt allows no decision`);
  return options;
}

/** One escalation package per proposed action of `interrupt`. */
export function packagesFor(interrupt: unknown, options: AdapterOptions) {
  const found = proposals(interrupt);
  return found.map((proposal, index) =>
    defaultPackage({
      name: proposal.name,
      args: proposal.args,
      description: proposal.description,
      runId: found.length === 1 ? options.runId : `${options.runId}/${index}`,
      confidence: options.confidence ?? 0.5,
      options: optionsFor(proposal, options.irreversible ?? true),
      fields: options.package,
    }),
  );
}

/** The resume value for `interrupt` from its decided escalations (one per proposal). */
export function resumeValueFrom(interrupt: unknown, decided: Escalation[]): unknown {
  const shape = shapeOf(interrupt);
  const found = proposals(interrupt);
  const answers = found.map((proposal, index) => {
    const escalation = decided[index]!;
    stopUnlessDecided(escalation);
    const decision = escalation.decision!;
    const approved = decision.kind === "option" && decision.option === "approve";
    const args = (decision.args ?? proposal.args) as Json;
    const message =
      decision.instruction ?? (approved ? null : `A reviewer rejected ${proposal.name}${decision.option ? ` (${decision.option})` : ""}.`);
    if (approved && sameArgs(args, proposal.args)) {
      return shape === "hitl_request" ? { type: "approve" } : { type: "accept", args: null };
    }
    if (approved && proposal.canEdit) {
      return shape === "hitl_request"
        ? { type: "edit", editedAction: { name: proposal.name, args } }
        : { type: "edit", args: { action: proposal.name, args } };
    }
    const note = approved ? editedNote(proposal.name, args) : message!;
    if (shape === "hitl_request") {
      if (proposal.canDecline) return { type: "reject", message: note };
    } else if (proposal.canMessage) {
      return { type: "response", args: note };
    } else if (proposal.canDecline) {
      return { type: "ignore", args: null };
    }
    throw new InstructionGiven(escalation, `the graph cannot take this decision for ${proposal.name}: ${note}`);
  });
  return shape === "hitl_request" ? { decisions: answers } : answers;
}

/** Escalate every proposed action of one interrupt, wait, ack, and return its resume value. */
export async function resumeValue(handoff: Handoff, interrupt: unknown, options: AdapterOptions): Promise<unknown> {
  const decided = await escalateAll(handoff, packagesFor(interrupt, options), options);
  return resumeValueFrom(interrupt, decided);
}

/** `new Command({ resume })` for every interrupt of an `invoke` result: one interrupt
 * resumes with its value, several with a map of interrupt id to value (run ids then get
 * `/<interrupt index>`). Pass it to `graph.invoke(command, config)` with the same thread. */
export async function resumeCommand(handoff: Handoff, result: unknown, options: AdapterOptions): Promise<unknown> {
  const interrupts = interruptsOf(result);
  if (!interrupts.length) throw new HandoffError("the result has no __interrupt__ to resume");
  const { Command } = await import("@langchain/langgraph");
  if (interrupts.length === 1) return new Command({ resume: await resumeValue(handoff, interrupts[0], options) });
  const resume: Record<string, unknown> = {};
  const values = await Promise.all(
    interrupts.map((interrupt, index) => resumeValue(handoff, interrupt, { ...options, runId: `${options.runId}/${index}` })),
  );
  interrupts.forEach((interrupt, index) => {
    if (!interrupt.id) throw new HandoffError("several interrupts need their ids to resume");
    resume[interrupt.id] = values[index];
  });
  return new Command({ resume });
}

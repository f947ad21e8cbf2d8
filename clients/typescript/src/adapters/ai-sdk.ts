/** Vercel AI SDK (v6) adapter: tools with `needsApproval` are decided in Handoff.
 *
 * `generateText` (or `streamText`) stops on a tool that needs approval with a
 * `tool-approval-request` part in its assistant message. Pass the conversation with that
 * message (`[...messages, ...result.response.messages]`) to `decideApprovals`: each pending
 * request becomes one escalation (run id `<runId>/<toolCallId>`) whose recommended option
 * "approve" carries the call's input; the answer is the conversation with a `tool` message
 * of `tool-approval-response` parts appended. Call `generateText` again with it: approved
 * calls run, rejected ones reach the model as denied with the reviewer's reason.
 *
 * Args a reviewer edited are applied once: the pending tool call's input in the returned
 * messages is replaced by the approved args (the SDK validates it against the tool's input
 * schema again before running it). When the request is signed (`experimental_toolApprovalSecret`),
 * the input cannot change: the call is denied with a note giving the model the approved
 * args to call with. A halt or take over rejects with Halted / TakenOver: don't continue.
 *
 * Only types are imported from `ai`: this module loads without it. */
import type { ModelMessage, ToolApprovalRequest, ToolApprovalResponse, ToolCallPart } from "ai";

import { approvalOptions, defaultPackage, editedNote, escalateAll, outcomeOf, type AdapterOptions, type Outcome } from "../adapt.js";
import type { Handoff } from "../client.js";

export type { AdapterOptions, Outcome } from "../adapt.js";

export interface PendingApproval {
  approval: ToolApprovalRequest;
  toolCall: ToolCallPart;
}

export interface AiSdkOptions extends AdapterOptions {
  /** The tools by name, for their descriptions in the package. */
  tools?: Record<string, { description?: string | undefined }>;
}

export interface Decided {
  /** The conversation to call `generateText` with next. */
  messages: ModelMessage[];
  /** One per pending approval, in order. */
  outcomes: (Outcome & { approvalId: string; toolName: string })[];
}

function parts(message: ModelMessage): unknown[] {
  return typeof message.content === "string" ? [] : (message.content as unknown[]);
}

/** The approval requests of `messages` that no `tool-approval-response` answers yet. */
export function pendingApprovals(messages: ModelMessage[]): PendingApproval[] {
  const calls = new Map<string, ToolCallPart>();
  const answered = new Set<string>();
  const requests: ToolApprovalRequest[] = [];
  for (const message of messages) {
    for (const part of parts(message) as { type: string }[]) {
      if (part.type === "tool-call") calls.set((part as ToolCallPart).toolCallId, part as ToolCallPart);
      else if (part.type === "tool-approval-request") requests.push(part as ToolApprovalRequest);
      else if (part.type === "tool-approval-response") answered.add((part as ToolApprovalResponse).approvalId);
    }
  }
  return requests
    .filter((request) => !answered.has(request.approvalId))
    .map((approval) => {
      const toolCall = calls.get(approval.toolCallId);
      if (!toolCall) throw new Error(`approval ${approval.approvalId}: no tool call ${approval.toolCallId} in the messages`);
      return { approval, toolCall };
    });
}

function inputOf(toolCall: ToolCallPart): Record<string, unknown> {
  const input = toolCall.input;
  return input !== null && typeof input === "object" && !Array.isArray(input)
    ? (input as Record<string, unknown>)
    : { input };
}

/** Escalate every pending approval of `messages`, wait for the decisions, and answer the
 * conversation to continue with (see the module's description). */
export async function decideApprovals(handoff: Handoff, messages: ModelMessage[], options: AiSdkOptions): Promise<Decided> {
  const pending = pendingApprovals(messages);
  if (!pending.length) return { messages, outcomes: [] };
  const packages = pending.map(({ toolCall }) =>
    defaultPackage({
      name: toolCall.toolName,
      args: inputOf(toolCall),
      description: options.tools?.[toolCall.toolName]?.description,
      runId: `${options.runId}/${toolCall.toolCallId}`,
      confidence: options.confidence ?? 0.5,
      options: approvalOptions(toolCall.toolName, inputOf(toolCall), options.irreversible ?? true),
      fields: options.package,
    }),
  );
  const decided = await escalateAll(handoff, packages, options);
  const edits = new Map<string, Record<string, unknown>>();
  const responses: ToolApprovalResponse[] = [];
  const outcomes: Decided["outcomes"] = [];
  pending.forEach(({ approval, toolCall }, index) => {
    const outcome = outcomeOf(decided[index]!, inputOf(toolCall));
    outcomes.push({ ...outcome, approvalId: approval.approvalId, toolName: toolCall.toolName });
    if (outcome.outcome === "edited" && approval.signature === undefined) {
      edits.set(toolCall.toolCallId, outcome.args);
    }
    const approved = outcome.outcome === "approved" || edits.has(toolCall.toolCallId);
    const reason =
      outcome.outcome === "edited" && !approved ? editedNote(toolCall.toolName, outcome.args) : outcome.message;
    responses.push({
      type: "tool-approval-response",
      approvalId: approval.approvalId,
      approved,
      ...(reason ? { reason } : {}),
    });
  });
  const rewritten = messages.map((message) => {
    if (message.role !== "assistant" || typeof message.content === "string") return message;
    if (!message.content.some((part) => part.type === "tool-call" && edits.has(part.toolCallId))) return message;
    return {
      ...message,
      content: message.content.map((part) => {
        if (part.type === "tool-call" && edits.has(part.toolCallId)) {
          return { ...part, input: edits.get(part.toolCallId) };
        }
        if (part.type === "tool-approval-request" && edits.has(part.toolCallId)) {
          const { inputSchemaInput: _unused, ...rest } = part;
          return rest;
        }
        return part;
      }),
    } as ModelMessage;
  });
  return { messages: [...rewritten, { role: "tool", content: responses }], outcomes };
}

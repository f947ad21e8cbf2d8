/** The LangGraph.js adapter with the real @langchain/langgraph: a StateGraph whose review
 * node calls `interrupt()`, a MemorySaver checkpointer, resumed with the adapter's
 * `Command`. The "model" node is a plain function proposing the call (no provider). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Annotation, END, MemorySaver, START, StateGraph, interrupt } from "@langchain/langgraph";

import { Halted } from "../src/index.js";
import { interruptsOf, resumeCommand, shapeOf } from "../src/adapters/langgraph.js";
import { client, reviewer, runId } from "./helpers.js";

interface Call {
  name: string;
  args: Record<string, unknown>;
}

const State = Annotation.Root({
  proposed: Annotation<Call | null>({ reducer: (_, next) => next, default: () => null }),
  sent: Annotation<Record<string, unknown>[]>({ reducer: (all, next) => [...all, ...next], default: () => [] }),
  notes: Annotation<string[]>({ reducer: (all, next) => [...all, ...next], default: () => [] }),
});

/** agent (proposes send_email) -> review (interrupt in the given shape) -> END. */
function graph(shape: "hitl" | "inbox") {
  return new StateGraph(State)
    .addNode("agent", () => ({ proposed: { name: "send_email", args: { to: "old@example.com", subject: "Invoice 1841" } } }))
    .addNode("review", (state) => {
      const call = state.proposed!;
      if (shape === "hitl") {
        const response = interrupt({
          actionRequests: [{ name: call.name, args: call.args, description: "Emails a customer." }],
          reviewConfigs: [{ actionName: call.name, allowedDecisions: ["approve", "edit", "reject"] }],
        }) as { decisions: { type: string; editedAction?: Call; message?: string }[] };
        const decision = response.decisions[0]!;
        if (decision.type === "approve") return { sent: [call.args] };
        if (decision.type === "edit") return { sent: [decision.editedAction!.args] };
        return { notes: [decision.message ?? "rejected"] };
      }
      const [response] = interrupt([
        {
          action_request: { action: call.name, args: call.args },
          config: { allow_accept: true, allow_edit: true, allow_respond: true, allow_ignore: true },
          description: "Emails a customer.",
        },
      ]) as { type: string; args: unknown }[];
      if (response!.type === "accept") return { sent: [call.args] };
      if (response!.type === "edit") return { sent: [(response!.args as Call).args] };
      if (response!.type === "response") return { notes: [String(response!.args)] };
      return { notes: ["ignored"] };
    })
    .addEdge(START, "agent")
    .addEdge("agent", "review")
    .addEdge("review", END)
    .compile({ checkpointer: new MemorySaver() });
}

describe("live: LangGraph.js interrupt decided in Handoff, resumed with Command", () => {
  test("HITLRequest: the reviewer's edited args resume the graph as an edit", async () => {
    const app = graph("hitl");
    const config = { configurable: { thread_id: runId("thread") } };
    const paused = await app.invoke({}, config);
    assert.equal(interruptsOf(paused).length, 1);
    assert.equal(shapeOf(interruptsOf(paused)[0]), "hitl_request");
    assert.deepEqual(paused.sent, []);
    const run = runId("ts-lg");
    const decision = reviewer.decideLater(run, { option: "approve", args: { to: "current@example.com", subject: "Invoice 1841" } });
    const command = await resumeCommand(client(), paused, { runId: run, timeout: 30 });
    const escalation = await decision;
    const final = await app.invoke(command as never, config);
    assert.deepEqual(final.sent, [{ to: "current@example.com", subject: "Invoice 1841" }]);
    assert.equal((await client().get(escalation.id)).status, "resumed");
  });

  test("Agent Inbox: an instruction resumes as a response; approval as accept", async () => {
    const app = graph("inbox");
    const config = { configurable: { thread_id: runId("thread") } };
    const paused = await app.invoke({}, config);
    assert.equal(shapeOf(interruptsOf(paused)[0]), "agent_inbox");
    const run = runId("ts-lg");
    const decision = reviewer.decideLater(run, { kind: "instruction", instruction: "Ask accounting which address is current." });
    const final = await app.invoke((await resumeCommand(client(), paused, { runId: run, timeout: 30 })) as never, config);
    await decision;
    assert.deepEqual(final.sent, []);
    assert.deepEqual(final.notes, ["Ask accounting which address is current."]);

    const again = graph("inbox");
    const other = { configurable: { thread_id: runId("thread") } };
    const pausedAgain = await again.invoke({}, other);
    const run2 = runId("ts-lg");
    const approve = reviewer.decideLater(run2, { option: "approve" });
    const done = await again.invoke((await resumeCommand(client(), pausedAgain, { runId: run2, timeout: 30 })) as never, other);
    await approve;
    assert.deepEqual(done.sent, [{ to: "old@example.com", subject: "Invoice 1841" }]);
  });

  test("a halt rejects with Halted and the graph stays paused", async () => {
    const app = graph("hitl");
    const config = { configurable: { thread_id: runId("thread") } };
    const paused = await app.invoke({}, config);
    const run = runId("ts-lg");
    const decision = reviewer.decideLater(run, { kind: "halt" });
    const error = await resumeCommand(client(), paused, { runId: run, timeout: 30 }).catch((e) => e);
    await decision;
    assert.ok(error instanceof Halted, String(error));
    const state = await app.getState(config);
    assert.deepEqual(state.next, ["review"]);
  });
});

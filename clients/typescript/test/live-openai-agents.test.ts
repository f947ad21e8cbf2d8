/** The OpenAI Agents JS adapter with the real @openai/agents: a tool with needsApproval,
 * run by the SDK's Runner with a fake model implementing its Model interface (no provider
 * is reachable), decided by a reviewer on the live server, resumed with run(agent, state). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Agent, Runner, Usage, tool, type Model, type ModelRequest, type ModelResponse } from "@openai/agents";
import { z } from "zod";

import { TakenOver } from "../src/index.js";
import { decideApprovals } from "../src/adapters/openai-agents.js";
import { client, reviewer, runId } from "./helpers.js";

/** Proposes pay_invoice once, then answers with text; records what it was shown. */
class FakeModel implements Model {
  readonly requests: ModelRequest[] = [];

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.requests.push(request);
    const calledAlready = Array.isArray(request.input) && request.input.some((item) => item.type === "function_call");
    if (!calledAlready) {
      return {
        usage: new Usage(),
        output: [
          {
            type: "function_call",
            callId: "call-pay-1",
            name: "pay_invoice",
            arguments: JSON.stringify({ invoice: "INV-1841", amount: 1200 }),
            status: "completed",
          },
        ],
      };
    }
    return {
      usage: new Usage(),
      output: [{ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "done" }] }],
    };
  }

  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error("the fake model does not stream");
  }
}

function setup() {
  const paid: { invoice: string; amount: number }[] = [];
  const model = new FakeModel();
  const agent = new Agent({
    name: "payables",
    instructions: "Pay approved invoices.",
    model,
    tools: [
      tool({
        name: "pay_invoice",
        description: "Pay an invoice. Money can't be recalled.",
        parameters: z.object({ invoice: z.string(), amount: z.number() }),
        needsApproval: true,
        execute: async (args) => {
          paid.push(args);
          return `paid ${args.invoice}`;
        },
      }),
    ],
  });
  return { agent, model, paid, runner: new Runner({ tracingDisabled: true }) };
}

/** The function call outputs the model was shown on its last call. */
function outputsSeen(model: FakeModel): unknown[] {
  const input = model.requests.at(-1)!.input;
  return Array.isArray(input) ? input.filter((item) => item.type === "function_call_result").map((item) => (item as { output: unknown }).output) : [];
}

describe("live: OpenAI Agents JS tool approvals decided in Handoff", () => {
  test("edited args: the SDK cannot run them as such, so the model is told to call again with them", async () => {
    const { agent, model, paid, runner } = setup();
    const paused = await runner.run(agent, "Pay INV-1841.");
    assert.equal(paused.interruptions.length, 1);
    assert.deepEqual(paid, []);
    const run = runId("ts-oa");
    const decision = reviewer.decideLater(run, { option: "approve", args: { invoice: "INV-1841", amount: 1000 } });
    const outcomes = await decideApprovals(client(), paused, { runId: run, timeout: 30 });
    await decision;
    assert.equal(outcomes[0]!.outcome, "edited");
    const final = await runner.run(agent, paused.state);
    assert.deepEqual(paid, [], "not run with the proposed amount");
    assert.equal(final.finalOutput, "done");
    const [seen] = outputsSeen(model) as { text: string }[];
    assert.match(seen!.text, /only with these arguments: \{"amount":1000,"invoice":"INV-1841"\}/);
  });

  test("an instruction rejects the call with the reviewer's words to the model", async () => {
    const { agent, model, paid, runner } = setup();
    const paused = await runner.run(agent, "Pay INV-1841.");
    const run = runId("ts-oa");
    const decision = reviewer.decideLater(run, { kind: "instruction", instruction: "Wait for the PO." });
    const outcomes = await decideApprovals(client(), paused, { runId: run, timeout: 30 });
    await decision;
    assert.equal(outcomes[0]!.outcome, "rejected");
    const final = await runner.run(agent, paused.state);
    assert.deepEqual(paid, []);
    assert.equal(final.finalOutput, "done");
    assert.deepEqual(outputsSeen(model), [{ type: "text", text: "Wait for the PO." }]);
  });

  test("approved as proposed, from a state serialized and restored; a take over stops", async () => {
    const { agent, paid, runner } = setup();
    const paused = await runner.run(agent, "Pay INV-1841.");
    const { RunState } = await import("@openai/agents");
    const restored = await RunState.fromString(agent, paused.state.toString());
    const run = runId("ts-oa");
    const decision = reviewer.decideLater(run, { option: "approve" });
    const outcomes = await decideApprovals(client(), { state: restored }, { runId: run, timeout: 30 });
    await decision;
    assert.equal(outcomes[0]!.outcome, "approved");
    await runner.run(agent, restored);
    assert.deepEqual(paid, [{ invoice: "INV-1841", amount: 1200 }]);

    const again = setup();
    const pausedAgain = await again.runner.run(again.agent, "Pay INV-1841.");
    const run2 = runId("ts-oa");
    const takeOver = reviewer.decideLater(run2, { kind: "take_over" });
    const error = await decideApprovals(client(), pausedAgain, { runId: run2, timeout: 30 }).catch((e) => e);
    await takeOver;
    assert.ok(error instanceof TakenOver, String(error));
  });
});

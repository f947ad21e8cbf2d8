/** The Vercel AI SDK adapter with the real `ai` package (v6): a tool with `needsApproval`,
 * MockLanguageModelV3 from `ai/test` as the model (no provider is reachable), the decision
 * made by a reviewer on the live server. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { generateText, tool, type ModelMessage } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { z } from "zod";

import { Halted } from "../src/index.js";
import { decideApprovals, pendingApprovals } from "../src/adapters/ai-sdk.js";
import { client, reviewer, runId } from "./helpers.js";

const usage = {
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 5, text: 5, reasoning: undefined },
};

/** A model that first proposes dropTable(table), then answers with text. */
function scriptedModel(table: string): MockLanguageModelV3 {
  return new MockLanguageModelV3({
    doGenerate: [
      {
        content: [{ type: "tool-call", toolCallId: "call-1", toolName: "dropTable", input: JSON.stringify({ table }) }],
        finishReason: { unified: "tool-calls", raw: "tool_calls" },
        usage,
        warnings: [],
      },
      {
        content: [{ type: "text", text: "All done." }],
        finishReason: { unified: "stop", raw: "stop" },
        usage,
        warnings: [],
      },
    ],
  });
}

function setup(table = "billing_legacy") {
  const dropped: string[] = [];
  const tools = {
    dropTable: tool({
      description: "Drop a database table. Can't be undone.",
      inputSchema: z.object({ table: z.string() }),
      needsApproval: true,
      execute: async ({ table }) => {
        dropped.push(table);
        return `dropped ${table}`;
      },
    }),
  };
  return { model: scriptedModel(table), tools, dropped };
}

/** The tool results the model was shown on its second call. */
function toolResultsSeen(model: MockLanguageModelV3): unknown[] {
  const prompt = model.doGenerateCalls[1]!.prompt;
  return prompt.flatMap((message) =>
    message.role === "tool" ? message.content.filter((part) => part.type === "tool-result").map((part) => part.output) : [],
  );
}

describe("live: AI SDK tool approval decided in Handoff", () => {
  test("approved with edited args: the tool runs once, with the reviewer's args", async () => {
    const { model, tools, dropped } = setup();
    const run = runId("ts-ai");
    const messages: ModelMessage[] = [{ role: "user", content: "Clean up the legacy billing table." }];
    const first = await generateText({ model, tools, messages });
    assert.equal(dropped.length, 0, "nothing runs before approval");
    const conversation = [...messages, ...first.response.messages];
    assert.equal(pendingApprovals(conversation).length, 1);

    const decision = reviewer.decideLater(run, { option: "approve", args: { table: "billing_legacy_v1" } });
    const decided = await decideApprovals(client(), conversation, { runId: run, tools, timeout: 30 });
    await decision;
    assert.equal(decided.outcomes[0]!.outcome, "edited");
    // "resumed" when the run's webhook was delivered before the wait read the row (the
    // worker is that quick now); either way it is decided.
    assert.ok(["decided", "resumed"].includes(decided.outcomes[0]!.escalation.status));
    assert.deepEqual(pendingApprovals(decided.messages), []);

    const second = await generateText({ model, tools, messages: decided.messages });
    assert.deepEqual(dropped, ["billing_legacy_v1"]);
    assert.equal(second.text, "All done.");
    assert.deepEqual(toolResultsSeen(model), [{ type: "text", value: "dropped billing_legacy_v1" }]);
    assert.equal((await client().get(decided.outcomes[0]!.escalation)).status, "resumed", "acknowledged");
  });

  test("rejected with an instruction: the tool does not run, the model reads the reason", async () => {
    const { model, tools, dropped } = setup();
    const run = runId("ts-ai");
    const messages: ModelMessage[] = [{ role: "user", content: "Clean up." }];
    const first = await generateText({ model, tools, messages });
    const decision = reviewer.decideLater(run, { kind: "instruction", instruction: "Archive it to S3 first." });
    const decided = await decideApprovals(client(), [...messages, ...first.response.messages], { runId: run, timeout: 30 });
    await decision;
    assert.equal(decided.outcomes[0]!.outcome, "rejected");
    await generateText({ model, tools, messages: decided.messages });
    assert.deepEqual(dropped, []);
    assert.deepEqual(toolResultsSeen(model), [{ type: "execution-denied", reason: "Archive it to S3 first." }]);
  });

  test("halted: decideApprovals rejects with Halted", async () => {
    const { model, tools } = setup();
    const run = runId("ts-ai");
    const messages: ModelMessage[] = [{ role: "user", content: "Clean up." }];
    const first = await generateText({ model, tools, messages });
    const decision = reviewer.decideLater(run, { kind: "halt" });
    const error = await decideApprovals(client(), [...messages, ...first.response.messages], { runId: run, timeout: 30 }).catch((e) => e);
    await decision;
    assert.ok(error instanceof Halted, String(error));
  });
});

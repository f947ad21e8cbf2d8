/** examples/typescript/agent.ts, run as a process against the live server: a reviewer
 * narrows the branch list, the agent deletes exactly those. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { live, reviewer, sleep } from "./helpers.js";

const AGENT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "examples", "typescript", "agent.js");

test("the example agent escalates, waits, and deletes what the reviewer approved", async () => {
  const child = spawn(process.execPath, [AGENT], {
    env: { ...process.env, HANDOFF_URL: live.url, HANDOFF_TOKEN: live.token, AGENT_TIMEOUT: "60" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number>((done) => child.once("exit", (code) => done(code ?? 1)));
  for (let i = 0; i < 100 && !/escalated: a reviewer decides at (\S+)/.test(out); i++) await sleep(100);
  const url = /escalated: a reviewer decides at (\S+)/.exec(out)?.[1];
  assert.ok(url, out);
  await reviewer.decide(url.split("/").pop()!, {
    option: "delete",
    args: { branches: ["spike/graphql", "feature/dark-mode"], remote: "origin" },
    instruction: "Keep release branches.",
  });
  assert.equal(await exited, 0, out);
  assert.match(out, /gate: escalate/);
  assert.match(out, /git push origin --delete spike\/graphql/);
  assert.match(out, /git push origin --delete feature\/dark-mode/);
  assert.doesNotMatch(out, /--delete release\/2024\.3/);
  assert.match(out, /noted: Keep release branches\./);
  assert.match(out, /\[agent\] done/);
});

/**
 * A small TypeScript agent that hands an irreversible step to a human and resumes with the
 * decision (the TypeScript twin of examples/agent.py).
 *
 * It cleans up stale git branches (simulated: nothing is deleted for real). Two steps go
 * fine; the third, deleting branches, can't be undone, so it asks the governance policy,
 * escalates with its history and options, prints the reviewer's URL, waits for the
 * decision, acknowledges it, and continues with whatever the reviewer chose: the branches
 * they approved (possibly an edited list), nothing, their own instruction, or a stop.
 *
 *     cd clients/typescript && npm ci
 *     HANDOFF_URL=http://127.0.0.1:8000 HANDOFF_TOKEN=hnd_... npm run example
 *
 * In your own project, `npm install @handoff/client` and import from "@handoff/client";
 * this file imports the client's source from the checkout so it runs without publishing.
 */
import { Handoff, HandoffError, WaitTimeout, type Escalation, type Step } from "../../clients/typescript/src/index.js";

const STALE = ["feature/old-checkout", "fix/1841-timezone", "spike/graphql", "release/2024.3", "feature/dark-mode"];

function say(message: string): void {
  console.log(`[agent] ${message}`);
}

function deleteBranches(branches: string[], remote: string): void {
  for (const branch of branches) say(`(simulated) git push ${remote} --delete ${branch}`);
}

async function main(): Promise<number> {
  const url = process.env["HANDOFF_URL"] ?? "http://127.0.0.1:8000";
  const token = process.env["HANDOFF_TOKEN"];
  if (!token) {
    console.error("HANDOFF_TOKEN is not set (python manage.py agent_create my-agent prints one)");
    return 2;
  }
  const timeout = process.env["AGENT_TIMEOUT"] ? Number(process.env["AGENT_TIMEOUT"]) : undefined;
  const handoff = new Handoff(url, { token });
  const runId = `branch-janitor-ts-${globalThis.crypto.randomUUID().slice(0, 8)}`;
  const history: Step[] = [];
  const step = (action: string, outcome: Step["outcome"] = "ok", detail = ""): void => {
    history.push({ at: new Date(), action, outcome, ...(detail ? { detail } : {}) });
    say(`${action} [${outcome}]${detail ? `: ${detail}` : ""}`);
  };

  step("Listed remote branches", "ok", "214 branches on origin");
  step("Found branches merged and untouched for 90 days", "ok", STALE.join(", "));

  const verdict = await handoff.gate({
    action: { name: "delete_branches", irreversible: true, planned_scope: 5, actual_scope: STALE.length },
    confidence: 0.7,
    run_id: runId,
  });
  say(`gate: ${verdict.verdict} (tier ${verdict.tier}: ${verdict.reasons.join("; ")})`);
  if (verdict.verdict === "proceed") {
    deleteBranches(STALE, "origin");
    return 0;
  }

  let escalation: Escalation;
  try {
    escalation = await handoff.escalate({
      run_id: runId,
      title: `Delete ${STALE.length} stale branches on origin?`,
      uncertainty:
        "release/2024.3 is a release branch: the cleanup rule says merged and idle for 90 days, " +
        "but release branches may be kept on purpose for hotfixes. Deleting a remote branch can't be undone here.",
      reason: "irreversible_action",
      confidence: 0.7,
      history,
      options: [
        { key: "delete", label: "Delete these branches", irreversible: true, recommended: true, args: { branches: STALE, remote: "origin" } },
        { key: "skip", label: "Delete nothing" },
      ],
      cost_of_delay: { blocking: false, impact: "low" },
      action: { name: "delete_branches", irreversible: true, planned_scope: 5, actual_scope: STALE.length },
    });
  } catch (error) {
    if (error instanceof HandoffError) {
      console.error(`escalation refused: ${error.message}`);
      return 1;
    }
    throw error;
  }
  say(`escalated: a reviewer decides at ${escalation.url}`);

  let decided: Escalation;
  try {
    decided = await handoff.wait(escalation, timeout === undefined ? {} : { timeout });
  } catch (error) {
    if (error instanceof WaitTimeout) {
      say(`no decision after ${timeout} s: leaving the branches alone`);
      return 3;
    }
    throw error;
  }
  const decision = decided.decision;
  if (!decision) {
    say(`the escalation ended ${decided.status} without a decision`);
    return 1;
  }
  await handoff.ack(decided);
  say(`decision: ${decision.kind}${decision.option ? ` ${decision.option}` : ""} by ${decision.decided_by.type} ${decision.decided_by.name ?? ""}`.trim());
  if (decision.kind === "option" && decision.option === "delete") {
    const args = (decision.args ?? {}) as { branches?: string[]; remote?: string };
    deleteBranches(args.branches ?? [], args.remote ?? "origin");
    if (decision.instruction) say(`noted: ${decision.instruction}`);
  } else if (decision.kind === "option") {
    say("deleting nothing, as chosen");
  } else if (decision.kind === "instruction") {
    say(`following the reviewer's instruction instead: ${decision.instruction}`);
  } else {
    say(`stopping the run (${decision.kind})`);
    return 4;
  }
  say("done");
  return 0;
}

process.exitCode = await main();

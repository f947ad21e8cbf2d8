/** The published shape: every subpath export resolves (by the package's own name) to
 * built ESM with its .d.ts, and the core pulls in no framework or runtime dependency. */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  exports: Record<string, { types: string; import: string }>;
  dependencies?: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional: boolean }>;
};

test("no runtime dependencies; framework packages are optional peers", () => {
  assert.equal(manifest.dependencies, undefined);
  for (const name of ["ai", "@langchain/langgraph", "@openai/agents"]) assert.equal(manifest.peerDependenciesMeta[name]?.optional, true);
});

for (const [subpath, target] of Object.entries(manifest.exports)) {
  test(`${manifest.name}${subpath.slice(1)} resolves to built ESM with types`, async () => {
    assert.ok(existsSync(join(ROOT, target.types)), target.types);
    const module = (await import(`${manifest.name}${subpath.slice(1)}`)) as Record<string, unknown>;
    assert.ok(Object.keys(module).length > 0);
  });
}

test("the core and its adapters import only node: builtins and each other at run time", () => {
  const dist = join(ROOT, "dist");
  for (const file of ["index.js", "client.js", "errors.js", "models.js", "receipts.js", "webhooks.js", "adapt.js",
                      "adapters/ai-sdk.js", "adapters/openai-agents.js", "adapters/langgraph.js"]) {
    const source = readFileSync(join(dist, file), "utf8");
    const imports = [...source.matchAll(/^import\s[^"']*["']([^"']+)["']/gm)].map((m) => m[1]!);
    for (const name of imports) assert.ok(name.startsWith(".") || name.startsWith("node:"), `${file} imports ${name}`);
  }
});

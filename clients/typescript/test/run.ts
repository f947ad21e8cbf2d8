/** The test run: start a real Handoff server, then run every test file against it.
 *
 * The server is the repository three levels up (clients/typescript/build/…), run with
 * $HANDOFF_SERVER_PYTHON, else <repo>/.venv/bin/python. DATABASE_URL and REDIS_URL are
 * passed through when both are set (then the server runs in production mode against
 * them, with a Celery worker for webhooks); otherwise it runs embedded, its SQLite
 * database in a temporary HANDOFF_VAR_DIR. It serves on a free port; a webhook receiver
 * in this process records deliveries for the tests. Extra arguments go to `node --test`
 * (e.g. a file name). HANDOFF_TEST_OFFLINE=1 runs only the tests that need no server. */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
/** The repository: the nearest folder above with manage.py (this file runs from build/…). */
function serverRoot(): string {
  for (let dir = HERE; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "manage.py"))) return dir;
    if (dirname(dir) === dir) return resolve(HERE, "..", "..", "..", "..", "..");
  }
}
export const SERVER_ROOT = serverRoot();
const STARTUP_TIMEOUT_MS = 90_000;

function serverPython(): string {
  if (process.env["HANDOFF_SERVER_PYTHON"]) return process.env["HANDOFF_SERVER_PYTHON"];
  const venv = join(SERVER_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createNetServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => done(port));
    });
  });
}

interface Delivery {
  headers: Record<string, string | string[] | undefined>;
  body: string; // base64 of the raw bytes
}

/** Records POSTs; GET /deliveries answers them all as JSON. */
function webhookReceiver(): Promise<{ server: Server; url: string }> {
  const received: Delivery[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      if (request.method === "POST") {
        received.push({ headers: request.headers, body: Buffer.concat(chunks).toString("base64") });
        response.writeHead(204).end();
      } else {
        response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(received));
      }
    });
  });
  return new Promise((done) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      done({ server, url: `http://127.0.0.1:${port}` });
    }),
  );
}

class HandoffServer {
  readonly env: NodeJS.ProcessEnv;
  readonly baseUrl: string;
  private processes: ChildProcess[] = [];

  constructor(
    readonly varDir: string,
    readonly port: number,
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
    if (!env["DATABASE_URL"] || !env["REDIS_URL"]) {
      delete env["DATABASE_URL"];
      delete env["REDIS_URL"];
      env["HANDOFF_VAR_DIR"] = varDir;
    }
    Object.assign(env, { HOST: "127.0.0.1", PORT: String(port), PUBLIC_URL: this.baseUrl });
    env["SECRET_KEY"] ??= `ts-live-tests-${globalThis.crypto.randomUUID()}`;
    env["ALLOWED_HOSTS"] ??= "127.0.0.1,localhost";
    // Production settings (DATABASE_URL set) redirect http to https and refuse loopback
    // webhooks; this server speaks plain http to agents and receivers on 127.0.0.1.
    env["SECURE_SSL_REDIRECT"] ??= "0";
    env["OUTBOUND_ALLOW_PRIVATE"] ??= "1";
    this.env = env;
  }

  /** `python manage.py ARGS` against the server's database; its stdout. */
  manage(args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
    return new Promise((done, fail) => {
      const child = spawn(serverPython(), ["manage.py", ...args], {
        cwd: SERVER_ROOT,
        env: { ...this.env, ...extraEnv },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 120_000,
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
      child.once("error", fail);
      child.once("exit", (code) =>
        code === 0 ? done(out) : fail(new Error(`manage.py ${args.join(" ")} failed (${code}):\n${out}${err}`)),
      );
    });
  }

  async migrate(): Promise<void> {
    await this.manage(["migrate", "--noinput", "-v0"]);
  }

  /** Start the web server (and, in production mode, a worker); resolve once it answers. */
  async serve(): Promise<void> {
    const log = openSync(join(this.varDir, "server.log"), "a");
    if (this.env["REDIS_URL"]) {
      // Production mode: webhooks go out from a Celery worker.
      this.processes.push(
        spawn(
          serverPython(),
          ["-m", "celery", "-A", "handoff_site", "worker", "-P", "threads", "-c", "4",
           "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
          { cwd: SERVER_ROOT, env: this.env, stdio: ["ignore", log, log] },
        ),
      );
    }
    const web = spawn(
      serverPython(),
      ["-m", "uvicorn", "handoff_site.asgi:application", "--host", "127.0.0.1", "--port", String(this.port)],
      { cwd: SERVER_ROOT, env: this.env, stdio: ["ignore", log, log] },
    );
    this.processes.push(web);
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline && web.exitCode === null) {
      try {
        const answer = await fetch(`${this.baseUrl}/api/v1/openapi.json`, { signal: AbortSignal.timeout(2000) });
        if (answer.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((done) => setTimeout(done, 300));
    }
    await this.stop();
    throw new Error(`the server did not start; its log:\n${this.logTail()}`);
  }

  async createAgent(name: string, resumeUrl = ""): Promise<{ token: string; signing_secret: string }> {
    const args = ["agent_create", name, ...(resumeUrl ? ["--resume-url", resumeUrl] : [])];
    const lines = (await this.manage(args)).trim().split("\n");
    return JSON.parse(lines[lines.length - 1]!) as { token: string; signing_secret: string };
  }

  async reviewerToken(): Promise<string> {
    const username = `ts-r-${globalThis.crypto.randomUUID().slice(0, 8)}`;
    await this.manage(["createsuperuser", "--noinput", "--username", username, "--email", `${username}@example.com`], {
      DJANGO_SUPERUSER_PASSWORD: globalThis.crypto.randomUUID(),
    });
    const lines = (await this.manage(["reviewer_token", username])).trim().split("\n");
    return lines[lines.length - 1]!.trim();
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.processes.map(
        (child) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const kill = setTimeout(() => child.kill("SIGKILL"), 15_000);
            child.once("exit", () => {
              clearTimeout(kill);
              done();
            });
            child.kill("SIGTERM");
          }),
      ),
    );
  }

  logTail(lines = 60): string {
    try {
      return readFileSync(join(this.varDir, "server.log"), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

function testFiles(pattern: (name: string) => boolean): string[] {
  return readdirSync(HERE)
    .filter((name) => name.endsWith(".test.js") && pattern(name))
    .sort()
    .map((name) => join(HERE, name));
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const offline = process.env["HANDOFF_TEST_OFFLINE"] === "1";
  const files = args.length ? args : testFiles((name) => !offline || !name.startsWith("live"));
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...process.env };
  let server: HandoffServer | undefined;
  let receiver: Server | undefined;
  const varDir = mkdtempSync(join(tmpdir(), "handoff-ts-"));
  try {
    if (!offline) {
      if (!existsSync(join(SERVER_ROOT, "manage.py"))) throw new Error(`no Handoff server at ${SERVER_ROOT}`);
      server = new HandoffServer(varDir, await freePort());
      const hooks = await webhookReceiver();
      receiver = hooks.server;
      const suffix = globalThis.crypto.randomUUID().slice(0, 8);
      // Migrate, then start the server and make the accounts at once (each manage.py is a
      // Django start: seconds on a busy machine).
      await server.migrate();
      const [, agent, other, reviewerToken] = await Promise.all([
        server.serve(),
        server.createAgent(`ts-live-${suffix}`, `${hooks.url}/handoff`),
        server.createAgent(`ts-other-${suffix}`),
        server.reviewerToken(),
      ]);
      Object.assign(env, {
        HANDOFF_TOKEN: agent.token,
        HANDOFF_SECRET: agent.signing_secret,
        HANDOFF_OTHER_TOKEN: other.token,
        HANDOFF_REVIEWER_TOKEN: reviewerToken,
      });
      Object.assign(env, {
        HANDOFF_URL: server.baseUrl,
        HANDOFF_HOOKS_URL: `${hooks.url}/deliveries`,
        HANDOFF_SERVER_ROOT: SERVER_ROOT,
      });
      console.log(`# live Handoff server on ${server.baseUrl}, ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    const tap = join(varDir, "results.tap");
    const child = spawn(
      process.execPath,
      ["--test", "--test-concurrency=4",
       "--test-reporter=spec", "--test-reporter-destination=stdout",
       "--test-reporter=tap", `--test-reporter-destination=${tap}`,
       ...files],
      { env, stdio: "inherit" },
    );
    const code = await new Promise<number>((done) => child.once("exit", (status) => done(status ?? 1)));
    if (code !== 0 && server) console.error(`# the server's log (last lines):\n${server.logTail()}`);
    // One pytest-style summary line (.ci/run adds up these lines across test runs).
    const counts = existsSync(tap) ? readFileSync(tap, "utf8") : "";
    const count = (word: string): number => Number(new RegExp(`^# ${word} (\\d+)$`, "m").exec(counts)?.[1] ?? 0);
    const failed = count("fail") + count("cancelled") + (code !== 0 && count("fail") === 0 ? 1 : 0);
    console.log(
      `==== ${count("pass")} passed, ${failed} failed, ${count("skipped")} skipped in ` +
        `${((Date.now() - started) / 1000).toFixed(1)}s (TypeScript client) ====`,
    );
    return code;
  } finally {
    receiver?.close();
    await server?.stop();
    rmSync(varDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();

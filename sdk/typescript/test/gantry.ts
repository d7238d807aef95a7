/**
 * Test harness: locating the gantry binary, starting an embedded Gantry, minting dev tokens.
 * Used by `global-setup.ts` (starts one server for the whole run) and by the tests (read the
 * server it started through `GANTRY_TEST_*` variables).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** `$GANTRY_BIN`, else `${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry`. */
export function gantryBin(): string {
  const explicit = process.env.GANTRY_BIN;
  if (explicit) {
    return explicit;
  }
  const target = process.env.CARGO_TARGET_DIR || join(process.env.HOME || homedir(), ".cache", "gantry-target");
  return join(target, "debug", "gantry");
}

/** The only variables the server and `dev-token` see: a clean environment, as in production. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of ["PATH", "HOME"] as const) {
    const value = process.env[key];
    if (value !== undefined) {
      env[key] = value;
    }
  }
  return { ...env, ...extra };
}

/** Runs `gantry dev-token --sub SUB` in `dir` (where `.gantry/` holds the dev key) and trims it. */
export async function mintToken(bin: string, dir: string, sub: string, extraArgs: string[] = []): Promise<string> {
  const { stdout } = await execFileAsync(bin, ["dev-token", "--sub", sub, ...extraArgs], {
    cwd: dir,
    env: cleanEnv(),
    timeout: 30_000,
  });
  const token = stdout.trim();
  if (token === "") {
    throw new Error(`gantry dev-token --sub ${sub} printed nothing`);
  }
  return token;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not get a free port"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

export interface RunningGantry {
  baseUrl: string;
  /** The server's working directory (SQLite database, `.gantry/` dev key, `gantry.log`). */
  dir: string;
  bin: string;
  /** A dev token for `alice`. */
  token: string;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (exited(child)) {
    return;
  }
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const graceful = await Promise.race([done.then(() => true), sleep(graceMs).then(() => false)]);
  if (!graceful) {
    child.kill("SIGKILL");
    await done;
  }
}

async function waitReady(child: ChildProcess, baseUrl: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) {
      return false;
    }
    try {
      const response = await fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      if (response.status === 200) {
        return true;
      }
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return false;
}

/**
 * Starts `gantry --server --workers outbox-publisher` in a fresh temporary directory (embedded
 * mode: SQLite in that directory, local dev auth), waits for `GET /health/ready` 200 and mints a
 * token for `alice`. Retries on another port if the one picked was taken meanwhile.
 */
export async function startGantry(options: { readyTimeoutMs?: number } = {}): Promise<RunningGantry> {
  const bin = gantryBin();
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      `gantry binary not found or not executable at ${bin}: build it with \`cargo build\` or set GANTRY_BIN`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "gantry-sdk-test-"));
  const logPath = join(dir, "gantry.log");
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;

  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const log = openSync(logPath, "a");
    const child = spawn(bin, ["--server", "--workers", "outbox-publisher"], {
      cwd: dir,
      env: cleanEnv({
        ROCKET_PORT: String(port),
        GANTRY_LOG: "warn",
        GANTRY_OUTBOX_POLL_INTERVAL: "100ms",
      }),
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    const ready = await Promise.race([waitReady(child, baseUrl, readyTimeoutMs), spawnError]);
    if (ready instanceof Error) {
      rmSync(dir, { recursive: true, force: true });
      throw ready;
    }
    if (ready) {
      let token: string;
      try {
        token = await mintToken(bin, dir, "alice", ["--email", "alice@example.com"]);
      } catch (err) {
        await stopChild(child);
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      return {
        baseUrl,
        dir,
        bin,
        token,
        async stop() {
          await stopChild(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    const diedEarly = exited(child);
    await stopChild(child);
    if (!diedEarly || attempt === 3) {
      const output = readFileSync(logPath, "utf8");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(
        `gantry did not become ready on ${baseUrl} (${diedEarly ? `exited ${child.exitCode ?? child.signalCode}` : "timed out"}):\n${output}`,
      );
    }
    // The port was probably taken between picking and binding it: try another.
  }
  throw new Error("unreachable");
}

/** What the tests see of the server that `global-setup.ts` started. */
export interface TestGantry {
  baseUrl: string;
  dir: string;
  bin: string;
  token: string;
  /** Mints a token for another user with the same dev key. */
  mintToken(sub: string): Promise<string>;
}

export function testGantry(): TestGantry {
  const baseUrl = process.env.GANTRY_TEST_URL;
  const dir = process.env.GANTRY_TEST_DIR;
  const token = process.env.GANTRY_TEST_TOKEN;
  const bin = process.env.GANTRY_TEST_BIN;
  if (!baseUrl || !dir || !token || !bin) {
    throw new Error("GANTRY_TEST_* is not set: run the tests with `npm test` (test/global-setup.ts starts Gantry)");
  }
  return { baseUrl, dir, bin, token, mintToken: (sub) => mintToken(bin, dir, sub) };
}

/** A DNS-1123 label unique to this run, for slugs and names. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

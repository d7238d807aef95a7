/**
 * Global setup for `npm test`: starts one embedded Gantry (see `startGantry`), runs every
 * `test/*.test.ts` with node's built-in test runner against it, then stops the server and removes
 * its temporary directory. The tests find the server through `GANTRY_TEST_URL`, `GANTRY_TEST_TOKEN`
 * (a dev token for `alice`), `GANTRY_TEST_DIR` and `GANTRY_TEST_BIN`. Extra arguments are passed to
 * `node --test` (e.g. `npm test -- --test-name-pattern=events`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startGantry, type RunningGantry } from "./gantry.js";

const testDir = dirname(fileURLToPath(import.meta.url));

async function main(): Promise<number> {
  const files = readdirSync(testDir)
    .filter((name) => name.endsWith(".test.ts"))
    .sort()
    .map((name) => join(testDir, name));
  if (files.length === 0) {
    console.error("no test files in", testDir);
    return 1;
  }

  let gantry: RunningGantry | undefined;
  let tests: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= gantry?.stop() ?? Promise.resolve());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      tests?.kill(signal);
      void stop().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
    });
  }

  try {
    gantry = await startGantry();
    console.log(`gantry ready at ${gantry.baseUrl} (cwd ${gantry.dir})`);
    const child = (tests = spawn(process.execPath, ["--import", "tsx", "--test", ...process.argv.slice(2), ...files], {
      stdio: "inherit",
      env: {
        ...process.env,
        GANTRY_TEST_URL: gantry.baseUrl,
        GANTRY_TEST_TOKEN: gantry.token,
        GANTRY_TEST_DIR: gantry.dir,
        GANTRY_TEST_BIN: gantry.bin,
      },
    }));
    return await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
  } finally {
    await stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);

#!/usr/bin/env node
// graphile-worker peer workload: N no-op jobs enqueued with WorkerUtils.addJobs
// (in batches of BENCH_BATCH) while one runner with concurrency C consumes
// them. Postgres at BENCH_PG_URL (loopback only); the database is created if
// missing, and each run migrates its own schema (gantry_bench_<pid>_<ms>),
// which is dropped afterwards. Prints one result line on stdout; logs on stderr.
import { once, EventEmitter } from "node:events";
import pg from "pg";
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker";
import {
  BATCH, Recorder, assertLoopback, log, nowMs, parseArgs, report, runName, withTimeout,
} from "./common.mjs";

const opts = parseArgs();
const dbUrl = process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/gantry_bench_graphile";
assertLoopback(dbUrl, "BENCH_PG_URL");

const quoteIdent = (s) => `"${s.replace(/"/g, '""')}"`;

/** Creates the target database (via the `postgres` database) if it is missing. */
async function ensureDatabase(url) {
  const u = new URL(url);
  const dbName = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (!dbName) throw new Error("BENCH_PG_URL must name a database");
  u.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: u.toString() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [dbName]);
    if (rowCount === 0) {
      try {
        await admin.query(`CREATE DATABASE ${quoteIdent(dbName)}`);
        log(`graphile-worker: created database ${dbName}`);
      } catch (err) {
        if (err.code !== "42P04") throw err; // created concurrently: fine
      }
    }
  } finally {
    await admin.end();
  }
}

// Per-job "Completed task ..." info lines would dominate a no-op benchmark;
// keep warnings and errors (on stderr, so stdout stays one result line).
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") log(`graphile-worker ${level}: ${message}`);
});

await ensureDatabase(dbUrl);
const schema = runName("_");
// graphile-worker recommends a pool at least as large as the concurrency.
const pgPool = new pg.Pool({ connectionString: dbUrl, max: opts.concurrency + 2 });
pgPool.on("error", (err) => log(`pg pool error: ${err?.message || err}`));
pgPool.on("connect", (client) => client.on("error", (err) => log(`pg client error: ${err?.message || err}`)));
const shared = { pgPool, schema, logger };

const rec = new Recorder(opts.jobs);
const events = new EventEmitter();
let runner;
let workerUtils;
let exitCode = 0;
try {
  await runMigrations(shared);
  workerUtils = await makeWorkerUtils(shared);

  const listening = once(events, "pool:listen:success");
  runner = await run({
    ...shared,
    events,
    concurrency: opts.concurrency,
    noHandleSignals: true,
    parsedCronItems: [],
    taskList: {
      noop: async (payload) => {
        rec.done(payload.t); // no-op job: just record completion
      },
    },
  });
  await withTimeout(listening, "graphile-worker LISTEN");
  log(`graphile-worker: schema ${schema}, ${opts.jobs} jobs, concurrency ${opts.concurrency}, batch ${BATCH}`);

  const startedAt = nowMs();
  for (let sent = 0; sent < opts.jobs; sent += BATCH) {
    const n = Math.min(BATCH, opts.jobs - sent);
    const t = nowMs();
    const specs = new Array(n);
    for (let i = 0; i < n; i++) specs[i] = { identifier: "noop", payload: { t } };
    await workerUtils.addJobs(specs);
  }
  log(`graphile-worker: enqueued ${opts.jobs} jobs in ${((nowMs() - startedAt) / 1000).toFixed(3)} s`);

  await withTimeout(rec.finished, "graphile-worker");
  report("graphile-worker", opts, startedAt, rec);
} catch (err) {
  log(`graphile-worker: FAILED: ${err?.stack || err}`);
  exitCode = 1;
} finally {
  try {
    if (runner) await runner.stop();
    if (workerUtils) await workerUtils.release();
    await pgPool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    log(`graphile-worker: dropped schema ${schema}`);
  } catch (err) {
    log(`graphile-worker: cleanup failed: ${err?.stack || err}`);
    exitCode = 1;
  }
  await pgPool.end().catch(() => {});
}
process.exit(exitCode);

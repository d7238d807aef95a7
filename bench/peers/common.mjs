// Shared helpers for the peer workloads. The workload shape mirrors
// `gantry bench queue`: enqueue N no-op jobs in bulk while C concurrent
// workers consume them; report N / (first enqueue -> last completion) and the
// per-job enqueue->done latency p50/p99.
import { performance } from "node:perf_hooks";

/** Monotonic milliseconds (fractional). Enqueuer and workers share a process. */
export const nowMs = () => performance.now();

/** Enqueue batch size (jobs per bulk call). */
export const BATCH = positiveInt(process.env.BENCH_BATCH ?? "1000", "BENCH_BATCH");

/** Give up (exit 1) if the run has not finished after this many seconds. */
export const TIMEOUT_S = positiveInt(process.env.BENCH_TIMEOUT_S ?? "300", "BENCH_TIMEOUT_S");

function positiveInt(raw, what) {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`${what} must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Parses `--jobs N --concurrency C` (also `--jobs=N`), defaulting to N=5000, C=50. */
export function parseArgs(argv = process.argv.slice(2)) {
  const opts = { jobs: 5000, concurrency: 50 };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split("=", 2);
    if (flag === "-h" || flag === "--help") {
      process.stderr.write("usage: node <script> [--jobs N] [--concurrency C]\n");
      process.exit(0);
    }
    if (flag !== "--jobs" && flag !== "--concurrency") {
      throw new Error(`unknown argument: ${argv[i]}`);
    }
    if (value === undefined) value = argv[++i];
    opts[flag.slice(2)] = positiveInt(value, flag);
  }
  return opts;
}

/**
 * Only loopback targets are allowed for benchmark traffic. Accepts
 * localhost, 127.0.0.0/8 and ::1; an empty host (Unix socket) is local too.
 */
export function assertLoopback(url, what) {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const socketHost = u.searchParams.get("host");
  const ok =
    (host === "" && (!socketHost || socketHost.startsWith("/"))) ||
    host === "localhost" ||
    host === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!ok) {
    throw new Error(`${what} must point at a loopback address (127.0.0.0/8, localhost, ::1); got host ${JSON.stringify(u.hostname)}`);
  }
  if (socketHost && !socketHost.startsWith("/")) {
    assertLoopback(`postgres://${socketHost}/`, `${what} (host= parameter)`);
  }
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Collects completions. `done(enqueuedAt)` is called from the job handler;
 * `finished` resolves once `expected` jobs have completed.
 */
export class Recorder {
  constructor(expected) {
    this.expected = expected;
    this.latencies = new Float64Array(expected);
    this.count = 0;
    this.lastDone = NaN;
    this.finished = new Promise((resolve) => (this._resolve = resolve));
  }

  done(enqueuedAt) {
    const t = nowMs();
    if (this.count >= this.expected) {
      // More completions than jobs would mean a duplicate delivery.
      this.count++;
      return;
    }
    this.latencies[this.count++] = t - enqueuedAt;
    this.lastDone = t;
    if (this.count === this.expected) this._resolve();
  }
}

/** Prints the single result line (stdout) in the shared format. */
export function report(backend, { jobs, concurrency }, startedAt, rec) {
  const elapsedS = (rec.lastDone - startedAt) / 1000;
  const sorted = Array.from(rec.latencies).sort((a, b) => a - b);
  const line =
    `backend=${backend} jobs=${jobs} concurrency=${concurrency}` +
    ` jobs_per_sec=${(jobs / elapsedS).toFixed(1)}` +
    ` p50_ms=${percentile(sorted, 50).toFixed(2)}` +
    ` p99_ms=${percentile(sorted, 99).toFixed(2)}`;
  log(`${backend}: ${jobs} jobs in ${elapsedS.toFixed(3)} s` + (rec.count > jobs ? ` (${rec.count - jobs} duplicate completions!)` : ""));
  process.stdout.write(line + "\n");
}

export function log(msg) {
  process.stderr.write(`[${new Date().toISOString()}] ${msg}\n`);
}

/** Rejects after TIMEOUT_S so a stuck run cannot hang the comparison. */
export function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${TIMEOUT_S}s`)), TIMEOUT_S * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A per-run unique name: gantry-bench-<pid>-<epoch ms>. */
export const runName = (sep = "-") => ["gantry", "bench", process.pid, Date.now()].join(sep);

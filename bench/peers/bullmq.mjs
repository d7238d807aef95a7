#!/usr/bin/env node
// BullMQ peer workload: N no-op jobs enqueued with Queue.addBulk (in batches of
// BENCH_BATCH) while one Worker with concurrency C consumes them. Redis at
// REDIS_URL (loopback only). Prints one result line on stdout; logs on stderr.
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import {
  BATCH, Recorder, assertLoopback, log, nowMs, parseArgs, report, runName, withTimeout,
} from "./common.mjs";

const opts = parseArgs();
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
assertLoopback(redisUrl, "REDIS_URL");

const queueName = runName();
// BullMQ requires maxRetriesPerRequest=null on the connections a Worker uses.
const connect = () => new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
const queueConn = connect();
const workerConn = connect();

// Completed jobs are removed (as graphile-worker does with finished jobs) so
// the run leaves nothing behind besides what obliterate() clears.
const queue = new Queue(queueName, {
  connection: queueConn,
  defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
});

const rec = new Recorder(opts.jobs);
let worker;
let exitCode = 0;
try {
  worker = new Worker(
    queueName,
    async (job) => {
      rec.done(job.data.t); // no-op job: just record completion
    },
    { connection: workerConn, concurrency: opts.concurrency },
  );
  worker.on("error", (err) => log(`worker error: ${err?.stack || err}`));
  await queue.waitUntilReady();
  await worker.waitUntilReady();
  log(`bullmq: queue ${queueName}, ${opts.jobs} jobs, concurrency ${opts.concurrency}, batch ${BATCH}`);

  const startedAt = nowMs();
  for (let sent = 0; sent < opts.jobs; sent += BATCH) {
    const n = Math.min(BATCH, opts.jobs - sent);
    const t = nowMs();
    const batch = new Array(n);
    for (let i = 0; i < n; i++) batch[i] = { name: "noop", data: { t } };
    await queue.addBulk(batch);
  }
  log(`bullmq: enqueued ${opts.jobs} jobs in ${((nowMs() - startedAt) / 1000).toFixed(3)} s`);

  await withTimeout(rec.finished, "bullmq");
  report("bullmq", opts, startedAt, rec);
} catch (err) {
  log(`bullmq: FAILED: ${err?.stack || err}`);
  exitCode = 1;
} finally {
  try {
    if (worker) await worker.close(true);
    await queue.obliterate({ force: true });
    await queue.close();
    log(`bullmq: obliterated queue ${queueName}`);
  } catch (err) {
    log(`bullmq: cleanup failed: ${err?.stack || err}`);
    exitCode = 1;
  }
  queueConn.disconnect();
  workerConn.disconnect();
}
process.exit(exitCode);

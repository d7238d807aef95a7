//! The Redis queue backend: one Lua script per batch operation, so a push of 500 jobs, a claim
//! of 50 or an acknowledgement of 200 is one round trip.
//!
//! Keys of queue `q` (already prefixed): `q:pending` (list of ready task ids, oldest first),
//! `q:scheduled` (sorted set, score = run-at ms), `q:running` (sorted set, score = lease
//! deadline ms), `q:done` (sorted set, score = settled-at ms) and `q:data` (hash: task id →
//! encoded envelope). A task id present in `q:data` is never pushed again, which is what makes
//! a re-routed event a no-op while its attempt is remembered (until it is forgotten after
//! `GANTRY_JOB_RETENTION`).

use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::LazyLock;

/// Ids moved per script call where the script unpacks them (Lua's stack limit is ~8000).
const SCRIPT_CHUNK: usize = 500;

/// KEYS: data, pending, scheduled. ARGV: now ms, then (id, run-at ms, payload) triples.
/// Returns how many were new.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV, 3 do
  local id, at = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('HSETNX', KEYS[1], id, ARGV[i + 2]) == 1 then
    if at > now then
      redis.call('ZADD', KEYS[3], at, id)
    else
      redis.call('RPUSH', KEYS[2], id)
    end
    n = n + 1
  end
end
return n
",
    )
});

/// KEYS: pending, scheduled, running, data. ARGV: now ms, lease deadline ms, limit.
/// Moves due scheduled jobs to the ready list, leases up to `limit` ready ones; returns
/// alternating id, payload.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  redis.call('RPUSH', KEYS[1], unpack(due))
end
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[3]))
if not ids then return {} end
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[4], id)
  if body then
    redis.call('ZADD', KEYS[3], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = body
  end
end
return out
",
    )
});

/// KEYS: running, done. ARGV: now ms, ids… Settles running attempts.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = ARGV[1]
  args[#args + 1] = ARGV[i]
end
redis.call('ZREM', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], unpack(args))
return #ARGV - 1
",
    )
});

/// KEYS: running. ARGV: lease deadline ms, ids… Extends the leases of ids still running.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = ARGV[1]
  args[#args + 1] = ARGV[i]
end
return redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(args))
",
    )
});

/// KEYS: running, pending. ARGV: ids… Gives leased ids back (to the front of the ready list).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local back = {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then back[#back + 1] = ARGV[i] end
end
if #back > 0 then redis.call('LPUSH', KEYS[2], unpack(back)) end
return #back
",
    )
});

/// KEYS: running, pending. ARGV: now ms. Makes jobs whose lease ran out ready again.
static RESCUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('LPUSH', KEYS[2], unpack(ids))
end
return #ids
",
    )
});

/// KEYS: done, data. ARGV: cutoff ms. Forgets attempts settled before the cutoff.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
return #ids
",
    )
});

/// The keys of one (prefixed) queue.
pub(super) struct Keys {
    pub pending: String,
    pub scheduled: String,
    pub running: String,
    pub done: String,
    pub data: String,
}

impl Keys {
    /// The keys of prefixed queue `name`.
    pub fn of(name: &str) -> Self {
        Self {
            pending: format!("{name}:pending"),
            scheduled: format!("{name}:scheduled"),
            running: format!("{name}:running"),
            done: format!("{name}:done"),
            data: format!("{name}:data"),
        }
    }
}

/// Pushes `(id, run-at ms, payload)` jobs; returns how many were new.
pub(super) async fn push(
    conn: &ConnectionManager,
    keys: &Keys,
    jobs: &[(String, i64, String)],
    now_ms: i64,
) -> Result<u64, redis::RedisError> {
    let mut new = 0u64;
    for chunk in jobs.chunks(SCRIPT_CHUNK) {
        let mut invocation = PUSH.prepare_invoke();
        invocation
            .key(&keys.data)
            .key(&keys.pending)
            .key(&keys.scheduled)
            .arg(now_ms);
        for (id, run_at, payload) in chunk {
            invocation.arg(id).arg(*run_at).arg(payload);
        }
        let n: u64 = invocation.invoke_async(&mut conn.clone()).await?;
        new += n;
    }
    Ok(new)
}

/// Leases up to `limit` due jobs until `lease_until`; `(id, payload)` pairs.
pub(super) async fn claim(
    conn: &ConnectionManager,
    keys: &Keys,
    limit: usize,
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<(String, String)>, redis::RedisError> {
    let flat: Vec<String> = CLAIM
        .key(&keys.pending)
        .key(&keys.scheduled)
        .key(&keys.running)
        .key(&keys.data)
        .arg(now_ms)
        .arg(lease_until)
        .arg(limit)
        .invoke_async(&mut conn.clone())
        .await?;
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(id), Some(payload)) = (items.next(), items.next()) {
        pairs.push((id, payload));
    }
    Ok(pairs)
}

/// Settles running ids.
pub(super) async fn complete(
    conn: &ConnectionManager,
    keys: &Keys,
    ids: &[String],
    now_ms: i64,
) -> Result<(), redis::RedisError> {
    for chunk in ids.chunks(SCRIPT_CHUNK) {
        let _: u64 = COMPLETE
            .key(&keys.running)
            .key(&keys.done)
            .arg(now_ms)
            .arg(chunk)
            .invoke_async(&mut conn.clone())
            .await?;
    }
    Ok(())
}

/// Extends the leases of `ids` (those still running) to `lease_until`.
pub(super) async fn extend(
    conn: &ConnectionManager,
    keys: &Keys,
    ids: &[String],
    lease_until: i64,
) -> Result<(), redis::RedisError> {
    for chunk in ids.chunks(SCRIPT_CHUNK) {
        let _: u64 = EXTEND
            .key(&keys.running)
            .arg(lease_until)
            .arg(chunk)
            .invoke_async(&mut conn.clone())
            .await?;
    }
    Ok(())
}

/// Gives leased `ids` back to the front of the ready list; returns how many were still leased.
pub(super) async fn release(
    conn: &ConnectionManager,
    keys: &Keys,
    ids: &[String],
) -> Result<u64, redis::RedisError> {
    let mut released = 0;
    for chunk in ids.chunks(SCRIPT_CHUNK) {
        let n: u64 = RELEASE
            .key(&keys.running)
            .key(&keys.pending)
            .arg(chunk)
            .invoke_async(&mut conn.clone())
            .await?;
        released += n;
    }
    Ok(released)
}

/// Makes expired leases ready again; returns how many.
pub(super) async fn rescue(
    conn: &ConnectionManager,
    keys: &Keys,
    now_ms: i64,
) -> Result<u64, redis::RedisError> {
    let mut rescued = 0;
    loop {
        let n: u64 = RESCUE
            .key(&keys.running)
            .key(&keys.pending)
            .arg(now_ms)
            .invoke_async(&mut conn.clone())
            .await?;
        rescued += n;
        if n < SCRIPT_CHUNK as u64 {
            return Ok(rescued);
        }
    }
}

/// Forgets attempts settled before `cutoff_ms`; returns how many.
pub(super) async fn forget(
    conn: &ConnectionManager,
    keys: &Keys,
    cutoff_ms: i64,
) -> Result<u64, redis::RedisError> {
    let mut forgotten = 0;
    loop {
        let n: u64 = FORGET
            .key(&keys.done)
            .key(&keys.data)
            .arg(cutoff_ms)
            .invoke_async(&mut conn.clone())
            .await?;
        forgotten += n;
        if n < SCRIPT_CHUNK as u64 {
            return Ok(forgotten);
        }
    }
}

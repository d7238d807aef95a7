#!/usr/bin/env bash
# The operator console in a real browser: starts the debug binary in embedded mode (SQLite, dev
# auth, simulated driver, every worker) on a free loopback port with a temporary data directory,
# then runs ci/console/console.test.mjs (playwright-core driving the system's headless
# Chromium). Screenshots land in target/console-screenshots/ (kept by CI as artifacts).
# With CONSOLE_TEST_DATABASE_URL (a Postgres admin URL) and CONSOLE_TEST_REDIS_URL set, the same
# scenario runs against Postgres + Redis instead (a fresh database, a fresh queue prefix; dev auth
# still), with screenshots in target/console-screenshots/postgres-redis/.
# Needs GANTRY_BIN (default $CARGO_TARGET_DIR/debug/gantry), node/npm; installs Debian's
# chromium and chromium-driver when missing. Works from any directory.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GANTRY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry}"
[[ -x "$bin" ]] || { echo "console_test: no gantry binary at $bin (cargo build, or set GANTRY_BIN)" >&2; exit 1; }

if [[ ! -x /usr/bin/chromium ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d)"
shots="$repo/target/console-screenshots"
database_url="sqlite://$work/gantry.db?mode=rwc"
backend=(GANTRY_QUEUE_PREFIX="gantry:")
dbname=""
if [[ -n "${CONSOLE_TEST_DATABASE_URL:-}" && -n "${CONSOLE_TEST_REDIS_URL:-}" ]]; then
  dbname="gantry_console_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql -q "$CONSOLE_TEST_DATABASE_URL" -c "CREATE DATABASE $dbname"
  database_url="${CONSOLE_TEST_DATABASE_URL%/*}/$dbname"
  backend=(REDIS_URL="$CONSOLE_TEST_REDIS_URL" GANTRY_QUEUE_PREFIX="$dbname:" GANTRY_EVENT_STREAM="$dbname:events")
  shots="$shots/postgres-redis"
fi
rm -rf "$shots" && mkdir -p "$shots"
server=""
cleanup() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" && wait "$server" || true
  fi
  if [[ -n "$dbname" ]]; then
    psql -q "$CONSOLE_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" || true
    redis-cli -u "$CONSOLE_TEST_REDIS_URL" --scan --pattern "$dbname:*" | xargs -r redis-cli -u "$CONSOLE_TEST_REDIS_URL" DEL >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A clean environment: embedded mode must not pick up Keycloak or a database from the caller.
(cd "$work" && exec env -i PATH="$PATH" HOME="$work" \
  ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" \
  DATABASE_URL="$database_url" "${backend[@]}" GANTRY_DATA_DIR="$work/data" \
  GANTRY_LOG=warn GANTRY_OUTBOX_POLL_INTERVAL=100ms \
  GANTRY_QUEUE_PROBE_CONCURRENCY=4 GANTRY_QUEUE_PROBE_MAX_ATTEMPTS=2 \
  GANTRY_JOB_BACKOFF_BASE=100ms GANTRY_JOB_BACKOFF_CAP=200ms \
  GANTRY_SIMULATED_DELAY_MS=400 \
  "$bin" --server --all-workers) >"$work/server.log" 2>&1 &
server=$!

for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; echo "console_test: gantry exited" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null || { cat "$work/server.log"; exit 1; }

cd "$repo/ci/console"
npm ci --no-audit --no-fund
echo "console_test: gantry on 127.0.0.1:$port ($database_url); screenshots in $shots"
status=0
GANTRY_URL="http://127.0.0.1:$port" GANTRY_SCREENSHOTS="$shots" CHROMIUM=/usr/bin/chromium npm test || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- gantry log"; tail -n 100 "$work/server.log"
fi
exit $status

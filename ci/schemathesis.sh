#!/usr/bin/env bash
# API conformance: schemathesis (`--checks all`, a fixed seed, bounded examples) against a live
# embedded Gantry (SQLite + dev auth, a temporary data dir, a free loopback port), as a platform
# admin and as a plain member of an organization. Any failure fails the run. ci/schemathesis.toml
# lists the operations whose rules a schema cannot state (422 accepted for schema-valid data).
# Needs python3 and a built gantry binary: GANTRY_BIN, default
# ${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry. Knobs: SCHEMATHESIS_SEED,
# SCHEMATHESIS_MAX_EXAMPLES, SCHEMATHESIS_VENV (where schemathesis is installed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GANTRY_BIN="${GANTRY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry}"
if [[ ! -x "$GANTRY_BIN" ]]; then
  echo "schemathesis: no gantry binary at $GANTRY_BIN (run 'cargo build' or set GANTRY_BIN)" >&2
  exit 1
fi
SEED="${SCHEMATHESIS_SEED:-20261202}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
VERSION="4.32.5"
venv="${SCHEMATHESIS_VENV:-$HOME/.cache/gantry-schemathesis}"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$VERSION"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# The write rate limit is the one knob changed: the fuzzer writes far faster than any user
# (its 429s are documented, but would hide every other answer). Quotas stay at their defaults.
export DATABASE_URL="sqlite://$work/gantry.db?mode=rwc" GANTRY_DATA_DIR="$work/data" \
  ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" GANTRY_LOG="${GANTRY_LOG:-warn}" \
  GANTRY_RATE_LIMIT_WRITES_PER_SECOND=0
(cd "$work" && exec "$GANTRY_BIN" --server --workers outbox-publisher) >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$base/health/ready" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.5
done

admin="$(cd "$work" && "$GANTRY_BIN" dev-token --sub st-admin --admin --ttl 2h)"
member="$(cd "$work" && "$GANTRY_BIN" dev-token --sub st-member --ttl 2h)"
# The member belongs to one organization (created by the admin), with role member.
org="$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name":"Conformance","slug":"conformance"}' "$base/v1/orgs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
curl -fsS -o /dev/null -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"user_sub":"st-member","role":"member"}' "$base/v1/orgs/$org/members"

run() {
  local who="$1" token="$2"
  printf '\n=== schemathesis as %s (seed %s, max %s examples)\n' "$who" "$SEED" "$MAX_EXAMPLES"
  "$venv/bin/schemathesis" --config-file "$root/ci/schemathesis.toml" run "$base/v1/openapi.json" \
    --checks all --seed "$SEED" --max-examples "$MAX_EXAMPLES" --workers 2 \
    -H "Authorization: Bearer $token" \
    --exclude-path-regex '/stream$' \
    --suppress-health-check too_slow,filter_too_much \
    --request-timeout 10 --no-color
}
status=0
run "platform admin" "$admin" || status=1
run "member" "$member" || status=1
if [[ $status -ne 0 ]]; then
  echo "schemathesis found failures (server log: last lines below)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status

#!/usr/bin/env bash
# The API hot path: the release binary as `gantry --server`, once on Postgres and once on
# SQLite (embedded), driven over loopback by wrk (saturation: req/s) and oha (a fixed rate:
# p50/p99/max). Per backend it creates an organization, a workspace and PROJECTS projects
# through the API, then measures
#   GET /health/live                  the server's own ceiling (no token, no database)
#   GET /v1/me                        token + memberships
#   GET /v1/orgs/{org}/projects       token + org access + a page of PROJECTS rows
#   PUT /v1/orgs/{org}/projects/{id}/graph   the three-tier example, round-robin over projects
#   GET …/projects at RATE req/s      latency at a fixed rate, alone and (SQLite) beside the PUTs
# and the server's peak resident set (VmHWM). The last line of output is always:
#   ratio me/live=<x> list/live=<y> list_p99_ms_at_1k=<z>
# from the Postgres run (the SQLite run when BACKENDS has only sqlite).
#
# Env knobs: DURATION (10s per wrk/oha run), THREADS (2), CONNECTIONS (32), RATE (1000),
# PROJECTS (20), BACKENDS ("postgres sqlite"), BENCH_LOG (the server's GANTRY_LOG, info: one
# log line per request, as deployed), GANTRY_BIN (the release build, built if
# missing), BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/postgres: a server where the
# bench may drop and create database gantry_bench_api). Missing tools are installed: wrk with
# apt-get, oha with `cargo install oha --locked`. Only loopback addresses are accepted.
# See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-1000}
PROJECTS=${PROJECTS:-20}
BACKENDS=${BACKENDS:-postgres sqlite}
BENCH_PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DB=gantry_bench_api
BENCH_LOG=${BENCH_LOG:-info}
GRAPH=$ROOT/examples/graphs/three-tier.json

die() { echo "api.sh: $*" >&2; exit 1; }
note() { echo "api.sh: $*" >&2; }

[[ $DURATION =~ ^[1-9][0-9]*[smh]$ ]] || die "DURATION must look like 10s, 2m or 1h (got '$DURATION')"
for knob in THREADS CONNECTIONS RATE PROJECTS; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
for backend in $BACKENDS; do
  [[ $backend == postgres || $backend == sqlite ]] || die "BACKENDS may hold postgres and sqlite (got '$backend')"
done

# --- The Postgres URL must name a loopback host ---------------------------------
pg_host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$BENCH_PG_URL")
case $pg_host in
  127.0.0.1 | localhost | ::1) ;;
  *) die "BENCH_PG_URL must point at a loopback host (got '$pg_host')" ;;
esac
bench_db_url=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$BENCH_PG_URL" "$BENCH_DB")

# --- Tools ----------------------------------------------------------------------
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  note "installing wrk (apt-get)"
  as_root apt-get install -y -qq wrk >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq wrk >/dev/null; }
fi
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v oha >/dev/null; then
  note "installing oha (cargo install oha --locked; a few minutes once)"
  cargo install oha --locked --quiet
fi
for tool in curl python3 psql; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

# --- The binary -----------------------------------------------------------------
default_bin=$ROOT/target/release/gantry
[[ -n ${CARGO_TARGET_DIR:-} ]] && default_bin=$CARGO_TARGET_DIR/release/gantry
GANTRY_BIN=${GANTRY_BIN:-$default_bin}
[[ $GANTRY_BIN == */* && $GANTRY_BIN != /* ]] && GANTRY_BIN=$PWD/$GANTRY_BIN
if [[ ! -x $GANTRY_BIN ]]; then
  [[ $GANTRY_BIN == "$default_bin" ]] || die "GANTRY_BIN=$GANTRY_BIN is not an executable"
  note "building the release binary"
  (cd "$ROOT" && cargo build --release --quiet --bin gantry)
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# The request body of the PUTs: {"graph": <three-tier example>}.
python3 -c 'import json, sys; print(json.dumps({"graph": json.load(open(sys.argv[1]))}))' "$GRAPH" >"$WORK/graph-body.json"

cat >"$WORK/put.lua" <<'LUA'
-- PUT the same graph round-robin over the bench's projects; If-Match: * (any version).
local ids = {}
for id in string.gmatch(os.getenv("BENCH_PROJECT_IDS"), "[^,]+") do ids[#ids + 1] = id end
local file = io.open(os.getenv("BENCH_GRAPH_BODY"))
local body = file:read("*a")
file:close()
local org = os.getenv("BENCH_ORG")
local token = os.getenv("BENCH_TOKEN")
local n = math.random(#ids)
request = function()
  n = n % #ids + 1
  return wrk.format("PUT", "/v1/orgs/" .. org .. "/projects/" .. ids[n] .. "/graph", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["If-Match"] = "*",
  }, body)
end
LUA

# wrk_run NAME URL [extra wrk args…] -> one row; req/s in WRK_RPS.
wrk_run() {
  local name=$1 url=$2
  shift 2
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  local p99 errors
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  printf '%-9s %-34s %10s req/s  p99 %-9s non-2xx %s\n' "$BACKEND" "$name" "$WRK_RPS" "$p99" "${errors:-0}"
  [[ -z $errors ]] || note "$name: $errors responses were not 2xx"
}

# oha_run NAME URL -> one row at a fixed RATE; p99 in ms in OHA_P99.
oha_run() {
  local name=$1 url=$2
  oha --no-tui --output-format json -q "$RATE" -z "$DURATION" -c "$CONNECTIONS" \
    -H "Authorization: Bearer $TOKEN" "$url" >"$WORK/oha.json"
  read -r rps p50 p99 max ok <<<"$(python3 - "$WORK/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(n for code, n in codes.items() if code.startswith("2"))
total = sum(codes.values())
ms = lambda v: f"{(v or 0) * 1000:.2f}"
print(f'{s["requestsPerSec"]:.0f} {ms(p["p50"])} {ms(p["p99"])} {ms(s["slowest"])} {ok}/{total}')
PY
)"
  OHA_P99=$p99
  printf '%-9s %-34s %10s req/s  p50 %sms p99 %sms max %sms  2xx %s\n' "$BACKEND" "$name" "$rps" "$p50" "$p99" "$max" "$ok"
}

api() { # METHOD PATH [BODY] -> response body; fails on a non-2xx status
  curl -sS --fail-with-body -X "$1" "$BASE$2" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}

declare -A RATIO_ME RATIO_LIST P99 RSS
for BACKEND in $BACKENDS; do
  dir=$WORK/$BACKEND
  mkdir -p "$dir/data"
  if [[ $BACKEND == postgres ]]; then
    psql -q "$BENCH_PG_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" >/dev/null
    database_url=$bench_db_url
  else
    database_url="sqlite://$dir/bench.db?mode=rwc"
  fi
  port=$(free_port)
  BASE=http://127.0.0.1:$port
  server_env=(
    env -u KEYCLOAK_ISSUER -u KEYCLOAK_JWKS_URI -u REDIS_URL -u GANTRY_METRICS_PORT
    DATABASE_URL="$database_url" GANTRY_DATA_DIR="$dir/data" GANTRY_ENV=development
    ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" GANTRY_LOG="$BENCH_LOG"
    GANTRY_RATE_LIMIT_WRITES_PER_SECOND=0
  )
  "${server_env[@]}" "$GANTRY_BIN" --server >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -fsS "$BASE/health/ready" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/server.log" >&2; die "$BACKEND: the server exited"; }
    sleep 0.2
  done
  curl -fsS "$BASE/health/ready" >/dev/null || die "$BACKEND: not ready after 60 s (log: $dir/server.log)"
  TOKEN=$("${server_env[@]}" "$GANTRY_BIN" dev-token --sub bench --ttl 2h)

  org=$(api POST /v1/orgs "{\"name\":\"Bench\",\"slug\":\"bench-$BACKEND\"}" | json_field id)
  workspace=$(api POST "/v1/orgs/$org/workspaces" '{"name":"bench","plan":"shared"}' | json_field id)
  ids=()
  for i in $(seq "$PROJECTS"); do
    ids+=("$(api POST "/v1/orgs/$org/projects" "{\"name\":\"bench-$i\",\"workspace_id\":\"$workspace\"}" | json_field id)")
  done
  listed=$(api GET "/v1/orgs/$org/projects?limit=100" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))')
  [[ $listed == "$PROJECTS" ]] || die "$BACKEND: the list holds $listed projects, not $PROJECTS"
  export BENCH_PROJECT_IDS BENCH_GRAPH_BODY=$WORK/graph-body.json BENCH_ORG=$org BENCH_TOKEN=$TOKEN
  BENCH_PROJECT_IDS=$(IFS=,; echo "${ids[*]}")
  list_url="$BASE/v1/orgs/$org/projects?limit=100"
  auth=(-H "Authorization: Bearer $TOKEN")

  wrk_run "GET /health/live" "$BASE/health/live"
  live=$WRK_RPS
  wrk_run "GET /v1/me" "$BASE/v1/me" "${auth[@]}"
  me=$WRK_RPS
  wrk_run "GET projects ($PROJECTS)" "$list_url" "${auth[@]}"
  list=$WRK_RPS
  wrk_run "PUT graph (three-tier)" "$BASE" -s "$WORK/put.lua"
  oha_run "GET projects @${RATE}/s" "$list_url"
  P99[$BACKEND]=$OHA_P99
  if [[ $BACKEND == sqlite ]]; then
    # Reads beside a saturating writer: WAL readers must not queue behind the one writer.
    wrk -t1 -c8 -d"$DURATION" -s "$WORK/put.lua" "$BASE" >"$dir/writes.txt" &
    writer=$!
    oha_run "GET projects @${RATE}/s + PUTs" "$list_url"
    wait "$writer"
    printf '%-9s %-34s %10s req/s  (the writer beside it)\n' "$BACKEND" "  PUT graph, 8 connections" \
      "$(awk '/^Requests\/sec:/ {print $2}' "$dir/writes.txt")"
  fi
  RSS[$BACKEND]=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status")
  printf '%-9s %-34s %10s MiB\n' "$BACKEND" "peak resident set (VmHWM)" "${RSS[$BACKEND]}"
  RATIO_ME[$BACKEND]=$(python3 -c "print(f'{$me / $live:.2f}')")
  RATIO_LIST[$BACKEND]=$(python3 -c "print(f'{$list / $live:.2f}')")
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  if [[ $BACKEND == postgres ]]; then
    psql -q "$BENCH_PG_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
  fi
done

summary=postgres
[[ " $BACKENDS " == *" postgres "* ]] || summary=sqlite
for backend in $BACKENDS; do
  echo "$backend: me/live=${RATIO_ME[$backend]} list/live=${RATIO_LIST[$backend]} list_p99_ms_at_1k=${P99[$backend]} rss_mib=${RSS[$backend]}"
done
echo "ratio me/live=${RATIO_ME[$summary]} list/live=${RATIO_LIST[$summary]} list_p99_ms_at_1k=${P99[$summary]}"

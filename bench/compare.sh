#!/usr/bin/env bash
# Runs the queue benchmark for gantry (redis, postgres, sqlite backends) and for
# the pinned peers (BullMQ, graphile-worker) with the same workload, measures the
# raw backend limits (redis-benchmark, pgbench), and prints one table.
# The last line of output is always:
#   ratio gantry/bullmq=<x> gantry/graphile-worker=<y> sqlite_jobs_s=<z> outbox_p99_ms=<w>
#
# `bash bench/compare.sh --soak` instead runs the soak mode only: SOAK_JOBS (100000) no-op jobs
# per gantry backend in ten rounds, printing the resident set after the first and the last.
#
# Env knobs: N (jobs, 5000), C (concurrency, 50), OUTBOX_RATE (1000 events/s), OUTBOX_SECONDS
# (10), FAIRNESS_FLOOD (100000 jobs; 0 skips the fairness rows), SOAK_JOBS, GANTRY_BIN
# (target/release/gantry), REDIS_URL (redis://127.0.0.1:6379), BENCH_PG_URL
# (postgres://postgres@127.0.0.1:5432/gantry_bench_graphile),
# ALLOW_MISSING_GANTRY=1 to report gantry rows as skipped when the binary is
# absent. Only loopback addresses are accepted. See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

N=${N:-5000}
C=${C:-50}
OUTBOX_RATE=${OUTBOX_RATE:-1000}
OUTBOX_SECONDS=${OUTBOX_SECONDS:-10}
FAIRNESS_FLOOD=${FAIRNESS_FLOOD:-100000}
SOAK_JOBS=${SOAK_JOBS:-100000}
SOAK=0
case ${1:-} in
  --soak) SOAK=1 ;;
  "") ;;
  *) echo "usage: bench/compare.sh [--soak]" >&2; exit 2 ;;
esac
# Default: the release build of this checkout; a relative GANTRY_BIN with a
# slash is taken relative to the caller's directory, as a shell would.
GANTRY_BIN=${GANTRY_BIN:-$ROOT/target/release/gantry}
[[ $GANTRY_BIN == */* && $GANTRY_BIN != /* ]] && GANTRY_BIN=$PWD/$GANTRY_BIN
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export BENCH_PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/gantry_bench_graphile}
PGBENCH_DB=gantry_bench_pgbench

die() { echo "compare.sh: $*" >&2; exit 1; }
note() { echo "compare.sh: $*" >&2; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ $C =~ ^[1-9][0-9]*$ ]] || die "C must be a positive integer (got '$C')"
for knob in OUTBOX_RATE OUTBOX_SECONDS SOAK_JOBS; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[[ $FAIRNESS_FLOOD =~ ^[0-9]+$ ]] || die "FAIRNESS_FLOOD must be a non-negative integer (got '$FAIRNESS_FLOOD')"

# --- URLs: parse and insist on loopback -------------------------------------
# parse_url URL -> U_USER U_PASS U_HOST U_PORT
parse_url() {
  local re='^[a-zA-Z][a-zA-Z0-9+.-]*://(([^:@/]*)(:([^@/]*))?@)?(\[([^]/]+)\]|([^:/?]*))(:([0-9]+))?([/?].*)?$'
  [[ $1 =~ $re ]] || die "cannot parse URL: $1"
  U_USER=${BASH_REMATCH[2]}
  U_PASS=${BASH_REMATCH[4]}
  U_HOST=${BASH_REMATCH[6]:-${BASH_REMATCH[7]}}
  U_PORT=${BASH_REMATCH[9]}
}
require_loopback() { # NAME URL  (an empty host means a local Unix socket)
  parse_url "$2"
  local h=${U_HOST,,}
  if [[ -n $h && $h != localhost && $h != ::1 && ! $h =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]]; then
    die "$1 must point at a loopback address (127.0.0.0/8, localhost, ::1), got host '$U_HOST'"
  fi
  if [[ $2 =~ [?\&]host=([^\&]*) && ${BASH_REMATCH[1]} != /* ]]; then
    require_loopback "$1 (host= parameter)" "postgres://${BASH_REMATCH[1]}/"
  fi
}
require_loopback REDIS_URL "$REDIS_URL"
require_loopback BENCH_PG_URL "$BENCH_PG_URL"

# BENCH_PG_URL with its database replaced (query string kept).
pg_url_with_db() {
  local base=${BENCH_PG_URL%%\?*} query=
  [[ $BENCH_PG_URL == *\?* ]] && query="?${BENCH_PG_URL#*\?}"
  local authority=${base#*://}
  local scheme=${base%%://*}
  authority=${authority%%/*}
  printf '%s://%s/%s%s' "$scheme" "$authority" "$1" "$query"
}
PG_ADMIN_URL=$(pg_url_with_db postgres)
PGBENCH_URL=$(pg_url_with_db "$PGBENCH_DB")

# --- gantry binary ------------------------------------------------------------
GANTRY_PRESENT=1
if [[ $GANTRY_BIN == */* ]]; then
  [[ -x $GANTRY_BIN && ! -d $GANTRY_BIN ]] || GANTRY_PRESENT=0
else
  command -v "$GANTRY_BIN" >/dev/null 2>&1 || GANTRY_PRESENT=0
fi
if [[ $GANTRY_PRESENT == 0 && ${ALLOW_MISSING_GANTRY:-0} != 1 ]]; then
  die "gantry binary not found at '$GANTRY_BIN' (build it with 'cargo build --release', set GANTRY_BIN, or set ALLOW_MISSING_GANTRY=1)"
fi
for tool in node npm redis-benchmark redis-cli pgbench psql; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not on PATH"
done

redis_cli() {
  parse_url "$REDIS_URL"
  local args=(-h "${U_HOST:-127.0.0.1}" -p "${U_PORT:-6379}")
  [[ -n $U_USER && $U_USER != default ]] && args+=(--user "$U_USER")
  [[ -n $U_PASS ]] && args+=(-a "$U_PASS" --no-auth-warning)
  redis-cli "${args[@]}" "$@"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench.XXXXXX")
REDIS_BENCH_DB=15
cleanup() {
  rm -rf "$WORK"
  psql "$PG_ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $PGBENCH_DB" >/dev/null 2>&1 || true
  redis_cli -n "$REDIS_BENCH_DB" DEL 'key:__rand_int__' mylist >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- result bookkeeping -------------------------------------------------------
declare -A JPS P50 P99
ROWS=()
field() { # LINE KEY -> value of KEY=... in LINE ('' if absent)
  local re="(^|[[:space:]])$2=([^[:space:]]+)"
  [[ $1 =~ $re ]] && printf '%s' "${BASH_REMATCH[2]}" || true
}
# record LABEL OUTPUT: takes the last backend=... result line of OUTPUT.
record() {
  local label=$1 line
  line=$(grep -E '^backend=[^ ]+ .*jobs_per_sec=' <<<"$2" | tail -n 1 || true)
  [[ -n $line ]] || die "$label printed no result line"
  echo "$line"
  ROWS+=("$label")
  JPS[$label]=$(field "$line" jobs_per_sec)
  P50[$label]=$(field "$line" p50_ms)
  P99[$label]=$(field "$line" p99_ms)
}
skip() {
  echo "backend=$1 skipped (binary not found)"
  ROWS+=("$1")
  JPS[$1]=skipped P50[$1]=- P99[$1]=-
}

# --- gantry -------------------------------------------------------------------
gantry_bench() { # BACKEND
  local b=$1 out
  if [[ $GANTRY_PRESENT == 0 ]]; then skip "gantry-$b"; return 0; fi
  note "running gantry bench queue --backend $b --jobs $N --concurrency $C"
  case $b in
    redis)    out=$("$GANTRY_BIN" bench queue --backend redis --jobs "$N" --concurrency "$C") ;;
    postgres) out=$(DATABASE_URL="$BENCH_PG_URL" "$GANTRY_BIN" bench queue --backend postgres --jobs "$N" --concurrency "$C") ;;
    sqlite)   out=$(DATABASE_URL="sqlite://$WORK/gantry-bench.db?mode=rwc" "$GANTRY_BIN" bench queue --backend sqlite --jobs "$N" --concurrency "$C") ;;
  esac
  record "gantry-$b" "$out"
}
# The postgres run comes before the graphile-worker peer, which would otherwise be the one to
# create BENCH_PG_URL's database: create it here when missing (a fresh machine has none).
BENCH_PG_DB=${BENCH_PG_URL%%\?*}
BENCH_PG_DB=${BENCH_PG_DB##*/}
[[ $BENCH_PG_DB =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "BENCH_PG_URL names no plain database (got '$BENCH_PG_DB')"
if [[ -z $(psql "$PG_ADMIN_URL" -qXtAc "SELECT 1 FROM pg_database WHERE datname = '$BENCH_PG_DB'") ]]; then
  note "creating database $BENCH_PG_DB"
  psql "$PG_ADMIN_URL" -qXc "CREATE DATABASE $BENCH_PG_DB" >/dev/null
fi

# Runs `gantry bench <args…>` against BACKEND's database (redis: queues in REDIS_URL).
gantry_on() { # BACKEND ARGS...
  local b=$1; shift
  case $b in
    redis)    "$GANTRY_BIN" bench "$@" ;;
    postgres) DATABASE_URL="$BENCH_PG_URL" "$GANTRY_BIN" bench "$@" ;;
    sqlite)   DATABASE_URL="sqlite://$WORK/gantry-bench-$RANDOM.db?mode=rwc" "$GANTRY_BIN" bench "$@" ;;
  esac
}

if [[ $SOAK == 1 ]]; then
  [[ $GANTRY_PRESENT == 1 ]] || die "--soak needs the gantry binary"
  echo "soak: $SOAK_JOBS jobs per backend in ten rounds (C=$C); resident set after round 1 and at the end"
  fmt='%-16s %12s %14s %12s %8s\n'
  printf "$fmt" backend jobs/s "rss start KiB" "rss end KiB" growth
  for b in redis postgres sqlite; do
    note "soak: gantry bench queue --backend $b --jobs $SOAK_JOBS --soak"
    line=$(gantry_on "$b" queue --backend "$b" --jobs "$SOAK_JOBS" --concurrency "$C" --soak | tail -n 1)
    echo "$line" >&2
    printf "$fmt" "gantry-$b" "$(field "$line" jobs_per_sec)" "$(field "$line" rss_start_kib)" \
      "$(field "$line" rss_end_kib)" "$(field "$line" rss_growth_pct)%"
  done
  exit 0
fi

gantry_bench redis
gantry_bench postgres
gantry_bench sqlite

# --- outbox publish lag and fairness (gantry only) -------------------------------
declare -A OUTBOX_P50 OUTBOX_P99 FAIR_MS FAIR_LEFT
for b in postgres sqlite; do
  OUTBOX_P50[$b]=- OUTBOX_P99[$b]=n/a
  [[ $GANTRY_PRESENT == 1 ]] || continue
  note "running gantry bench outbox ($b, $OUTBOX_RATE events/s for ${OUTBOX_SECONDS}s)"
  line=$(gantry_on "$b" outbox --rate "$OUTBOX_RATE" --seconds "$OUTBOX_SECONDS" | tail -n 1)
  echo "$line"
  OUTBOX_P50[$b]=$(field "$line" lag_p50_ms) OUTBOX_P99[$b]=$(field "$line" lag_p99_ms)
done
for b in redis postgres sqlite; do
  FAIR_MS[$b]=- FAIR_LEFT[$b]=-
  [[ $GANTRY_PRESENT == 1 && $FAIRNESS_FLOOD -gt 0 ]] || continue
  note "running gantry bench fairness ($b, flood of $FAIRNESS_FLOOD)"
  line=$(gantry_on "$b" fairness --backend "$b" --flood "$FAIRNESS_FLOOD" | tail -n 1)
  echo "$line"
  FAIR_MS[$b]=$(field "$line" start_ms) FAIR_LEFT[$b]=$(field "$line" flood_still_queued)
done

# --- peers --------------------------------------------------------------------
if [[ ! -d bench/peers/node_modules ]]; then
  note "installing pinned peers (npm ci in bench/peers)"
  (cd bench/peers && npm ci --no-audit --no-fund >&2)
fi
note "running bullmq peer"
out=$(node bench/peers/bullmq.mjs --jobs "$N" --concurrency "$C")
record bullmq "$out"
note "running graphile-worker peer"
out=$(node bench/peers/graphile.mjs --jobs "$N" --concurrency "$C")
record graphile-worker "$out"

# --- backend limits -------------------------------------------------------------
note "running redis-benchmark (100000 requests each of SET, LPUSH, in db $REDIS_BENCH_DB)"
parse_url "$REDIS_URL"
rb_args=(-h "${U_HOST:-127.0.0.1}" -p "${U_PORT:-6379}" --dbnum "$REDIS_BENCH_DB")
[[ -n $U_USER && $U_USER != default ]] && rb_args+=(--user "$U_USER")
[[ -n $U_PASS ]] && rb_args+=(-a "$U_PASS")
rb_out=$(redis-benchmark "${rb_args[@]}" -q -t set,lpush -n 100000 2>&1 | tr '\r' '\n')
redis_cli -n "$REDIS_BENCH_DB" DEL 'key:__rand_int__' mylist >/dev/null
rb_rps() { sed -nE "s/^$1: ([0-9.]+) requests per second.*/\1/p" <<<"$rb_out" | tail -n 1; }
rb_p50() { sed -nE "s/^$1: .*p50=([0-9.]+) msec.*/\1/p" <<<"$rb_out" | tail -n 1; }
SET_RPS=$(rb_rps SET) LPUSH_RPS=$(rb_rps LPUSH)
[[ -n $SET_RPS && -n $LPUSH_RPS ]] || die "could not parse redis-benchmark output: $rb_out"
SET_P50=$(rb_p50 SET) LPUSH_P50=$(rb_p50 LPUSH)
echo "backend=redis-benchmark requests=100000 set_requests_per_sec=$SET_RPS lpush_requests_per_sec=$LPUSH_RPS set_p50_ms=${SET_P50:--} lpush_p50_ms=${LPUSH_P50:--}"

note "running pgbench (scratch db $PGBENCH_DB: -i -s 1, then -c 8 -j 2 -T 10 -S)"
psql "$PG_ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $PGBENCH_DB" >/dev/null
psql "$PG_ADMIN_URL" -qXc "CREATE DATABASE $PGBENCH_DB" >/dev/null
pgbench -i -s 1 -q "$PGBENCH_URL" >&2
pb_out=$(pgbench -c 8 -j 2 -T 10 -S "$PGBENCH_URL" 2>&1)
psql "$PG_ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $PGBENCH_DB" >/dev/null
PG_TPS=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$pb_out" | tail -n 1)
PG_LAT=$(sed -nE 's/^latency average = ([0-9.]+) ms.*/\1/p' <<<"$pb_out" | tail -n 1)
[[ -n $PG_TPS ]] || die "could not parse pgbench output: $pb_out"
printf 'backend=pgbench clients=8 threads=2 duration_s=10 mode=select-only tps=%.1f latency_avg_ms=%s\n' "$PG_TPS" "${PG_LAT:--}"

# --- table ----------------------------------------------------------------------
is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { # A B -> A/B with 2 decimals, or n/a
  if is_num "$1" && is_num "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
  else
    printf 'n/a'
  fi
}
BULL=${JPS[bullmq]}
fmt='%-22s %12s %9s %9s %10s\n'
echo
printf "$fmt" backend jobs/s "p50 ms" "p99 ms" "vs bullmq"
for r in "${ROWS[@]}"; do
  printf "$fmt" "$r" "${JPS[$r]}" "${P50[$r]}" "${P99[$r]}" "$(ratio "${JPS[$r]}" "$BULL")"
done
printf "$fmt" "redis SET (limit)" "$SET_RPS" "${SET_P50:--}" - -
printf "$fmt" "redis LPUSH (limit)" "$LPUSH_RPS" "${LPUSH_P50:--}" - -
printf "$fmt" "pgbench -S (limit)" "$(printf '%.1f' "$PG_TPS")" - - -
echo "(limit rows: requests/s or transactions/s of the raw backend, not jobs/s; N=$N C=$C, one run on $(nproc) cores)"
pct() { # A B -> 100*A/B with 0 decimals, or n/a
  if is_num "$1" && is_num "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'
  else
    printf 'n/a'
  fi
}
echo "gantry-redis = $(pct "${JPS[gantry-redis]}" "$LPUSH_RPS") of redis LPUSH; gantry-postgres = $(pct "${JPS[gantry-postgres]}" "$PG_TPS") of pgbench -S"
echo
fmt2='%-22s %14s %14s %16s %18s\n'
printf "$fmt2" backend "outbox p50 ms" "outbox p99 ms" "fairness start" "flood still queued"
for b in redis postgres sqlite; do
  printf "$fmt2" "gantry-$b" "${OUTBOX_P50[$b]:--}" "${OUTBOX_P99[$b]:--}" "${FAIR_MS[$b]} ms" "${FAIR_LEFT[$b]}"
done
echo "(outbox: $OUTBOX_RATE events/s for ${OUTBOX_SECONDS}s, commit -> published; Redis keeps no outbox. fairness: one job behind a flood of $FAIRNESS_FLOOD queued jobs on another queue)"
SQLITE_JPS=${JPS[gantry-sqlite]}
is_num "$SQLITE_JPS" || SQLITE_JPS=n/a
echo "ratio gantry/bullmq=$(ratio "${JPS[gantry-redis]}" "$BULL") gantry/graphile-worker=$(ratio "${JPS[gantry-postgres]}" "${JPS[graphile-worker]}") sqlite_jobs_s=$SQLITE_JPS outbox_p99_ms=${OUTBOX_P99[postgres]}"

#!/usr/bin/env bash
# The TypeScript SDK (sdk/typescript, @gantry/client): clean install from the lockfile, schema
# drift check against openapi/openapi.json, then typecheck + tests against a live embedded Gantry.
# Needs node/npm and a built gantry binary: GANTRY_BIN, default
# ${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry. Works from any directory.
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")/../sdk/typescript" && pwd)"
cd "$sdk"

export GANTRY_BIN="${GANTRY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/gantry-target}/debug/gantry}"
if [[ ! -x "$GANTRY_BIN" ]]; then
  echo "check_sdk: no gantry binary at $GANTRY_BIN (run 'cargo build' or set GANTRY_BIN)" >&2
  exit 1
fi

step() { printf '\n=== sdk: %s\n' "$*"; }

step "npm ci"
npm ci --no-audit --no-fund

step "schema drift (npm run generate)"
snapshot="$(mktemp)"
trap 'rm -f "$snapshot"' EXIT
cp src/schema.ts "$snapshot"
npm run generate
if git ls-files --error-unmatch src/schema.ts >/dev/null 2>&1; then
  drift_check() { git --no-pager diff --exit-code -- src/schema.ts; }
else
  echo "note: src/schema.ts is not tracked by git yet; comparing with the file as it was"
  drift_check() { diff -u "$snapshot" src/schema.ts; }
fi
if ! drift_check; then
  echo "sdk/typescript/src/schema.ts is stale: run 'npm run generate' in sdk/typescript and commit it" >&2
  exit 1
fi
echo "src/schema.ts matches openapi/openapi.json"

step "npm test (typecheck + tests against an embedded gantry at $GANTRY_BIN)"
npm test

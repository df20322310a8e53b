#!/usr/bin/env bash
# The API contract run: the real agentd binary against the mock model (mock-model), both on
# free loopback ports, fuzzed by schemathesis from the OpenAPI document agentd serves
# (docs/openapi.json). Fails on any 5xx, any response not in the document (status, content
# type, body schema) and any accepted invalid or refused valid request (schemathesis.toml).
#
# Environment: CONTRACT_MAX_EXAMPLES (cases per operation and phase, default 40),
# CONTRACT_SEED (default 1; `random` for a new one), CONTRACT_REPORT_DIR (kept reports).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/contract

cargo build --quiet --bin agentd -p agentd --bin mock-model -p agentd-mock
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop EXIT

# Waits until FILE has a line matching PATTERN; prints the line's last word after the match.
wait_line() {
  local file=$1 pattern=$2 what=$3
  for _ in $(seq 1 200); do
    if line=$(grep -m1 -o "$pattern[^ ]*" "$file"); then
      echo "${line#"$pattern"}"
      return 0
    fi
    sleep 0.1
  done
  echo "$what did not start:" >&2
  cat "$file" >&2
  return 1
}

"$bin/mock-model" --listen 127.0.0.1:0 >"$work/mock.out" 2>&1 &
pids+=($!)
model_url=$(wait_line "$work/mock.out" "listening on " "mock-model")

key=contract-key-$RANDOM$RANDOM$RANDOM
printf '%s' "$key" >"$work/api-key"
chmod 600 "$work/api-key"
mkdir -p "$work/data"
RUST_LOG=warn,agentd=info "$bin/agentd" --listen 127.0.0.1:0 --data-dir "$work/data" \
  --tools "$here/tools.toml" \
  --set "provider.base_url=\"$model_url\"" --set 'provider.model="mock-model"' \
  --set "auth.api_keys=[{ file = \"$work/api-key\" }]" \
  serve >"$work/agentd.out" 2>&1 &
pids+=($!)
addr=$(wait_line "$work/agentd.out" "addr=" "agentd")
echo "contract: mock model $model_url, agentd http://$addr"

seed=${CONTRACT_SEED:-1}
seed_args=()
[ "$seed" = random ] || seed_args=(--seed "$seed")
report_dir=${CONTRACT_REPORT_DIR:-$work/report}
status=0
python3 -m schemathesis.cli --config-file "$here/schemathesis.toml" run "http://$addr/api/openapi.json" \
  --header "Authorization: Bearer $key" \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-40}" "${seed_args[@]}" \
  --report junit --report-dir "$report_dir" || status=$?

if grep -q "panicked" "$work/agentd.out"; then
  echo "agentd panicked during the contract run:" >&2
  grep -A5 "panicked" "$work/agentd.out" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "== agentd log (last 80 lines)" >&2
  tail -n 80 "$work/agentd.out" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Builds corral and the example plugins, runs the demo fleet (Rust and
# Python plugins, each its own process: echo twins, and kv, api and words
# calling each other, and their HTTP routes behind the fleet's HTTP face), shows
# it working, and keeps it up until Ctrl-C. With --once it stops the fleet after the tour instead.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --bins
corral=target/release/corral
config=examples/demo.toml

"$corral" check -c "$config"
"$corral" up -c "$config" &
supervisor=$!
trap 'kill -TERM "$supervisor" 2>/dev/null || true; wait "$supervisor" 2>/dev/null || true' EXIT

# wait_for PYTHON_CONDITION: polls `corral ps --json` (as `rows`) for at most 10 s.
wait_for() {
  for _ in $(seq 100); do
    if "$corral" ps -c "$config" --json 2>/dev/null | python3 -c "
import json, sys
rows = {r['name']: r for r in json.load(sys.stdin)}
sys.exit(0 if ($1) else 1)"; then
      return 0
    fi
    sleep 0.1
  done
  echo "demo: timed out waiting for: $1" >&2
  return 1
}
wait_for "rows and all(r['state'] == 'running' for r in rows.values())"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$corral" ps -c "$config"
step "$corral" call -c "$config" echo ping
step "$corral" call -c "$config" echo-py ping
step "$corral" call -c "$config" echo config
step "$corral" call -c "$config" echo-py echo '{"from": "the demo", "n": [1, 2, 3]}'
step "$corral" call -c "$config" echo sleep '{"ms": 200}'
echo
echo "The event bus: the Rust plugin publishes, the Python plugin (subscribed to echo.>) receives."
step "$corral" call -c "$config" echo publish '{"topic": "echo.greeting", "payload": {"hello": "bus"}, "count": 3}'
for _ in $(seq 50); do
  if "$corral" call -c "$config" echo-py received | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['count'] >= 3 else 1)"; then break; fi
  sleep 0.1
done
step "$corral" call -c "$config" echo-py received
echo
echo "Plugins that work together: api (Python) stores through kv (Rust), within its calls."
step "$corral" call -c "$config" api remember '{"key": "greeting", "value": "hello from api"}'
step "$corral" call -c "$config" api recall '{"key": "greeting"}'
echo "kv admits only api: the echo plugin's call is refused."
step "$corral" call -c "$config" echo relay '{"plugin": "kv", "action": "keys"}' || true
echo "A streamed reply, one JSON line per chunk as words produces it, then plugin to plugin:"
step "$corral" call -c "$config" words words '{"text": "each word arrives as it is made"}' --stream
step "$corral" call -c "$config" api spell '{"text": "streams cross plugins too"}'
step "$corral" call -c "$config" kv --list
echo
echo "Crash the Rust plugin: its restart policy (on-failure) brings it back with a new pid."
old_pid=$("$corral" ps -c "$config" --json | python3 -c "import json,sys; print([r['pid'] for r in json.load(sys.stdin) if r['name']=='echo'][0])")
step "$corral" call -c "$config" echo crash || true
wait_for "rows['echo']['state'] == 'running' and rows['echo']['pid'] != $old_pid"
step "$corral" ps -c "$config"
step "$corral" inspect -c "$config" echo
echo
echo "The HTTP face: api's and kv's routes through the gateway, with the fleet's token."
url=$(cat examples/.corral/http.url)
token=$("$corral" http-token -c "$config")
# http METHOD PATH [BODY]: one request with the token, its status and body (python3's standard library).
http() {
  python3 - "$1" "${url}$2" "$token" "${3:-}" <<'PY'
import sys, urllib.request, urllib.error
method, url, token, body = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers={"Authorization": "Bearer " + token})
try:
    with urllib.request.urlopen(req, timeout=10) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
    sys.exit(1)
PY
}
step http PUT plugins/api/items/apple '{"colour": "green"}'
step http GET plugins/api/items/apple
step http PUT plugins/kv/kv/pear '{"ripe": true}'
step http GET plugins/kv/kv/pear
echo "The dashboard (a login URL good once, for a minute):"
step "$corral" dashboard -c "$config"

if [ "${1:-}" = "--once" ]; then
  step "$corral" down -c "$config"
  wait "$supervisor"
  trap - EXIT
  exit 0
fi
echo
echo "The fleet is up. In another terminal try: $corral ps -c $config"
echo "Press Ctrl-C to stop it."
wait "$supervisor"

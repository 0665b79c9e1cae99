#!/usr/bin/env bash
# Install the built wheel per role into fresh virtual environments OUTSIDE the checkout, and run each
# role's main command as a user would (issue: installs that work off the checkout). Called by `make test`.
#   device + server : hi-agent demo (the edge server runs in a child process)
#   server          : hi-server --check on the shipped CPU edge model
#   device          : hi-agent run against that server (local and hi)
#   device-legacy   : the same on tflite-runtime with numpy < 2 (Python <= 3.11)
#   firmware        : hi-firmware compile of the shipped ResNet-8 + the host build
#   measure         : hi-bench plan from the README
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hi-roles.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"  # nothing below may find the checkout by accident

echo "roles: building the wheel"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT" 2>&1 | grep -v -i "warn\|^ *$\|!!\|\*\*\*" || true
WHEEL="$(ls "$WORK"/dist/hi_runtime-*.whl)"

venv() {  # venv NAME EXTRAS [extra pip args...]
  local name="$1" extras="$2"; shift 2
  echo "roles: $name: pip install hi-runtime[$extras]"
  "$PY" -m venv "$WORK/$name"
  "$WORK/$name/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
  "$WORK/$name/bin/python" -m pip install -q "$WHEEL[$extras]" "$@" 2>&1 | grep -v "^WARNING: Location" || true
  "$WORK/$name/bin/python" -c "import hi_runtime" || fail "$name: hi-runtime[$extras] did not install"
}

fail() { echo "roles: FAILED: $*" >&2; exit 1; }

# --- device + server: the demo -----------------------------------------------------------------------
venv demo "device,server"
"$WORK/demo/bin/hi-agent" demo --out "$WORK/demo-run" --limit 100 --no-progress > "$WORK/demo.out" \
  || { cat "$WORK/demo.out"; fail "hi-agent demo"; }
grep -q "HI mean latency" "$WORK/demo.out" || { cat "$WORK/demo.out"; fail "the demo printed no comparison"; }
tail -n 4 "$WORK/demo.out"

# --- server --------------------------------------------------------------------------------------------
venv server "server"
MODEL="$("$WORK/server/bin/python" -c 'from hi_runtime.artifacts import shipped; print(shipped("server_cpu.onnx"))')"
case "$MODEL" in "$ROOT"*) fail "the server found the model in the checkout ($MODEL), not in its install";; esac
"$WORK/server/bin/hi-server" --check --model "cifar10=$MODEL" > "$WORK/check.json" || fail "hi-server --check"
grep -q '"ok": true' "$WORK/check.json" || fail "hi-server --check did not say ok"
"$WORK/server/bin/hi-server" --model "cifar10=$MODEL" --port 0 --log-level INFO > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do grep -q server_started "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
PORT="$("$WORK/server/bin/python" -c 'import json,sys; print(next(json.loads(l)["port"] for l in open(sys.argv[1]) if "server_started" in l))' "$WORK/server.log")"
echo "roles: server listening on 127.0.0.1:$PORT"

# --- device --------------------------------------------------------------------------------------------
venv device "device"
"$WORK/device/bin/hi-agent" run --strategy local --input demo --limit 100 --no-progress | tail -n 3 \
  || fail "hi-agent run local"
"$WORK/device/bin/hi-agent" run --strategy hi --server "127.0.0.1:$PORT" --input demo --limit 100 --no-progress \
  --summary-json "$WORK/hi.json" | tail -n 3 || fail "hi-agent run hi"
"$WORK/device/bin/python" - "$WORK/hi.json" <<'PYEOF' || fail "hi-agent run hi: degraded samples or nothing offloaded"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["degraded"] == 0 and 0 < s["offload_ratio"] < 1, s
PYEOF

# --- device-legacy: tflite-runtime with numpy < 2 ---------------------------------------------------------
if "$PY" -c 'import sys; sys.exit(0 if sys.version_info < (3, 12) else 1)'; then
  venv legacy "device-legacy"
  "$WORK/legacy/bin/python" -c 'import numpy; assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__'
  "$WORK/legacy/bin/hi-agent" run --strategy hi --backend tflite-runtime --server "127.0.0.1:$PORT" --input demo \
    --limit 100 --no-progress | tail -n 3 || fail "hi-agent run on tflite-runtime"
fi

# --- firmware ------------------------------------------------------------------------------------------
if command -v gcc >/dev/null; then
  venv firmware "firmware"
  RESNET8="$("$WORK/firmware/bin/python" -c 'from hi_runtime.artifacts import shipped; print(shipped("resnet8_int8.tflite"))')"
  "$WORK/firmware/bin/hi-firmware" compile "$RESNET8" --out "$WORK/fw/resnet8" || fail "hi-firmware compile"
  "$WORK/firmware/bin/hi-firmware" build --board host --model "$RESNET8" > "$WORK/fw-build.log" 2>&1 \
    || { tail -n 20 "$WORK/fw-build.log"; fail "hi-firmware build --board host"; }
  case "$(cat "$WORK/fw-build.log")" in *"$ROOT"*) fail "the firmware build used the checkout's sources";; esac
  tail -n 2 "$WORK/fw-build.log"
fi

# --- measure -------------------------------------------------------------------------------------------
venv measure "measure"
"$WORK/measure/bin/hi-bench" plan --device rpi4 --qos accuracy=0.9 | tail -n 5 || fail "hi-bench plan"

echo "roles: every role's main command ran from its own install"

#!/usr/bin/env bash
# facade_pair.sh LOAD [LOAD...] — examples/echo_server (tcp::Conn) against
# examples/echo_server --facade (sockets::TcpSocket), same netbench client, interleaved
# A B A B. Prints `LOAD conn=X facade=Y ratio=Y/X` (medians over REPS pairs).
# Loads: pp1 pp32 bulk. Env: SECS (3) REPS (3). Needs ../shared/tools/netbench.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NB=${NB:-$ROOT/../shared/tools/netbench}
SECS=${SECS:-3}
REPS=${REPS:-3}
NBT=${NETBENCH_TARGET_DIR:-/tmp/netbench-target}
CARGO_TARGET_DIR=$NBT cargo build --release --quiet --manifest-path "$NB/Cargo.toml" >&2
(cd "$ROOT" && cargo build --release --quiet --example echo_server >&2)
BIN=$ROOT/target/release/examples/echo_server
CLIENT=$NBT/release/netbench
TMP=$(mktemp -d /tmp/facadepair.XXXXXX)
SPID=""
trap '[[ -n $SPID ]] && kill $SPID 2>/dev/null; rm -rf "$TMP"' EXIT

run() { # LOAD_ARGS... ; server args in SARGS
  "$BIN" "${SARGS[@]}" >"$TMP/out" 2>/dev/null &
  SPID=$!
  for _ in $(seq 100); do grep -q '^listening on ' "$TMP/out" 2>/dev/null && break; sleep 0.05; done
  local addr; addr=$(head -n1 "$TMP/out" | cut -d' ' -f3)
  "$CLIENT" "$@" --addr "$addr" --secs "$SECS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("mb_per_s") or r.get("ops_per_s"))'
  kill $SPID; wait $SPID 2>/dev/null || true; SPID=""
}

for load in "$@"; do
  case $load in
    pp1) la=(pingpong --conns 1 --size 64) ;;
    pp32) la=(pingpong --conns 32 --size 64) ;;
    bulk) la=(bulk --size 1048576) ;;
    *) echo "unknown load $load" >&2; exit 2 ;;
  esac
  a=(); b=()
  for _ in $(seq "$REPS"); do
    SARGS=(); a+=("$(run "${la[@]}")")
    SARGS=(--facade); b+=("$(run "${la[@]}")")
  done
  python3 - "$load" "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
load, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"{load} conn={ma:.1f} facade={mb:.1f} ratio={mb/ma:.3f}")
PY
done

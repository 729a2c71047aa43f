#!/usr/bin/env bash
# robustness.sh [--short] — the robustness soak set (examples/soak.rs), over loopback.
#
# Builds the example in release mode and runs each row in its own process (the EMFILE row
# lowers the process's descriptor limit; the RST row puts SIGPIPE back to its default
# action), each under `timeout`. Prints a markdown table; exits 1 if any row failed.
#   full:    100,000 cycles, 1 GiB each way, 10,000 close races, 1,000 RSTs,
#            1,000 slow clients, 3 s EMFILE window: under a minute on 2 cores; 6 rows x
#            120 s timeout bound it at 12 minutes plus the build.
#   --short: about 1/100 of the counts, seconds (CI).
# Env: ROWS (default "cycles bulk closerace rst slow emfile"), ROW_TIMEOUT (s, 120 full /
#      60 short).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHORT=()
TMO=${ROW_TIMEOUT:-120}
if [[ ${1:-} == --short ]]; then
  SHORT=(--short)
  TMO=${ROW_TIMEOUT:-60}
fi
ROWS=${ROWS:-cycles bulk closerace rst slow emfile}
(cd "$ROOT" && cargo build --release --quiet --example soak) || exit 1
BIN=$ROOT/target/release/examples/soak

echo "| row | parameters | result | figures | pass |"
echo "|---|---|---|---|---|"
status=0
start=$(date +%s)
for row in $ROWS; do
  out=$(timeout --kill-after=5 "$TMO" "$BIN" "$row" "${SHORT[@]}")
  rc=$?
  if [[ -n $out ]]; then echo "$out"; fi
  if [[ $rc -ne 0 ]]; then
    status=1
    if [[ -z $out ]]; then
      case $rc in
        124|137) why="timed out after ${TMO}s" ;;
        141) why="killed by SIGPIPE" ;;
        *) why="exit status $rc" ;;
      esac
      [[ $rc -gt 128 && $rc -ne 137 && $rc -ne 141 ]] && why="killed by signal $((rc - 128))"
      echo "| $row | | $why | | **FAIL** |"
    fi
  fi
done
echo
echo "$(nproc) cores, $(uname -r), ulimit -n $(ulimit -n), load average $(cut -d" " -f1-3 /proc/loadavg); total $(( $(date +%s) - start )) s"
exit $status

#!/usr/bin/env bash
# memcheck.sh [TEST_BINARY_NAME...] — runs test binaries under valgrind memcheck and
# prints one markdown row per binary: tests passed/failed, memcheck errors, definite leaks.
#
# Default binaries: lib tcp close_race deadline unix sockets tls listen dial resolve
# sockets_addr tls_interop alloc soak_short (TLS tests are enabled
# with RESEAU_RUN_TLS_TESTS=1). `lib` is the crate's unit tests.
# Env: THREADS (--test-threads, 2) TMO (timeout per binary, s, 2400)
#      OUT (log directory, /tmp/reseau-memcheck).
# A test failing under valgrind is not a memcheck error: valgrind slows code 20-50x and
# runs one thread at a time, so timing assertions can fail. The memcheck verdict is the
# ERROR SUMMARY and the "definitely lost" line; the script keeps both apart (valgrind's
# own exit code for errors is 99, the test harness's is 101).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THREADS=${THREADS:-2}
TMO=${TMO:-2400}
OUT=${OUT:-/tmp/reseau-memcheck}
mkdir -p "$OUT"
BINS=("$@")
[[ ${#BINS[@]} -eq 0 ]] && BINS=(lib tcp close_race deadline unix sockets tls listen dial resolve sockets_addr tls_interop alloc soak_short)
export RESEAU_RUN_TLS_TESTS=1

# One suppression, for glibc rather than this crate: a thread that called getaddrinfo and
# is still alive at exit (an idle resolver-pool worker, kept 30 s) holds its resolv.conf
# copy only from thread-local state that valgrind does not scan, so those 96 bytes show
# as "definitely lost". A plain std program that resolves "localhost" in a thread that
# outlives main reports the same block.
SUPP=$OUT/glibc-resolv.supp
cat >"$SUPP" <<'SUPP'
{
   glibc-resolv-conf-of-live-thread
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:__libc_alloc_buffer_allocate
   ...
   fun:__resolv_conf_allocate
   fun:__resolv_conf_load
}
SUPP

# Executable path per test target, from cargo's JSON messages.
declare -A EXE
while IFS=$'\t' read -r name kind exe; do
  [[ $kind == lib ]] && name=lib
  EXE[$name]=$exe
done < <(cd "$ROOT" && cargo test --no-run --lib --tests --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["target"]["kind"][0], m["executable"], sep="\t")
')

echo "| binary | tests | memcheck errors | definitely lost | suppressed (glibc) | wall |"
echo "|---|---|---|---|---|---|"
status=0
for b in "${BINS[@]}"; do
  exe=${EXE[$b]:-}
  if [[ -z $exe ]]; then echo "| $b | no such test binary | | | | |"; status=1; continue; fi
  log=$OUT/$b.valgrind.log
  start=$(date +%s)
  (cd "$ROOT" && timeout "$TMO" valgrind --tool=memcheck --leak-check=full \
      --errors-for-leak-kinds=definite --error-exitcode=99 --fair-sched=yes --max-threads=2000 \
      --suppressions="$SUPP" \
      --log-file="$log" "$exe" --test-threads="$THREADS" >"$OUT/$b.stdout" 2>&1)
  rc=$?
  wall=$(( $(date +%s) - start ))
  errs=$(grep -oP 'ERROR SUMMARY: \K[0-9,]+' "$log" | tail -1 | tr -d ,)
  lost=$(grep -oP 'definitely lost: \K[0-9,]+ bytes in [0-9,]+ blocks' "$log" | tail -1)
  [[ -z $lost ]] && lost="0 bytes (no leak summary)" 
  supp=$(grep -oP 'ERROR SUMMARY: .*suppressed: \K[0-9,]+' "$log" | tail -1)
  res=$(grep -oP '^test result: \K.*' "$OUT/$b.stdout" | tail -1 | sed 's/; finished in.*//')
  [[ $rc -eq 124 ]] && res="TIMEOUT after ${TMO}s ($res)"
  [[ -z $res ]] && res="no result (rc $rc)"
  echo "| $b | $res | ${errs:-?} | $lost | ${supp:-0} | ${wall}s |"
  if [[ ${errs:-1} != 0 ]]; then status=1; fi
  if [[ $lost != 0\ bytes* ]]; then status=1; fi
done
echo
echo "logs: $OUT/<binary>.valgrind.log, test output: $OUT/<binary>.stdout"
exit $status

#!/bin/sh
# bench/callgrind.sh: user-space instructions per lookup and per entry of a
# walk (callgrind; load-independent), each mode of bench/callgrind_lookup.lua
# run with N and with 0 calls (walks: 5 N and 0 entries).
#   sh bench/callgrind.sh [lua] [N]
LUA=${1:-lua5.4}
N=${2:-20000}
cd "$(dirname "$0")/.." || exit 1
irs() { # mode n -> total Ir; a run that fails (cbench.so not built...) stops the script
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --error-exitcode=0 \
        "$LUA" bench/callgrind_lookup.lua "$1" "$2" 2>&1) ||
    { echo "callgrind.sh: $LUA bench/callgrind_lookup.lua $1 $2 failed:" >&2; echo "$out" >&2; exit 1; }
  echo "$out" | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for mode in plain plain_fn floor method_floor table sum into sum_fn into_fn floor_sum floor_into; do
  a=$(irs $mode "$N") && b=$(irs $mode 0) || exit 1
  echo "callgrind: $mode $(( (a - b) / N )) instructions per lookup ($LUA)"
done
# walks: N * 5 entries, per entry
W=$((N * 5))
for mode in pairs pairs_floor dump dump_floor; do
  a=$(irs $mode "$W") && b=$(irs $mode 0) || exit 1
  echo "callgrind: $mode $(( (a - b) / W )) instructions per entry ($LUA)"
done

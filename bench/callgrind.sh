#!/bin/sh
# bench/callgrind.sh: user-space instructions per lookup (callgrind; load-independent),
# each mode of bench/callgrind_lookup.lua run with N and with 0 calls.
#   sh bench/callgrind.sh [lua] [N]
LUA=${1:-lua5.4}
N=${2:-20000}
cd "$(dirname "$0")/.." || exit 1
irs() { # mode n -> total Ir
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$LUA" bench/callgrind_lookup.lua "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for mode in plain floor table sum into floor_sum floor_into; do
  a=$(irs $mode "$N"); b=$(irs $mode 0)
  echo "callgrind: $mode $(( (a - b) / N )) instructions per lookup ($LUA)"
done

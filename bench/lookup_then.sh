#!/bin/sh
# bench/lookup_then.sh: m:lookup of this tree against m:lookup of an older
# commit, in the same process and the same rounds as bench/lookup.lua's other
# sides (its "then" side). The default commit (87db1ae) is the last one
# before issue 16's work, the code whose m:lookup the issue measured; its target for
# m:lookup is "no worse than today", which lua/then answers.
#   sh bench/lookup_then.sh [lua] [commit] [lookups_per_round [rounds]]
# Builds the commit in a temporary git worktree (removed on exit); needs
# what make needs, and the history (a clone, not an export).
LUA=${1:-lua5.4}
THEN=${2:-87db1ae4dc18be6664197c39556310586c681b72}
cd "$(dirname "$0")/.." || exit 1
if ! git rev-parse -q --verify "$THEN^{commit}" >/dev/null 2>&1; then
  echo "bench/lookup_then.sh: skipped: commit $THEN is not in this checkout (an export, or a shallow clone)"
  exit 0
fi
make -s LUA="$LUA" all build/"$LUA"/cbench.so >/dev/null || exit 1
wt=$(mktemp -d /tmp/luaebpf-thenXXXXXX) || exit 1
trap 'git worktree remove --force "$wt" 2>/dev/null; rm -rf "$wt"' EXIT
trap 'exit 130' INT TERM HUP # dash runs the EXIT trap only on a normal exit
git worktree add -q --detach "$wt" "$THEN" || exit 1
# only the core: its make builds build/$LUA/luaebpf/core.so in the worktree
make -s -C "$wt" LUA="$LUA" build/"$LUA"/luaebpf/core.so >/dev/null || exit 1
LUAEBPF_THEN_SO="$wt/build/$LUA/luaebpf/core.so" "$LUA" bench/lookup.lua "${3:-1000000}" "${4:-11}"
st=$?
# instructions per call, both builds (user space; see bench/callgrind.sh)
for mode in plain then; do
  irs() { LUAEBPF_THEN_SO="$wt/build/$LUA/luaebpf/core.so" valgrind --tool=callgrind \
            --callgrind-out-file=/dev/null "$LUA" bench/callgrind_lookup.lua "$mode" "$1" 2>&1 |
          sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'; }
  a=$(irs 20000) && b=$(irs 0) && [ -n "$a" ] && [ -n "$b" ] || exit 1
  echo "callgrind: $mode $(( (a - b) / 20000 )) instructions per lookup ($LUA)"
done
exit $st

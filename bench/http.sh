#!/bin/sh
# bench/http.sh: a load check of the OpenResty example (not a timed test).
# Pins a 10,000-entry hash map (u32 -> u64) in a temporary bpffs, starts
# examples/openresty/nginx.conf (Debian's nginx + lua module, LuaJIT build,
# workers as nobody) on a free port of 127.0.0.1, and drives
# GET /maps/big with wrk for DURATION seconds (default 10). Prints requests/s
# and the p99 latency; fails when any request failed (non-2xx responses,
# socket errors) or a response was not the whole map. Leaves nothing running,
# mounted or pinned. Needs root.  Knobs: DURATION, THREADS, CONNECTIONS.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
. "$ROOT/examples/openresty/lib.sh"
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-16}
ENTRIES=10000

for tool in nginx wrk curl bpftool luajit; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench/http: $tool is missing (make deps)"; exit 1; }
done
make --no-print-directory LUA=luajit all >/dev/null || exit 1

FS=$(mktemp -d /tmp/luaebpfXXXXXX)
STATE=$(mktemp -d /tmp/luaebpf-nginx-XXXXXX)
NGX_PID=
cleanup() {
  ngx_stop
  if mountpoint -q "$FS"; then umount "$FS"; fi
  rmdir "$FS" 2>/dev/null
  rm -rf "$STATE"
}
trap 'cleanup; exit 130' INT TERM
fail() { echo "bench/http: $1"; cleanup; exit 1; }

mount -t bpf bpf "$FS" || fail "cannot mount a bpffs on $FS"
luajit examples/openresty/fixture.lua "$FS" "$ENTRIES" || fail "cannot fill the maps"
PORT=$(ngx_free_port)
ngx_start "$STATE" "$PORT" "$FS/big,key=u32,value=u64" || {
  sed 's/^/# /' "$STATE/error.log"
  fail "nginx did not start"
}
URL="http://127.0.0.1:$PORT/maps/big"

# one response, checked whole, before the load
count=$(curl -s "$URL" | sed -n 's/^"count":\([0-9]*\)}$/\1/p')
[ "$count" = "$ENTRIES" ] || fail "GET /maps/big has count '$count', expected $ENTRIES"
size=$(curl -s -o /dev/null -w '%{size_download}' "$URL")

echo "bench/http: GET /maps/big ($ENTRIES entries, $size bytes of JSON), nginx $(nginx -v 2>&1 | sed 's/.*\///'),"
echo "  2 workers as nobody, read_batch slices of 1000 with ngx.sleep(0.001) between;"
echo "  wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency on loopback"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$URL" >"$STATE/wrk.out" 2>&1
rc=$?
sed 's/^/  | /' "$STATE/wrk.out"

rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$STATE/wrk.out")
p99=$(sed -n 's/^[[:space:]]*99%[[:space:]]*\([0-9.]*[a-z]*\).*/\1/p' "$STATE/wrk.out")
total=$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in.*/\1/p' "$STATE/wrk.out")
non2xx=$(sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*\([0-9]*\).*/\1/p' "$STATE/wrk.out")
sockerr=$(sed -n 's/^[[:space:]]*Socket errors:\(.*\)/\1/p' "$STATE/wrk.out")
errors=$(grep -c '\[error\]\|\[alert\]\|\[crit\]' "$STATE/error.log")
bytes_ok=$(curl -s -o /dev/null -w '%{size_download}' "$URL")

ngx_stop || echo "bench/http: nginx processes were left and killed"
cleanup
trap - INT TERM

echo "bench/http: ${rps:-?} requests/s, p99 ${p99:-?}, ${total:-?} requests," \
  "${non2xx:-0} non-2xx, socket errors: ${sockerr:-none}, error log: $errors errors"
[ "$rc" -eq 0 ] || { echo "bench/http: wrk failed ($rc)"; exit 1; }
[ -n "$rps" ] && [ -n "$total" ] && [ "$total" -gt 0 ] || { echo "bench/http: no requests completed"; exit 1; }
[ -z "$non2xx" ] && [ -z "$sockerr" ] && [ "$errors" -eq 0 ] || { echo "bench/http: FAILED: some requests failed"; exit 1; }
[ "$bytes_ok" = "$size" ] || { echo "bench/http: FAILED: the response changed size under load"; exit 1; }
echo "bench/http: no request failed"

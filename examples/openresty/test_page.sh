#!/bin/sh
# examples/openresty/test_page.sh: the live page (GET /) in a real browser.
# Installs what is missing (make deps-page: headless Chromium and the
# example's packages), builds the LuaJIT module, mounts a bpffs in a
# temporary directory and fills it (fixture.lua, page_fixture.lua), starts
# examples/openresty/nginx.conf on a free port of 127.0.0.1 (workers as
# nobody; execsnoop streamed), then check_page.py drives headless Chromium
# over the DevTools protocol: the page's table and histogram against bpftool's
# dumps, live updates after the maps change, the event tail and its pause,
# errors shown (403, 404, the server gone), no console error; it saves a
# screenshot in a temporary directory it prints (a CI artifact), and copies it
# to $PAGE_SCREENSHOT when set (README's doc/live-page.png is made so).
# Then stops nginx and unmounts: nothing is left running, mounted or pinned.
# Prints one line per check and ends with "N passed, N failed". Needs root.
# examples/openresty/test.sh runs it and counts its checks.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
. "$ROOT/examples/openresty/lib.sh"

passed=0
failed=0
ok() { echo "ok - page: $1"; passed=$((passed + 1)); }
notok() { echo "not ok - page: $1"; failed=$((failed + 1)); }
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if make --no-print-directory LUA=luajit deps-page all >/tmp/luaebpf-page-build.log 2>&1; then
  ok "make LUA=luajit deps-page all (headless Chromium installed)"
  rm -f /tmp/luaebpf-page-build.log
else
  tail -20 /tmp/luaebpf-page-build.log
  notok "make LUA=luajit deps-page all (log: /tmp/luaebpf-page-build.log)"
  summary
fi
for tool in nginx curl bpftool luajit chromium /usr/bin/python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then notok "$tool is missing (make deps-page)"; summary; fi
done

FS=$(mktemp -d /tmp/luaebpfXXXXXX)
STATE=$(mktemp -d /tmp/luaebpf-page-XXXXXX)
SHOTS=$(mktemp -d /tmp/luaebpf-page-shot-XXXXXX)
NGX_PID=
cleanup() {
  ngx_stop
  if mountpoint -q "$FS"; then umount "$FS"; fi
  rmdir "$FS" 2>/dev/null
  rm -rf "$STATE"
}
trap 'cleanup; exit 130' INT TERM

if mount -t bpf bpf "$FS" && luajit examples/openresty/fixture.lua "$FS" 10 \
   && luajit examples/openresty/page_fixture.lua "$FS" create; then
  ok "maps pinned and filled in a bpffs at $FS"
else
  notok "could not mount a bpffs or fill its maps"
  cleanup
  summary
fi

PORT=$(ngx_free_port)
EVENTS="$ROOT/bpf/execsnoop.bpf.o,record=struct+event"
# lat_hist and proc_lat are histograms by their layout, lat because the list says so
MAPS="$FS/counts,key=u32,value=u64 $FS/shapes $FS/percpu_inner $FS/lat_hist,key=u32,value=u64
 $FS/proc_lat $FS/lat,hist=log2"
if ngx_start "$STATE" "$PORT" "$MAPS" "$EVENTS"; then
  ok "nginx started on 127.0.0.1:$PORT"
else
  sed 's/^/# /' "$STATE/error.log"
  notok "nginx did not start"
  cleanup
  summary
fi
workers=$(pgrep -P "$NGX_PID" -u nobody | wc -l)
if [ "$workers" -ge 1 ]; then ok "$workers workers run as nobody"; else notok "no worker runs as nobody"; fi

/usr/bin/python3 examples/openresty/check_page.py "$STATE" "$FS" "$PORT" "$NGX_PID" "$SHOTS" \
  >"$STATE/check_page.out" 2>&1
sed 's/^\(ok\|not ok\) - /\1 - page: /' "$STATE/check_page.out"
passed=$((passed + $(grep -c '^ok ' "$STATE/check_page.out")))
failed=$((failed + $(grep -c '^not ok ' "$STATE/check_page.out")))
if ! grep -q '^ok \|^not ok ' "$STATE/check_page.out"; then notok "check_page.py ran no check"; fi
if [ -s "$SHOTS/live-page.png" ]; then
  echo "# screenshot: $SHOTS/live-page.png"
  if [ -n "${PAGE_SCREENSHOT:-}" ]; then cp "$SHOTS/live-page.png" "$PAGE_SCREENSHOT"; fi
fi

pid=$NGX_PID
if ngx_stop && ! kill -0 "$pid" 2>/dev/null; then
  ok "nginx stopped, no process left"
else
  notok "nginx processes are left"
fi
umount "$FS" && rmdir "$FS"
rm -rf "$STATE"
if mountpoint -q "$FS" 2>/dev/null || [ -e "$FS" ] || [ -e "$STATE" ]; then
  notok "$FS or $STATE is left"
else
  ok "bpffs unmounted, temporary prefix removed"
fi
summary

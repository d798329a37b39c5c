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

CHECK_PREFIX="page: "
check_build deps-page page
check_tools nginx curl bpftool luajit chromium /usr/bin/python3

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
check_workers

/usr/bin/python3 examples/openresty/check_page.py "$STATE" "$FS" "$PORT" "$NGX_PID" "$SHOTS" \
  >"$STATE/check_page.out" 2>&1
sed 's/^\(ok\|not ok\) - /\1 - page: /' "$STATE/check_page.out"
tally_from "$STATE/check_page.out" check_page.py
if [ -s "$SHOTS/live-page.png" ]; then
  echo "# screenshot: $SHOTS/live-page.png"
  if [ -n "${PAGE_SCREENSHOT:-}" ]; then cp "$SHOTS/live-page.png" "$PAGE_SCREENSHOT"; fi
fi

check_teardown "$FS" "$STATE"
summary

#!/bin/sh
# examples/openresty/test.sh: the OpenResty example, end to end. Installs what
# is missing (make deps-openresty: nginx, its lua module, curl, ...), builds the
# LuaJIT module (make LUA=luajit), mounts a bpffs in a temporary directory,
# pins and fills maps through luaebpf (fixture.lua), starts
# examples/openresty/nginx.conf in Debian's nginx on a free port of 127.0.0.1
# with a temporary prefix (workers as nobody), fetches every endpoint with
# curl, checks the bodies against bpftool's dumps and /metrics with
# prometheus_client's parser (check.py), checks 404/403/500, then stops nginx
# and unmounts: nothing is left running, mounted or pinned.
# Prints one line per check and ends with "N passed, N failed". Needs root.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
. "$ROOT/examples/openresty/lib.sh"

passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
notok() { echo "not ok - $1"; failed=$((failed + 1)); }
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if make --no-print-directory LUA=luajit deps-openresty all >/tmp/luaebpf-openresty-build.log 2>&1; then
  ok "make LUA=luajit builds build/luajit/luaebpf/core.so"
  rm -f /tmp/luaebpf-openresty-build.log
else
  tail -20 /tmp/luaebpf-openresty-build.log
  notok "make LUA=luajit (log: /tmp/luaebpf-openresty-build.log)"
  summary
fi
for tool in nginx curl bpftool luajit /usr/bin/python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then notok "$tool is missing (make deps)"; summary; fi
done
if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  notok "libnginx-mod-http-lua is missing (make deps)"
  summary
fi

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

if mount -t bpf bpf "$FS" && luajit examples/openresty/fixture.lua "$FS" 2500; then
  ok "maps pinned and filled through luaebpf in a bpffs at $FS"
else
  notok "could not mount a bpffs or fill its maps"
  cleanup
  summary
fi

PORT=$(ngx_free_port)
# maps without BTF get their codecs here; shapes and percpu_inner carry BTF
MAPS="$FS/counts,key=u32,value=u64 $FS/shapes $FS/percpu_inner $FS/big,key=u32,value=u64 $FS/queue"
if ngx_start "$STATE" "$PORT" "$MAPS"; then
  ok "nginx started on 127.0.0.1:$PORT, prefix $STATE"
else
  sed 's/^/# /' "$STATE/error.log"
  notok "nginx did not start"
  cleanup
  summary
fi
# the workers run as nobody
workers=$(pgrep -P "$NGX_PID" -u nobody | wc -l)
if [ "$workers" -ge 1 ]; then ok "$workers workers run as nobody"; else notok "no worker runs as nobody"; fi

# fetch NAME PATH: STATE/NAME.code, .head, .body
fetch() {
  curl -s -D "$STATE/$1.head" -o "$STATE/$1.body" -w '%{http_code}' \
    "http://127.0.0.1:$PORT$2" >"$STATE/$1.code"
}
counts_id=$(bpftool -j map show pinned "$FS/counts" | sed 's/^{"id":\([0-9]*\).*/\1/')
hidden_id=$(bpftool -j map show pinned "$FS/private/hidden" | sed 's/^{"id":\([0-9]*\).*/\1/')
fetch maps /maps
fetch counts /maps/counts
fetch counts_id "/maps/$counts_id"
fetch shapes /maps/shapes
fetch percpu_inner /maps/percpu_inner
fetch big /maps/big
fetch big_name /maps/lx_big
fetch metrics /metrics
fetch nosuch /maps/no_such_map_lx
fetch noid /maps/4294967295
fetch hidden_id "/maps/$hidden_id"
fetch hidden_name /maps/lx_hidden
fetch queue /maps/queue

/usr/bin/python3 examples/openresty/check.py "$STATE" "$FS" >"$STATE/check.out" 2>&1
cat "$STATE/check.out"
passed=$((passed + $(grep -c '^ok ' "$STATE/check.out")))
failed=$((failed + $(grep -c '^not ok ' "$STATE/check.out")))
if ! grep -q '^ok \|^not ok ' "$STATE/check.out"; then notok "check.py ran no check"; fi

# the error log: the 500 is logged; nothing worse, no ngx.sleep(0) warnings
if grep -q '\[\(alert\|crit\|emerg\)\]' "$STATE/error.log" || grep -q 'sleep(0)' "$STATE/error.log"; then
  grep '\[\(alert\|crit\|emerg\)\]\|sleep(0)' "$STATE/error.log" | head -5 | sed 's/^/# /'
  notok "the error log has alerts or ngx.sleep(0) warnings"
else
  ok "the error log has no alerts and no ngx.sleep(0) warnings"
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
  ok "bpffs unmounted (its pinned maps freed), temporary prefix removed"
fi
summary

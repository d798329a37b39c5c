# examples/openresty/lib.sh: sourced by examples/openresty/test.sh,
# test_page.sh and bench/http.sh. Starts and stops
# examples/openresty/nginx.conf on 127.0.0.1 in a temporary prefix: the
# config is rendered there with the checkout's paths, the port, and every file
# nginx writes (pid, temp dirs) moved into it. For the two tests, the tally of
# checks and the steps both take (build, tools, workers, teardown).
# Needs ROOT (the checkout) set by the caller.

# a free TCP port on 127.0.0.1
ngx_free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ngx_start STATE PORT MAPS [EVENTS [KEEP]]: nginx in the foreground, in the background of
# this shell (NGX_PID), its stderr (the error log) in STATE/error.log; waits
# until it answers. Returns non-zero when it does not start.
ngx_start() {
  ngx_state=$1 ngx_port=$2
  sed -e "s#\\\$prefix/#$ROOT/#g" \
      -e "s#127\\.0\\.0\\.1:8080#127.0.0.1:$ngx_port#" \
      -e "s#/tmp/luaebpf-nginx#$ngx_state/nginx#g" \
      "$ROOT/examples/openresty/nginx.conf" >"$ngx_state/nginx.conf"
  LUAEBPF_MAPS=$3 LUAEBPF_EVENTS=${4:-} LUAEBPF_EVENTS_KEEP=${5:-} nginx -p "$ngx_state/" -c "$ngx_state/nginx.conf" -e stderr \
    </dev/null >>"$ngx_state/error.log" 2>&1 &
  NGX_PID=$!
  i=0
  while [ $i -lt 100 ]; do
    if ! kill -0 "$NGX_PID" 2>/dev/null; then
      wait "$NGX_PID" 2>/dev/null
      NGX_PID=
      return 1
    fi
    curl -s -o /dev/null "http://127.0.0.1:$ngx_port/metrics" && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

# stops the nginx ngx_start started (graceful, then forced after 5 s); true
# when no process of it is left
ngx_stop() {
  [ -n "${NGX_PID:-}" ] || return 0
  kill -QUIT "$NGX_PID" 2>/dev/null
  i=0
  while kill -0 "$NGX_PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$NGX_PID" 2>/dev/null; then
    pkill -KILL -P "$NGX_PID" 2>/dev/null # its workers, by parent pid
    kill -KILL "$NGX_PID" 2>/dev/null
  fi
  wait "$NGX_PID" 2>/dev/null
  left=$(pgrep -P "$NGX_PID" 2>/dev/null)
  NGX_PID=
  [ -z "$left" ]
}

# ---------------------------------------------------------------- checks
# one line per check, "ok - ..." or "not ok - ..." (CHECK_PREFIX before the
# text), then "N passed, N failed" and the exit status
passed=0
failed=0
ok() { echo "ok - ${CHECK_PREFIX:-}$1"; passed=$((passed + 1)); }
notok() { echo "not ok - ${CHECK_PREFIX:-}$1"; failed=$((failed + 1)); }
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

# tally_from FILE WHAT: the ok / not ok lines of FILE (what WHAT printed)
# counted in; a checker that printed no check is a failed check
tally_from() {
  passed=$((passed + $(grep -c '^ok ' "$1")))
  failed=$((failed + $(grep -c '^not ok ' "$1")))
  if ! grep -q '^ok \|^not ok ' "$1"; then notok "$2 ran no check"; fi
}

# check_build DEPS NAME: make LUA=luajit DEPS all, its log kept (and its tail
# shown) only when it fails, which ends the test
check_build() {
  log=/tmp/luaebpf-$2-build.log
  if make --no-print-directory LUA=luajit "$1" all >"$log" 2>&1; then
    ok "make LUA=luajit $1 all builds build/luajit/luaebpf/core.so"
    rm -f "$log"
  else
    tail -20 "$log"
    notok "make LUA=luajit $1 all (log: $log)"
    summary
  fi
}

# check_tools TOOL...: each is on PATH, or the test ends naming the first missing
check_tools() {
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then notok "$tool is missing (make deps)"; summary; fi
  done
}

# check_workers: the workers of the nginx ngx_start started run as nobody
check_workers() {
  workers=$(pgrep -P "$NGX_PID" -u nobody | wc -l)
  if [ "$workers" -ge 1 ]; then ok "$workers workers run as nobody"; else notok "no worker runs as nobody"; fi
}

# check_teardown FS STATE: nginx stopped with no process left, the bpffs at
# FS unmounted (its pinned maps freed) and removed, STATE removed
check_teardown() {
  pid=$NGX_PID
  if ngx_stop && ! kill -0 "$pid" 2>/dev/null; then
    ok "nginx stopped, no process left"
  else
    notok "nginx processes are left"
  fi
  umount "$1" && rmdir "$1"
  rm -rf "$2"
  if mountpoint -q "$1" 2>/dev/null || [ -e "$1" ] || [ -e "$2" ]; then
    notok "$1 or $2 is left"
  else
    ok "bpffs unmounted (its pinned maps freed), temporary prefix removed"
  fi
}

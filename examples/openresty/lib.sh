# examples/openresty/lib.sh: sourced by examples/openresty/test.sh and
# bench/http.sh. Starts and stops examples/openresty/nginx.conf on 127.0.0.1
# in a temporary prefix: the config is rendered there with the checkout's
# paths, the port, and every file nginx writes (pid, temp dirs) moved into it.
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

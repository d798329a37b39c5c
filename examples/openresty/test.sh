#!/bin/sh
# examples/openresty/test.sh: the OpenResty example, end to end. Installs what
# is missing (make deps-openresty: nginx, its lua module, curl, ...), builds the
# LuaJIT module (make LUA=luajit), mounts a bpffs in a temporary directory,
# pins and fills maps through luaebpf (fixture.lua), starts
# examples/openresty/nginx.conf in Debian's nginx on a free port of 127.0.0.1
# with a temporary prefix (workers as nobody), fetches every endpoint with
# curl, checks the bodies against bpftool's dumps and /metrics with
# prometheus_client's parser and promtool (check.py), has a real Prometheus
# scrape /metrics and answer histogram_quantile over the main job's latency
# histogram (checked against bpftool's dump), checks 404/403/500; streams
# GET /events/events (bpf/execsnoop.bpf.o, loaded and attached by the master)
# to several curl clients while it runs programs of unique names, and checks
# what each client got, the missed event, Last-Event-ID and the one consumer
# (check_events.py); then stops nginx and unmounts: nothing is left running,
# mounted or pinned. Then runs test_page.sh: the live page (GET /) in headless
# Chromium, with nginx and maps of its own.
# Prints one line per check and ends with "N passed, N failed". Needs root.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
. "$ROOT/examples/openresty/lib.sh"

check_build deps-openresty openresty
check_tools nginx curl bpftool luajit /usr/bin/python3 prometheus promtool
if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  notok "libnginx-mod-http-lua is missing (make deps)"
  summary
fi

FS=$(mktemp -d /tmp/luaebpfXXXXXX)
STATE=$(mktemp -d /tmp/luaebpf-nginx-XXXXXX)
NGX_PID=
PROM_PID=
prom_stop() {
  [ -n "$PROM_PID" ] || return 0
  kill -TERM "$PROM_PID" 2>/dev/null
  wait "$PROM_PID" 2>/dev/null
  PROM_PID=
}
cleanup() {
  prom_stop
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
# the stream: execsnoop's program, loaded and attached by the master; KEEP
# records kept in shared memory, few enough for the late client to miss some
KEEP=128
EVENTS="$ROOT/bpf/execsnoop.bpf.o,record=struct+event"
# maps without BTF get their codecs here; shapes and percpu_inner carry BTF;
# lat (hist.bpf.o's `latency`) is marked a log2 histogram, io_hist is one by its name
MAPS="$FS/counts,key=u32,value=u64 $FS/shapes $FS/percpu_inner $FS/big,key=u32,value=u64 $FS/queue
 $FS/lat,hist=log2 $FS/io_hist,key=u32,value=u64 $FS/edge_hist,key=u32,value=u64
 $FS/conns,decode=laddr:ipv4+raddr:ipv4"
if ngx_start "$STATE" "$PORT" "$MAPS" "$EVENTS" "$KEEP"; then
  ok "nginx started on 127.0.0.1:$PORT, prefix $STATE"
else
  sed 's/^/# /' "$STATE/error.log"
  notok "nginx did not start"
  cleanup
  summary
fi
check_workers

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
fetch conns /maps/conns
fetch metrics /metrics
fetch nosuch /maps/no_such_map_lx
fetch noid /maps/4294967295
fetch hidden_id "/maps/$hidden_id"
fetch hidden_name /maps/lx_hidden
fetch queue /maps/queue
fetch edge_hist /page/hist/lx_edge_hist

# a real Prometheus (Debian's prometheus) scrapes /metrics every 0.5 s, in
# its own temporary storage; histogram_quantile over the latency histogram's
# buckets, as its HTTP API answers it, is checked by check.py against the
# bucket bpftool's dump of the map puts the 99th percentile in
PPORT=$(ngx_free_port)
mkdir -p "$STATE/prom"
cat >"$STATE/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: luaebpf
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
EOF
prometheus --config.file="$STATE/prom/prometheus.yml" --storage.tsdb.path="$STATE/prom/data" \
  --web.listen-address="127.0.0.1:$PPORT" --log.level=warn </dev/null >"$STATE/prom/log" 2>&1 &
PROM_PID=$!
# query NAME PROMQL: the API's answer in STATE/NAME.json, once it has a sample (20 s at most)
query() {
  n=0
  while [ $n -lt 80 ]; do
    curl -s -G --data-urlencode "query=$2" -o "$STATE/$1.json" "http://127.0.0.1:$PPORT/api/v1/query"
    grep -q '"result":\[{' "$STATE/$1.json" 2>/dev/null && return 0
    sleep 0.25; n=$((n + 1))
  done
  return 1
}
if query prom_p99 'histogram_quantile(0.99, sum by (le) (ebpf_map_latency_bucket))' &&
   query prom_count 'ebpf_map_latency_count' &&
   query prom_io_p50 'histogram_quantile(0.5, ebpf_map_lx_io_hist_bucket)' &&
   query prom_up 'up{job="luaebpf"}'; then
  ok "Prometheus scraped /metrics and answers histogram_quantile over the latency buckets"
else
  sed 's/^/# /' "$STATE/prom/log" | tail -5
  notok "Prometheus gave no histogram_quantile answer within 20 s"
fi
prom_stop

/usr/bin/python3 examples/openresty/check.py "$STATE" "$FS" >"$STATE/check.out" 2>&1
cat "$STATE/check.out"
tally_from "$STATE/check.out" check.py

# GET /events/events: NCLIENTS clients stream at once (spread over the
# workers by reuseport) while NEXEC programs of unique names run one after the
# other; then a sentinel, which every client must see before it is stopped.
# Other processes of the machine exec too: the checks look only at these files.
# 16 clients: reuseport hashes each connection to a worker, and with 8 all of
# them landed on one worker about once in 128 runs (2 * 2^-8), too often for
# the check that more than one worker serves; with 16, 2 * 2^-16.
NCLIENTS=16
NEXEC=40
EXE="$STATE/exec"
mkdir -p "$EXE" && chmod 755 "$STATE" "$EXE"
tag=$(basename "$STATE" | tr -dc 'A-Za-z0-9' | tail -c 6)
launch="set -e"
i=1
while [ $i -le "$NEXEC" ]; do
  cp /bin/true "$EXE/lx${tag}_$i"
  prefix= uid=0
  if [ $((i % 4)) -eq 0 ]; then prefix="setpriv --reuid=65534 --regid=65534 --clear-groups" uid=65534; fi
  # $! execs the program in place (setpriv too): its pid is the record's
  launch="$launch
$prefix $EXE/lx${tag}_$i & echo \"$EXE/lx${tag}_$i \$! \$\$ $uid\"; wait \$!"
  i=$((i + 1))
done
cp /bin/true "$EXE/lx${tag}_end"
stream_pids=
i=1
while [ $i -le "$NCLIENTS" ]; do
  curl -sN --max-time 60 -D "$STATE/client$i.head" -o "$STATE/client$i.sse" \
    "http://127.0.0.1:$PORT/events/events" &
  stream_pids="$stream_pids $!"
  i=$((i + 1))
done
# wait_all PATTERN FILES...: until every file has the pattern (10 s at most)
wait_all() {
  pat=$1; shift
  n=0
  while [ $n -lt 100 ]; do
    all=1
    for f in "$@"; do grep -q -- "$pat" "$f" 2>/dev/null || all=; done
    [ -n "$all" ] && return 0
    sleep 0.1; n=$((n + 1))
  done
  return 1
}
clients=$(i=1; while [ $i -le "$NCLIENTS" ]; do echo "$STATE/client$i.sse"; i=$((i + 1)); done)
# shellcheck disable=SC2086
if wait_all '^: luaebpf events' $clients; then
  ok "$NCLIENTS clients connected to GET /events/events"
else
  notok "$NCLIENTS clients did not all get the stream's opening comment"
fi
echo "$launch" >"$STATE/launch.sh"
sh "$STATE/launch.sh" >"$STATE/launch.out"
"$EXE/lx${tag}_end"
# shellcheck disable=SC2086
if wait_all "lx${tag}_end" $clients; then
  ok "every client got the sentinel exec"
else
  notok "not every client got the sentinel exec within 10 s"
fi
# shellcheck disable=SC2086
kill $stream_pids 2>/dev/null
# shellcheck disable=SC2086
wait $stream_pids 2>/dev/null
# more than KEEP records since the first: a client asking for all of them misses some
i=0
while [ $i -lt $((KEEP + 20)) ]; do /bin/true; i=$((i + 1)); done
curl -sN --max-time 10 -o "$STATE/late.sse" "http://127.0.0.1:$PORT/events/events?since=0&limit=5"
# resume from a record still kept: the one 10 before the last
head=$(curl -s "http://127.0.0.1:$PORT/events" | sed -n 's/.*"name":"events","id":[0-9]*,"head":\([0-9]*\).*/\1/p')
echo $((head - 10)) >"$STATE/resume.from"
curl -sN --max-time 10 -H "Last-Event-ID: $((head - 10))" -o "$STATE/resume.sse" \
  "http://127.0.0.1:$PORT/events/events?limit=3"
sleep 0.6 # the consumer writes its statistics every 0.5 s
curl -s -o "$STATE/events.json" "http://127.0.0.1:$PORT/events"
/usr/bin/python3 examples/openresty/check_events.py "$STATE" "$KEEP" "$NCLIENTS" >"$STATE/check_events.out" 2>&1
cat "$STATE/check_events.out"
tally_from "$STATE/check_events.out" check_events.py
workers=$(pgrep -P "$NGX_PID" -u nobody | wc -l)
others=$(pgrep -P "$NGX_PID" | wc -l)
if [ "$workers" -ge 1 ] && [ "$workers" -eq "$others" ]; then
  ok "after streaming, all $workers workers still run as nobody"
else
  notok "after streaming: $workers of $others workers run as nobody"
fi
if grep -q 'eventserver.*\(no consumer\|cannot\|error\)\|\[error\].*eventserver' "$STATE/error.log"; then
  grep 'eventserver' "$STATE/error.log" | head -5 | sed 's/^/# /'
  notok "the error log has eventserver errors"
else
  ok "the error log has no eventserver error"
fi

# the error log: the 500 is logged; nothing worse, no ngx.sleep(0) warnings
if grep -q '\[\(alert\|crit\|emerg\)\]' "$STATE/error.log" || grep -q 'sleep(0)' "$STATE/error.log"; then
  grep '\[\(alert\|crit\|emerg\)\]\|sleep(0)' "$STATE/error.log" | head -5 | sed 's/^/# /'
  notok "the error log has alerts or ngx.sleep(0) warnings"
else
  ok "the error log has no alerts and no ngx.sleep(0) warnings"
fi

# a served list with step= but not hist=linear: refused at startup, saying why
# (else the step was dropped, or every GET /metrics failed)
BAD=$(mktemp -d /tmp/luaebpf-nginx-bad-XXXXXX)
MAIN_PID=$NGX_PID
if ngx_start "$BAD" "$(ngx_free_port)" "$FS/io_hist,key=u32,value=u64,step=4"; then
  ngx_stop
  notok "nginx started with io_hist,step=4 (no hist=linear)"
elif grep -q "step=4 is for hist=linear" "$BAD/error.log"; then
  ok "a served list item with step= but no hist=linear is refused at startup, saying why"
else
  sed 's/^/# /' "$BAD/error.log" | tail -3
  notok "nginx did not start with io_hist,step=4, but the log does not say why"
fi
NGX_PID=$MAIN_PID
rm -rf "$BAD"

check_teardown "$FS" "$STATE"

# the live page (GET /) in headless Chromium, with its own nginx and maps
# (test_page.sh); its checks count here, its summary line does not
page_out=$(mktemp /tmp/luaebpf-page-out-XXXXXX)
sh examples/openresty/test_page.sh >"$page_out" 2>&1
grep -v '^[0-9]* passed, [0-9]* failed$' "$page_out"
tally_from "$page_out" test_page.sh
rm -f "$page_out"
summary

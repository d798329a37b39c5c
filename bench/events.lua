-- bench/events.lua: consuming BPF events from Lua, two figures.
-- 1. Per record: a ring buffer holding N records of struct bench_event
--    (bpf/bench_events.bpf.c: u32 pid, u32 seq, u64 ts, u64 value (52 bits, for LuaJIT),
--    char comm[16], u32 flags; 48 bytes) is drained and each record decoded
--    into a Lua table handed to the same Lua function, three ways in turn:
--    luaebpf's rb:consume(fn), luaebpf's rb:records(0) iterator, and a minimal
--    C consumer (cbench.ringbuf: libbpf's ring_buffer__consume whose sample
--    callback builds the same table with lua_createtable/lua_setfield and
--    calls the same function). Before each timed drain, the SEC("syscall")
--    program fill (run by BPF_PROG_TEST_RUN) writes the batch, untimed: no
--    live producer beside the clock. Thread CPU time, alternating rounds, medians.
-- 2. Sustained: a child process calls getppid() as fast as it can for
--    EVENTS_SECONDS (default 10) while the raw tracepoint on_enter emits one
--    record per call into the ring buffer, then into the perf buffer; luaebpf
--    consumes them with poll. Records received per second, records dropped
--    (failed reserves the program counted; lost samples the perf buffer saw).
-- Then BCC's Python ring buffer reader on the same kind of record
-- (bench/events_bcc.py), when python3-bpfcc is there and loads.
-- Run from the repo root (make bench):
--   lua5.4 bench/events.lua [records_per_round [rounds]]
-- Environment: EVENTS_SECONDS (the sustained runs), EVENTS_PAGES (perf buffer
-- pages per CPU, default 64), EVENTS_BCC=0 skips BCC.
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local SCRIPT = "bench/events.lua"
local N = tonumber(arg and arg[1]) or 100000
local ROUNDS = tonumber(arg and arg[2]) or 9
local SECONDS = tonumber(os.getenv("EVENTS_SECONDS") or "") or 10
local PAGES = tonumber(os.getenv("EVENTS_PAGES") or "") or 64
local TARGET = 1.2
local RECORD = "struct bench_event"
local cbench = B.cbench
local cputime = cbench.cputime
local function fail(msg) B.fail(SCRIPT, msg) end

-- a luaebpf without the consumers still gives the C figures
local HAVE_RB, HAVE_PB = ebpf.ringbuf ~= nil, ebpf.perfbuf ~= nil
if not HAVE_RB then
  print("events: this luaebpf has no ring buffer consumer (ebpf.ringbuf): C figures only")
end

local obj = ebpf.load("bpf/bench_events.bpf.o")
local ring = obj:map("bench_rb")
local fill_fd
for _, p in ipairs(obj:programs()) do
  if p.name == "fill" then fill_fd = p.fd end
end
if not fill_fd then fail("bpf/bench_events.bpf.o has no program fill") end
local RING_SIZE = ring:info().max_entries
local REC_BYTES = 48 + 8 -- the record and the ring's 8-byte header
if N * REC_BYTES > RING_SIZE then
  fail(string.format("%d records of %d bytes do not fit the %d-byte ring", N, REC_BYTES, RING_SIZE))
end

local mypid = cbench.getpid()
local seq = 0 -- the next seq fill writes
local function fill(n)
  local sent = cbench.fill_events(fill_fd, n, seq, mypid)
  if sent ~= n then fail(string.format("fill sent %d of %d records (ring full?)", sent, n)) end
  seq = seq + n
  return seq - n
end

-- what fill writes for seq (ts aside)
local function check_record(rec, want_seq, who)
  local ok = rec.pid == mypid and rec.seq == want_seq and rec.flags == want_seq % 256
    and rec.value == B.expected(want_seq) % 2^52 and type(rec.ts) == "number" and rec.ts > 0
    and rec.comm == string.format("bench-event-%d%d%d", want_seq % 10,
      math.floor(want_seq / 10) % 10, math.floor(want_seq / 100) % 10)
  if not ok then
    local f = {}
    for k, v in pairs(rec) do f[#f + 1] = k .. "=" .. tostring(v) end
    fail(string.format("%s: record %d decoded as { %s }", who, want_seq, table.concat(f, ", ")))
  end
  local n = 0
  for _ in pairs(rec) do n = n + 1 end
  if n ~= 6 then fail(who .. ": a record has " .. n .. " fields, expected 6") end
end

local rb = HAVE_RB and ebpf.ringbuf(ring, { record = RECORD, btf = obj })
local crb = cbench.ringbuf(ring:fd())

-- the Lua function every consumer calls with each record
local count, sum = 0, 0
local function sink(rec)
  count = count + 1
  sum = sum + rec.seq
end

-- untimed correctness pass: each consumer gets every record once, decoded alike
do
  local K = 1000
  for _, side in ipairs(HAVE_RB and { "consume", "records", "c" } or { "c" }) do
    local base = fill(K)
    local got = {}
    local function keep(rec) got[#got + 1] = rec end
    local n
    if side == "consume" then
      n = rb:consume(keep)
    elseif side == "records" then
      n = 0
      for rec in rb:records(0) do n = n + 1; keep(rec) end
    else
      n = crb:consume(keep)
    end
    if n ~= K or #got ~= K then
      fail(string.format("%s delivered %d (returned %s) of %d records", side, #got, tostring(n), K))
    end
    for i = 1, K do check_record(got[i], base + i - 1, side) end
  end
  if (rb and rb:consume(sink) ~= 0) or crb:consume(sink) ~= 0 then fail("the ring is not empty") end
end

-- the sum of the seqs of a round: base .. base + N - 1
local function seq_sum(base) return N * base + N * (N - 1) / 2 end

local function drain(side)
  local base = fill(N)
  count, sum = 0, 0
  collectgarbage("collect")
  local t0 = cputime()
  local n
  if side == "consume" then n = rb:consume(sink) else n = crb:consume(sink) end
  local t = cputime() - t0
  if n and n ~= N then fail(side .. " returned " .. tostring(n) .. " of " .. N) end
  if count ~= N then fail(side .. " delivered " .. count .. " of " .. N) end
  if sum ~= seq_sum(base) then fail(side .. ": the seqs delivered do not add up") end
  return t * 1e9 / N
end

-- the iterator side: the loop body calls the same function
local function drain_records()
  local base = fill(N)
  count, sum = 0, 0
  collectgarbage("collect")
  local t0 = cputime()
  for rec in rb:records(0) do sink(rec) end
  local t = cputime() - t0
  if count ~= N then fail("records delivered " .. count .. " of " .. N) end
  if sum ~= seq_sum(base) then fail("records: the seqs delivered do not add up") end
  return t * 1e9 / N
end

-- warm up: every consumer's mapping of the ring touched twice over (first
-- touches of its pages fault), the code paths and the allocator warmed
local warm = math.ceil(2 * RING_SIZE / (N * REC_BYTES))
for _ = 1, warm do
  if HAVE_RB then drain("consume"); drain_records() end
  drain("c")
end

print(string.format("events: ring buffer %d MiB, %d records of %s (48 bytes, 6 fields) per "
  .. "round, %d rounds of each consumer, thread CPU time", RING_SIZE / 1048576, N, RECORD, ROUNDS))
local sides = { { name = "c", run = function() return drain("c") end } }
if HAVE_RB then
  table.insert(sides, 1, { name = "records", run = drain_records })
  table.insert(sides, 1, { name = "consume", run = function() return drain("consume") end })
end
local med = B.rounds(ROUNDS, sides, "record", HAVE_RB and { "consume", "c" } or nil)

B.target(string.format("lua/C <= %.1f: the same ring, the same table, the same Lua function; "
  .. "luaebpf's consumer may cost at most 20%% more per record", TARGET))
local function line(name, ns)
  return string.format("%s %.1f ns/record (%.2f M records/s)", name, ns, 1e3 / ns)
end
if HAVE_RB then
  local r_cb, r_it = med.consume / med.c, med.records / med.c
  print(string.format("events: %s, %s, %s", line("rb:consume", med.consume),
    line("rb:records", med.records), line("C ring_buffer__consume", med.c)))
  print(string.format("events: consume/C %.3f (target <= %.1f %s), records/C %.3f (target <= %.1f %s)",
    r_cb, TARGET, B.verdict(r_cb <= TARGET), r_it, TARGET, B.verdict(r_it <= TARGET)))
else
  print("events: " .. line("C ring_buffer__consume", med.c))
end

-- 2. sustained -------------------------------------------------------------
local cfg = obj:map("bench_cfg")
local drops = obj:map("bench_drops")
local function dropped()
  local t = drops:lookup(0)
  local n = 0
  for i = 1, #t do n = n + t[i] end
  return n
end
local link = obj:attach("on_enter")

-- the producer: this interpreter in a child, cbench.syscall_loop(SECONDS);
-- it prints its pid first (the shell's, which exec keeps) and its call count last
local function start_producer()
  local code = string.format("package.cpath = %q .. package.cpath; "
    .. "print(require('cbench').syscall_loop(%s))", package.cpath:match("^[^;]*;"), SECONDS)
  local p = assert(io.popen(string.format("echo $$; sleep 0.2; exec %s -e %q",
    B.interpreter(), code), "r"))
  local pid = tonumber(p:read("l"))
  if not pid then fail("the producer did not start") end
  return p, pid
end

local function sustained(kind)
  local c, name
  local lost = 0
  if kind == "ring" then
    c = rb
    name = "ring buffer"
  elseif kind == "c" then
    c = crb
    name = "ring buffer, C consumer"
  else
    c = ebpf.perfbuf(obj:map("bench_pb"), { pages = PAGES, record = RECORD, btf = obj,
      lost = function(_, n) lost = lost + n end })
    name = string.format("perf buffer (%d pages per CPU)", PAGES)
  end
  local d0 = dropped()
  local got, minseq, maxseq = 0, math.huge, -1
  local function take(rec)
    got = got + 1
    local s = rec.seq
    if s > maxseq then maxseq = s end
    if s < minseq then minseq = s end
  end
  local p, pid = start_producer()
  cfg:update(0, { tgid = pid, mode = kind == "perf" and 2 or 1, per_call = 1, pad = 0 })
  local t0, c0 = B.now(), cputime()
  local stop = t0 + SECONDS + 0.2
  while B.now() < stop do c:poll(100, take) end
  local calls = tonumber(p:read("l"))
  p:close()
  cfg:update(0, { tgid = 0, mode = 0, per_call = 0, pad = 0 })
  while c:consume(take) > 0 do end
  local wall, cpu = B.now() - t0, cputime() - c0
  if kind == "perf" then lost = math.max(lost, c:stats().lost or 0); c:close() end
  local drop = dropped() - d0
  local seen = got
  -- every seq between the first and the last received once: a gap the
  -- counters did not report, or a duplicate, is a failure
  if drop + lost == 0 and got > 0 and got ~= maxseq - minseq + 1 then
    fail(string.format("%s: %d records received, seqs %d..%d", name, got, minseq, maxseq))
  end
  print(string.format("events: sustained %s, %.0f s: %d records received (%.0f records/s), "
    .. "%d dropped by the program, %d lost samples; producer %d getppid calls (%.0f/s); "
    .. "consumer CPU %.0f%%", name, SECONDS, seen, seen / SECONDS, drop, lost,
    calls or -1, (calls or 0) / SECONDS, 100 * cpu / wall))
  return seen, drop + lost
end

local c_got, c_lost = sustained("c")
local summary = {}
if HAVE_RB then
  local got, lost = sustained("ring")
  summary[#summary + 1] = string.format("ring %.0f records/s, %d lost (%s)", got / SECONDS, lost,
    B.verdict(lost == 0))
end
if HAVE_PB then
  local ok, got, lost = pcall(sustained, "perf")
  summary[#summary + 1] = ok and string.format("perf %.0f records/s, %d lost (%s)", got / SECONDS,
    lost, B.verdict(lost == 0)) or "perf failed: " .. tostring(got)
end
summary[#summary + 1] = string.format("C ring consumer %.0f records/s, %d lost", c_got / SECONDS,
  c_lost)
link:close()
B.target("no loss: every record emitted is received (failed reserves and lost samples 0)")
print("events: sustained " .. table.concat(summary, "; "))

if rb then rb:close() end
crb:close()
obj:close()

-- 3. BCC --------------------------------------------------------------------
if os.getenv("EVENTS_BCC") ~= "0" then
  io.stdout:flush()
  local p = io.popen("sh bench/events_bcc.sh " .. N .. " " .. ROUNDS .. " 2>&1")
  for l in p:lines() do
    print(l)
    local ns = l:match("^events_bcc: ring_buffer_consume ([%d.]+) ns/record")
    if ns then
      print(string.format("events: BCC/%s %.2f (BCC's Python reader, in another process)",
        HAVE_RB and "luaebpf consume" or "C", tonumber(ns) / (med.consume or med.c)))
    end
  end
  p:close()
end

-- spec/events_defects_spec.lua: what the event consumers leave behind when
-- something goes wrong in the middle of a record: a decode that raises, a
-- finalizer that closes the consumer (or reads its stats) while a record is
-- decoded and then makes the program overwrite the ring, a memory error at
-- any allocation of a run, two Lua states swapping libbpf's print callback
-- from two threads. Each scenario runs in a child process (a crash fails one
-- test), against spec/fixtures/events.bpf.o: one `struct event` per unlink()
-- of the child (os.remove of a path that does not exist) to the ring
-- `events` (config.mode bit 1) or the perf buffer `perf_events` (bit 4), its
-- value = config.tag + seq. Memory errors come from spec/fixtures/failalloc.c,
-- a wrapper round the child's allocator. The scenarios' C runs in the
-- children: to check it under valgrind, set EVENTS_CHILD_PREFIX="valgrind
-- -q --error-exitcode=3 ..." (a child with errors fails its test). 5.1 syntax.
local H = require "spec.helpers"

local LUA = H.lua_bin():match("[^/]*$")
local FAILALLOC = "build/" .. LUA .. "/failalloc.so" -- make builds it for the Lua under test
local NR = ({ x86_64 = 87, aarch64 = 35 })[(H.run("uname -m"):gsub("%s", ""))]

-- Lua source run first in each child: the fixture loaded and attached, routed
-- to this child; helpers route(mode, tag), trigger(n), bpf_maps() (the
-- child's mappings of BPF maps, from /proc/self/maps), and K: how many
-- failures make one memory error (5.3 and 5.4 retry once after an emergency
-- collection, LuaJIT does not)
local PRELUDE = [[
local fa = assert(package.loadlib(]] .. string.format("%q", FAILALLOC) .. [[, "luaopen_failalloc"))()
local K = jit and 1 or 2
local NR = ]] .. NR .. [[

local PID = tonumber(io.popen("echo $PPID"):read("*l"))
local EVENT = { { "pid", "u32" }, { "seq", "u32" }, { "value", "u64" }, { "comm", "char[16]" },
                { "cpu", "u32" }, { "mode", "u32" } }
local obj = ebpf.load("spec/fixtures/events.bpf.o")
local config, counters = obj:map("config"), obj:map("counters")
config:codec{ key = "u32", value = { { "pid", "u32" }, { "nr", "u32" }, { "mode", "u32" },
                                     { "pad", "u32" }, { "tag", "u64" } } }
counters:codec{ key = "u32", value = "u64" }
local function route(mode, tag)
  assert(config:update(0, { pid = PID, nr = NR, mode = mode, pad = 0, tag = tag or 0 }))
end
local function trigger(n)
  for _ = 1, n do os.remove("/nonexistent/luaebpf-events-defects") end
end
local function bpf_maps()
  local n = 0
  for l in io.lines("/proc/self/maps") do
    if l:find("anon_inode:bpf-map", 1, true) then n = n + 1 end
  end
  return n
end
local link = obj:attach("on_enter")
]]

-- EVENTS_CHILD_PREFIX: a command the children run under, e.g. valgrind
local PREFIX = os.getenv("EVENTS_CHILD_PREFIX")

local function child(body)
  local out, ok = H.child(PRELUDE .. body, PREFIX)
  assert(ok, out)
  return out
end

--- the value of `key=` in out (the child prints key=value lines)
local function field(out, key)
  return out:match("\n" .. key .. "=([^\n]*)") or out:match("^" .. key .. "=([^\n]*)")
end

describe("rb:records() when a decode raises", function()
  it("consumes the record, stores the position, and a close unmaps the ring at once", function()
    local out = child([[
local before = bpf_maps()
local rb = ebpf.ringbuf(obj:map("events"), { record = EVENT })
route(1)
local it = rb:records()
assert(it() == nil) -- warm: nothing there yet
trigger(3)
fa.fail(0, K) -- the decode's first allocation (its table) fails
local ok, err = pcall(it)
print("raised=" .. tostring(not ok) .. " " .. tostring(err))
print("failed=" .. fa.failed())
local s = rb:stats()
print("records=" .. s.records)
print("pending=" .. s.rings[1].pending)
rb:close()
print("mapped=" .. (bpf_maps() - before))
local again = ebpf.ringbuf(obj:map("events"), { record = EVENT })
local seqs = {}
again:consume(function(r) seqs[#seqs + 1] = r.seq end)
again:close()
print("rest=" .. table.concat(seqs, ","))
print("counters=" .. counters:lookup(0))
]])
    assert.is_truthy(field(out, "raised"):find("^true .*not enough memory"), out)
    assert.are.equal(tostring(2 + (LUA == "luajit" and -1 or 0)), field(out, "failed"))
    assert.are.equal("1", field(out, "records"), out)
    assert.are.equal(tostring(2 * 48), field(out, "pending"), out) -- two left, headers included
    assert.are.equal("0", field(out, "mapped"), out) -- nothing of the ring stays mapped
    assert.are.equal("3", field(out, "counters"), out)     -- the program sent 3: seq 1 raised
    assert.are.equal("2,3", field(out, "rest"), out)       -- none twice, none lost
  end)
end)

-- Records longer than the 512 bytes a step copies on the C stack (mode 8: a
-- struct event and 1000 bytes, byte i = (seq + i) & 0xff) go through a
-- userdata: whole through poll and records(); a memory error at that
-- allocation leaves the record in the ring, one in its decode consumes it.
describe("records longer than the stack copy", function()
  it("arrive whole; a memory error before the copy leaves them, after it consumes them", function()
    local out = child([[
local BIG = { { "pid", "u32" }, { "seq", "u32" }, { "value", "u64" }, { "comm", "char[16]" },
              { "cpu", "u32" }, { "mode", "u32" }, { "fill", "raw[1000]" } }
local rb = ebpf.ringbuf(obj:map("events"), { record = BIG })
route(8)
local bad = 0
local function check(r)
  local want = {}
  for i = 0, 999 do want[i + 1] = string.char((r.seq + i) % 256) end
  if r.fill ~= table.concat(want) or r.value ~= r.seq or r.pid ~= PID or r.mode ~= 8 then
    bad = bad + 1
  end
  return r.seq
end
trigger(3) -- 3 records of 1040 + 8 bytes fit the 4096-byte ring
local seqs = {}
rb:consume(function(r) seqs[#seqs + 1] = check(r) end)
print("consume=" .. table.concat(seqs, ","))
trigger(3)
seqs = {}
for r in rb:records() do seqs[#seqs + 1] = check(r) end
print("records=" .. table.concat(seqs, ","))
print("bad=" .. bad)
print("pending=" .. rb:stats().rings[1].pending)
local it = rb:records()
assert(it() == nil) -- warm
trigger(2)
fa.fail(1, K) -- the copy's userdata goes through, the decode's table fails
local ok = pcall(it)
print("decode_raised=" .. tostring(not ok))
print("after_decode=" .. rb:stats().rings[1].pending)
fa.fail(0, K) -- the copy's userdata fails
ok = pcall(it)
print("copy_raised=" .. tostring(not ok))
print("after_copy=" .. rb:stats().rings[1].pending)
print("last=" .. check(it()))
print("records_stat=" .. rb:stats().records)
-- poll: at each allocation in turn, a memory error; then what is left
local delivered, raised = {}, 0
local function collect(r) delivered[#delivered + 1] = check(r) end
for skip = 0, 6 do
  trigger(1)
  fa.fail(skip, K)
  local okc = pcall(rb.consume, rb, collect)
  fa.fail(0, 0)
  if not okc then raised = raised + 1 end
end
rb:consume(collect)
local s = rb:stats()
print("sweep_raised=" .. raised)
print("sweep=" .. table.concat(delivered, ","))
print("sweep_pending=" .. s.rings[1].pending)
print("sweep_records=" .. s.records)
print("bad2=" .. bad)
rb:close()
]])
    assert.are.equal("1,2,3", field(out, "consume"), out)
    assert.are.equal("4,5,6", field(out, "records"), out)
    assert.are.equal("0", field(out, "bad"), out)
    assert.are.equal("0", field(out, "pending"), out)
    assert.are.equal("true", field(out, "decode_raised"), out)
    assert.are.equal("1048", field(out, "after_decode"), out) -- seq 7 consumed, 8 left
    assert.are.equal("true", field(out, "copy_raised"), out)
    assert.are.equal("1048", field(out, "after_copy"), out)   -- 8 still there
    assert.are.equal("8", field(out, "last"), out)
    assert.are.equal("8", field(out, "records_stat"), out)    -- 1..8, 7 among them
    -- the sweep sent 9..15: each delivered once, in order, or consumed by a failed decode
    local got = {}
    for n in field(out, "sweep"):gmatch("%d+") do got[#got + 1] = tonumber(n) end
    for i = 2, #got do assert.is_true(got[i] > got[i - 1], out) end
    assert.is_true(got[1] >= 9 and got[#got] <= 15, out)
    assert.are.equal("0", field(out, "sweep_pending"), out)
    assert.is_true(tonumber(field(out, "sweep_raised")) >= 1, out)
    -- records counts every record taken: delivered, or consumed by a failed decode
    assert.is_true(tonumber(field(out, "sweep_records")) - 8 >= #got, out)
    assert.is_true(tonumber(field(out, "sweep_records")) - 8 <= 7, out)
    assert.are.equal("0", field(out, "bad2"), out)
  end)
end)

-- A finalizer that runs while a record is decoded (a GC step at one of the
-- decode's allocations) closes the consumer or reads its stats, then routes
-- events with another tag and mode and sends 100 of them: the ring (4096
-- bytes, 85 records of 48) fills up to where the consumer position allows,
-- which is over the record being decoded once that position has moved past
-- it. A record decoded from the ring then mixes two events (its value - seq
-- is not the tag of its mode); decoded from a copy it is whole.
local function overwrite_during_decode(action)
  return child([[
local ACTION = "]] .. action .. [["
local rb, it
local function open()
  rb = ebpf.ringbuf(obj:map("events"), { record = EVENT })
  it = rb:records()
end
open()
local round, inside, hits, calls, torn, seen = 0, false, 0, 0, 0, 0
local function mischief()
  calls = calls + 1
  if not inside then return end
  hits = hits + 1
  round = round + 1
  if ACTION == "close" then rb:close() else rb:stats() end
  route(1 + 65536 * round, 10000 * round)
  trigger(100)
end
local function drop() end
if jit then jit.off() end -- LuaJIT runs no finalizer while a compiled loop calls the step
collectgarbage("setpause", 0)
route(1, 0)
for i = 1, 6000 do
  if hits >= 60 then break end
  if not pcall(rb.consume, rb, drop) then open() end -- drained: the ring holds one record
  trigger(1)
  -- a varying number, so that some land mid-step whatever the module allocates
  for _ = 1, 1 + (i * 37 + i * i % 11) % 6 do garbage(mischief) end
  inside = true
  local ok, r = pcall(it)
  inside = false
  if ok and r then
    seen = seen + 1
    if r.value - r.seq ~= 10000 * math.floor(r.mode / 65536) or r.pid ~= PID then
      torn = torn + 1
    end
  end
end
collectgarbage("setpause", 200)
print("hits=" .. hits)
print("calls=" .. calls)
print("seen=" .. seen)
print("torn=" .. torn)
rb:close()
]])
end

describe("a finalizer during a records() decode", function()
  it("closing the consumer and refilling the ring: the record decodes whole", function()
    local out = overwrite_during_decode("close")
    assert.is_true(tonumber(field(out, "hits")) >= 5, out) -- the finalizer did run mid-step
    assert.is_true(tonumber(field(out, "seen")) >= 1, out)
    assert.are.equal("0", field(out, "torn"), out)
  end)

  it("reading stats() and refilling the ring: the record decodes whole", function()
    local out = overwrite_during_decode("stats")
    assert.is_true(tonumber(field(out, "hits")) >= 5, out)
    assert.is_true(tonumber(field(out, "seen")) >= 5, out)
    assert.are.equal("0", field(out, "torn"), out)
  end)
end)

-- rb:add sets a ring up with Lua allocations (the codec, error texts), so a
-- finalizer may run rb:add (or close) on the same consumer in the middle of
-- it, also while an add that fails builds its error. Each ring must end up
-- in the consumer once, or not at all when its add failed, and a ring whose
-- add failed must be freed (valgrind sees a leak: run with
-- EVENTS_CHILD_PREFIX).
describe("rb:add from a finalizer during rb:add", function()
  it("adds each ring once, frees a ring whose add failed; a close meanwhile frees what was added", function()
    local out = child([[
local function ring() return ebpf.create{ type = "ringbuf", key_size = 0, value_size = 0, max_entries = 4096 } end
local m1, m2, m3 = ring(), ring(), ring()
local ids = { [m1:info().id] = "m1", [m2:info().id] = "m2", [m3:info().id] = "m3" }
local hits, hits_fail, closes, bad = 0, 0, 0, 0
local rb, inside, action
local function nested()
  if not inside or not rb then return end
  if action == "close" then rb:close(); closes = closes + 1; return end
  if pcall(rb.add, rb, m3) then
    hits = hits + 1
    if action == "fail" then hits_fail = hits_fail + 1 end
  end
end
if jit then jit.off() end
collectgarbage("setpause", 0)
local want = { add = { ["m1,m2"] = true, ["m1,m3,m2"] = true }, fail = { m1 = true, ["m1,m3"] = true },
               close = { ["m1,m2"] = true } } -- unless the finalizer closed it in the add
for i = 1, 600 do
  action = ({ "add", "close", "fail" })[i % 3 + 1]
  local holder = action == "fail" and ebpf.ringbuf(m2) or nil -- the add of m2 is refused
  rb = ebpf.ringbuf(m1)
  -- where a finalizer runs follows the allocations made before it, which any
  -- change to the module moves: a few of them, as many as a sequence that
  -- does not keep step with the three actions says, so that some land inside
  -- an add of each kind whatever the module allocates
  for _ = 1, 1 + (i * 37 + i * i % 11) % 6 do garbage(nested) end
  inside = true
  pcall(rb.add, rb, m2, { record = { { "a", "u32" }, { "b", "u64" }, { "c", "char[8]" } } })
  inside = false
  local sok, s = pcall(rb.stats, rb)
  if sok then
    local names = {}
    for k, r in ipairs(s.rings) do names[k] = ids[r.id] end
    local list = table.concat(names, ",")
    if not (want[action] or {})[list] then bad = bad + 1; print("bad: " .. action .. " " .. list) end
  elseif not tostring(s):find("closed", 1, true) then
    bad = bad + 1; print("bad: " .. tostring(s))
  end
  rb:close()
  rb = nil
  if holder then holder:close() end
end
collectgarbage("setpause", 200)
print("hits=" .. hits)
print("hits_fail=" .. hits_fail)
print("closes=" .. closes)
print("bad=" .. bad)
for _, m in ipairs({ m1, m2, m3 }) do -- every claim released: a new consumer of each works
  ebpf.ringbuf(m):close()
end
print("claims=free")
]])
    assert.is_true(tonumber(field(out, "hits")) >= 1, out)
    assert.is_true(tonumber(field(out, "hits_fail")) >= 1, out) -- inside a failing add
    assert.is_true(tonumber(field(out, "closes")) >= 1, out)
    assert.are.equal("0", field(out, "bad"), out)
    assert.are.equal("free", field(out, "claims"), out)
  end)
end)

-- A callback that yields gets an error explaining why; building that text
-- allocates. With the allocation number `skip` of the failed call failing
-- (the yield's own message, the explanation, ...), for each skip in turn:
-- the call raises, and the consumer is idle again (a consume works).
local function memory_errors_in_a_failed_run(kind)
  return child([[
local KIND = "]] .. kind .. [["
local c = KIND == "ringbuf" and ebpf.ringbuf(obj:map("events"), { record = EVENT })
          or ebpf.perfbuf(obj:map("perf_events"), { record = EVENT })
route(KIND == "ringbuf" and 1 or 4)
local function drop() end
local stuck, memory, explained = 0, 0, 0
for skip = 0, 24 do
  trigger(1)
  local co = coroutine.wrap(function()
    return c:consume(function() fa.fail(skip, K); coroutine.yield() end)
  end)
  local ok, err = pcall(co)
  fa.fail(0, 0)
  assert(not ok, "the yield was refused")
  err = tostring(err)
  if err:find("not enough memory", 1, true) then memory = memory + 1 end
  if err:find("cannot yield inside a " .. KIND .. " callback", 1, true) then explained = explained + 1 end
  local ok2, err2 = pcall(c.consume, c, drop)
  if not ok2 then
    stuck = stuck + 1
    print("stuck at " .. skip .. ": " .. tostring(err2))
  end
end
c:close()
print("stuck=" .. stuck)
print("memory=" .. memory)
print("explained=" .. explained)
]])
end

describe("a memory error while a run fails", function()
  for _, kind in ipairs({ "ringbuf", "perfbuf" }) do
    it("never leaves the " .. kind .. " busy", function()
      local out = memory_errors_in_a_failed_run(kind)
      assert.are.equal("0", field(out, "stuck"), out)
      assert.is_true(tonumber(field(out, "memory")) >= 1, out)    -- some allocations failed
      assert.is_true(tonumber(field(out, "explained")) >= 1, out) -- and past them, the text
    end)
  end
end)

-- build/<lua>/printrace runs two chunks in two Lua states in two threads of
-- one process, with a host's print callback of its own installed first
-- (spec/fixtures/printrace.c). Thread A loads an object the verifier refuses,
-- again and again: each error must carry the verifier's reason, captured
-- from libbpf's log on A's thread. Thread B meanwhile reads a perf buffer
-- whose callback raises, so libbpf warns that a callback stopped it each
-- time: B's quiet section must drop those lines. Afterwards libbpf's
-- callback must be the host's again.
describe("libbpf's print callback with Lua states in two threads", function()
  it("is the host's again after both, each thread's capture and quiet its own", function()
    local dir = H.tmpdir("printrace")
    local flag = dir .. "/a-done"
    local function chunk(name, src)
      local path = dir .. "/" .. name .. ".lua"
      local f = assert(io.open(path, "w"))
      f:write("package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path\n",
              "local ebpf = require 'luaebpf'\n", src)
      f:close()
      return "dofile('" .. path .. "')"
    end
    local a = chunk("a", [[
local ok, err = pcall(function()
  for i = 1, 40 do
    local loaded, e = pcall(ebpf.load, "spec/fixtures/unsafe.bpf.o")
    assert(not loaded and tostring(e):find("map_value_or_null", 1, true), "load " .. i .. ": " .. tostring(e))
  end
end)
assert(io.open("]] .. flag .. [[", "w")):close() -- B stops
assert(ok, err)
]])
    local b = chunk("b", [[
local obj = ebpf.load("spec/fixtures/events.bpf.o")
local config = obj:map("config")
config:codec{ key = "u32", value = { { "pid", "u32" }, { "nr", "u32" }, { "mode", "u32" },
                                     { "pad", "u32" }, { "tag", "u64" } } }
local pid = tonumber(io.popen("echo $PPID"):read("*l"))
assert(config:update(0, { pid = pid, nr = ]] .. NR .. [[, mode = 4, pad = 0, tag = 0 }))
local link = obj:attach("on_enter")
local pb = obj:perfbuf("perf_events")
local stops, i, t0 = 0, 0, os.time()
local function stop() error("stop") end
while true do
  i = i + 1
  if i % 20 == 0 and (io.open("]] .. flag .. [[") or os.time() - t0 > 30) then break end
  os.remove("/nonexistent/luaebpf-printrace")
  if not pcall(pb.consume, pb, stop) then stops = stops + 1 end
end
assert(stops > 0, "no callback stopped libbpf")
pb:close(); link:close(); obj:close()
]])
    local out, ok = H.sh(string.format("%s build/%s/printrace '%s' \"%s\" \"%s\"", PREFIX or "", LUA,
                                       package.cpath, a, b))
    H.run("rm -rf " .. dir)
    assert(ok, out)
    assert.is_truthy(out:find("A ok\n", 1, true), out)
    assert.is_truthy(out:find("B ok\n", 1, true), out)
    assert.are.equal("yes", field(out, "host"), out)
    assert.are.equal("0", field(out, "stopped"), out)
  end)
end)

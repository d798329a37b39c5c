-- spec/events_spec.lua: ring buffers and perf buffers, against
-- spec/fixtures/events.bpf.o: its raw tracepoint on sys_enter sends one
-- `struct event` per unlink() of this process (os.remove of a path that does
-- not exist) to the rings (and perf buffer) that config.mode selects, and
-- counts what it sent and what did not fit. Every record is checked against
-- what the program sent: exactly once, field by field. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local FIXTURE = "spec/fixtures/events.bpf.o"
local PID = tonumber((H.run("echo $PPID"):gsub("%s", "")))
local COMM = H.read_file("/proc/" .. PID .. "/comm"):gsub("%s+$", "")
local NR = ({ x86_64 = 87, aarch64 = 35 })[(H.run("uname -m"):gsub("%s", ""))]
local RING, RING2, PERF = 1, 2, 4
local EVENT = { { "pid", "u32" }, { "seq", "u32" }, { "value", "u64" }, { "comm", "char[16]" },
                { "cpu", "u32" }, { "mode", "u32" } }
local TAG = 7000

local raised = H.raised

--- n events: n unlink() calls that fail with ENOENT
local function trigger(n)
  for _ = 1, n do os.remove("/nonexistent/luaebpf-events-spec") end
end

local obj, link, config, counters

--- sends events to `mode`'s rings from now on, counters back at zero
local function route(mode)
  for k = 0, 3 do assert(counters:update(k, 0)) end
  assert(config:update(0, { pid = PID, nr = NR, mode = mode, pad = 0, tag = TAG }))
end

local function counter(k) return counters:lookup(k) end

--- checks that recs (in arrival order) are events 1..n, each once, as sent
local function assert_events(recs, n, mode)
  assert.are.equal(n, #recs)
  for i, r in ipairs(recs) do
    assert.are.equal(i, r.seq)
    assert.are.equal(PID, r.pid)
    assert.are.equal(TAG + i, r.value)
    assert.are.equal(COMM, r.comm)
    assert.is_true(r.cpu >= 0 and r.cpu < ebpf.ncpus())
    assert.are.equal(mode, r.mode)
  end
end

setup(function()
  obj = ebpf.load(FIXTURE)
  config = obj:map("config")
  counters = obj:map("counters")
  config:codec{ key = "u32", value = { { "pid", "u32" }, { "nr", "u32" }, { "mode", "u32" },
                                        { "pad", "u32" }, { "tag", "u64" } } }
  counters:codec{ key = "u32", value = "u64" }
  route(0)
  link = obj:attach("on_enter")
end)

teardown(function()
  link:close()
  obj:close()
end)

local live = {}

--- a consumer closed after the test, whatever happens in it
local function track(c)
  live[#live + 1] = c
  return c
end

before_each(function()
  route(0)
  local drain = ebpf.ringbuf{ obj:map("events"), obj:map("events2") } -- what earlier tests left
  drain:consume(function() end)
  drain:close()
end)

after_each(function()
  for _, c in ipairs(live) do c:close() end
  live = {}
end)

describe("ebpf.ringbuf", function()
  it("delivers every record exactly once with the fields the program sent (hand codec)", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(25)
    local recs, where = {}, {}
    local n = rb:poll(1000, function(r, i) recs[#recs + 1] = r; where[i] = true end)
    assert.are.equal(25, n)
    assert_events(recs, 25, RING)
    assert.are.same({ true }, where)
    assert.are.equal(0, rb:poll(0, function() error("nothing is left") end))
    assert.are.equal(25, counter(0))
    rb:close()
  end)

  it("decodes by a BTF type name looked up in opts.btf, in obj:ringbuf's object, or raw", function()
    route(RING)
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = "struct event", btf = obj }))
    trigger(3)
    local recs = {}
    assert.are.equal(3, rb:consume(function(r) recs[#recs + 1] = r end))
    assert_events(recs, 3, RING)
    rb:close()
    rb = track(obj:ringbuf("events", { record = "btf:struct event" }))
    trigger(1)
    rb:consume(function(r) recs[#recs + 1] = r end)
    assert.are.equal(4, recs[4].seq)
    rb:close()
    rb = track(ebpf.ringbuf(obj:map("events"))) -- raw: the record's 40 bytes
    trigger(1)
    local raw
    rb:consume(function(r) raw = r end)
    assert.are.equal(40, #raw)
    assert.are.same({ pid = PID, seq = 5 }, ebpf.decode({ { "pid", "u32" }, { "seq", "u32" } },
                                                       raw:sub(1, 8)))
    rb:close()
  end)

  it("delivers what both rings hold in one poll, each with its ring's index", function()
    route(RING + RING2)
    local rb = track(ebpf.ringbuf({ obj:map("events") }, { record = EVENT }))
    assert.are.equal(rb, rb:add(obj:map("events2"), { record = "struct event", btf = obj }))
    trigger(10)
    local got = { {}, {} }
    local n = 0
    while n < 20 do
      n = n + assert(rb:poll(1000, function(r, i) table.insert(got[i], r) end))
    end
    assert_events(got[1], 10, RING + RING2)
    assert_events(got[2], 10, RING + RING2)
    local s = rb:stats()
    assert.are.equal(20, s.records)
    assert.are.equal(2, #s.rings)
    assert.are.equal("events2", s.rings[2].name)
    rb:close()
  end)

  it("counts a ring filled past capacity on both sides: delivered + dropped = emitted", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(200) -- a 4096-byte ring holds 85 records of 40 bytes (+ 8 of header)
    local s = rb:stats().rings[1]
    assert.are.equal(4096, s.size)
    assert.is_true(s.pending > 4000, "pending " .. s.pending)
    assert.are.equal(s.producer - s.consumer, s.pending)
    local recs = {}
    rb:consume(function(r) recs[#recs + 1] = r end)
    local dropped = counter(1)
    assert.are.equal(200, counter(0))
    assert.is_true(dropped > 0)
    assert.are.equal(200, #recs + dropped)
    assert.are.equal(85, #recs)
    assert.are.equal(0, rb:stats().rings[1].pending)
    assert.are.equal(#recs, rb:stats().records)
    assert.are.equal(#recs * 40, rb:stats().bytes)
    rb:close()
  end)

  it("re-raises the callback's error: records before it and its own stay consumed, the rest stay", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(10)
    local oops, seen = { "mine" }, {}
    local ok, err = pcall(rb.consume, rb, function(r)
      seen[#seen + 1] = r.seq
      if r.seq == 4 then error(oops) end
    end)
    assert.is_false(ok)
    assert.are.equal(oops, err) -- the very value raised
    assert.are.same({ 1, 2, 3, 4 }, seen)
    local rest = {}
    assert.are.equal(6, rb:consume(function(r) rest[#rest + 1] = r.seq end))
    assert.are.same({ 5, 6, 7, 8, 9, 10 }, rest)
    rb:close()
  end)

  it("finishes a close from inside the callback when poll returns", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(5)
    local seen = 0
    local n = rb:poll(1000, function()
      seen = seen + 1
      rb:close()
      rb:close()
    end)
    assert.are.equal(1, n)
    assert.are.equal(1, seen)
    assert.are.equal("closed", raised(rb.consume, rb, print).class)
    local again = ebpf.ringbuf(obj:map("events"), { record = EVENT }) -- released: a new one may
    local rest = {}
    again:consume(function(r) rest[#rest + 1] = r.seq end)
    assert.are.same({ 2, 3, 4, 5 }, rest)
    again:close()
  end)

  it("closes from a finalizer that runs during a poll without freeing what the poll uses", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(50)
    local n = 0
    collectgarbage("setpause", 0)
    if newproxy then -- 5.1/LuaJIT: tables have no __gc
      getmetatable(newproxy(true)).__gc = function() rb:close() end
    else
      setmetatable({}, { __gc = function() rb:close() end })
    end
    local ok = pcall(rb.consume, rb, function(r)
      n = n + 1
      local junk = {}
      for i = 1, 50 do junk[i] = { i } end
    end)
    collectgarbage("setpause", 200)
    collectgarbage()
    assert.is_true(ok)
    assert.is_true(n >= 1)
    assert.are.equal("closed", raised(rb.consume, rb, print).class)
  end)

  it("refuses to poll its own consumer from the callback, class \"invalid\"", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(2)
    local err = raised(rb.consume, rb, function() rb:consume(print) end)
    assert.are.equal("invalid", err.class)
    assert.are.equal(1, rb:consume(function() end)) -- the second record is still there
    rb:close()
  end)

  it("gives a callback that yields a clear error, not a crash", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(2)
    local co = coroutine.create(function()
      return rb:consume(function() coroutine.yield(1) end)
    end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("cannot yield inside a ringbuf callback", 1, true), err)
    assert.are.equal(1, rb:consume(function() end))
    rb:close()
  end)

  it("raises for a record shorter than the codec, naming both sizes, after the records before it", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = "raw[64]" }))
    route(RING)
    trigger(2)
    local err = raised(rb.consume, rb, function() end)
    assert.are.equal("invalid", err.class)
    assert.is_truthy(tostring(err):find("40 bytes", 1, true), tostring(err))
    assert.is_truthy(tostring(err):find("64 bytes", 1, true), tostring(err))
    rb:close()
  end)

  it("iterates with records(): one record per step, a break leaves the rest in the ring", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    trigger(6)
    local seen = {}
    for r, i in rb:records() do
      assert.are.equal(1, i)
      seen[#seen + 1] = r.seq
      if #seen == 2 then break end
    end
    assert.are.same({ 1, 2 }, seen)
    for r in rb:records(10) do seen[#seen + 1] = r.seq end
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, seen)
    rb:close()
  end)

  it("reads with records() the records that wrap round the end of the ring, whole", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    local recs, start = {}, rb:stats().rings[1].consumer
    for _, n in ipairs{ 80, 10, 60, 80, 70 } do -- 48 bytes each in 4096: some straddle the end
      trigger(n)
      for r, i in rb:records() do
        assert.are.equal(1, i)
        recs[#recs + 1] = r
      end
    end
    assert_events(recs, 300, RING)
    local s, wrapped = rb:stats(), 0
    assert.are.equal(start + 300 * 48, s.rings[1].consumer)
    assert.are.equal(0, s.rings[1].pending)
    assert.are.equal(300, s.records)
    assert.are.equal(300 * 40, s.bytes)
    for k = 0, 299 do -- 14400 bytes cross 3 ends, at most one of them between two records
      if (start + 48 * k) % 4096 > 4096 - 48 then wrapped = wrapped + 1 end
    end
    assert.is_true(wrapped >= 2)
    rb:close()
  end)

  it("records(): a short record raises naming both sizes and is consumed; a finalizer may close mid-step", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = "raw[64]" }))
    route(RING)
    trigger(2)
    local err = raised(function() for _ in rb:records() do end end)
    assert.are.equal("invalid", err.class)
    assert.is_truthy(tostring(err):find("40 bytes", 1, true), tostring(err))
    assert.is_truthy(tostring(err):find("64 bytes", 1, true), tostring(err))
    assert.are.equal(48, rb:stats().rings[1].pending) -- the first consumed, the second left
    rb:close()
    rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    trigger(50)
    collectgarbage("setpause", 0)
    if newproxy then
      getmetatable(newproxy(true)).__gc = function() rb:close() end
    else
      setmetatable({}, { __gc = function() rb:close() end })
    end
    local n = 0
    local ok = pcall(function()
      for r in rb:records() do
        n = n + 1
        local junk = {}
        for i = 1, 50 do junk[i] = { i } end
      end
    end)
    collectgarbage("setpause", 200)
    collectgarbage()
    assert.is_true(n >= 1)
    assert.are.equal("closed", raised(rb.consume, rb, print).class)
    local again = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    local rest = 0
    again:consume(function() rest = rest + 1 end)
    assert.are.equal(1 + 50 - n, rest) -- the short test's second, and these: none twice, none lost
    assert.are.equal(ok, n == 51) -- the step after the close raised "closed", unless it came late
    again:close()
  end)

  it("waits in poll until a record comes, and returns 0 at the timeout; fd() is an epoll fd", function()
    local rb = track(ebpf.ringbuf(obj:map("events"), { record = EVENT }))
    route(RING)
    local fd = rb:fd()
    assert.is_true(math.type == nil or math.type(fd) == "integer")
    assert.is_true(fd > 2)
    assert.is_truthy(H.run("readlink /proc/" .. PID .. "/fd/" .. fd):find("eventpoll", 1, true))
    assert.are.equal(0, rb:poll(0, print))
    assert.are.equal(0, rb:poll(20, print))
    trigger(1)
    assert.are.equal(1, rb:poll(-1, function() end))
    -- NaN is no timeout: refused, not cast (it used to wait forever)
    local ok, err = pcall(rb.poll, rb, 0 / 0, print)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("timeout in milliseconds expected, got nan", 1, true))
    rb:close()
  end)

  it("refuses a second consumer of a ring in this process, naming the first, until it closes", function()
    local rb = track(ebpf.ringbuf(obj:map("events")))
    local err = raised(ebpf.ringbuf, obj:map("events"))
    assert.are.equal("invalid", err.class)
    assert.is_truthy(tostring(err):find(tostring(rb):match("0x%x+"), 1, true), tostring(err))
    err = raised(ebpf.ringbuf, { obj:map("events2"), obj:map("events") }) -- all or nothing
    assert.are.equal("invalid", err.class)
    local other = ebpf.ringbuf(obj:map("events2")) -- events2 was released again
    other:close()
    rb:close()
    ebpf.ringbuf(obj:map("events")):close()
    rb = nil
  end)

  it("releases the ring when a consumer is collected", function()
    ebpf.ringbuf(obj:map("events"))
    collectgarbage(); collectgarbage()
    ebpf.ringbuf(obj:map("events")):close()
  end)

  it("raises class \"closed\" after close, for every method, and close repeats", function()
    local rb = track(ebpf.ringbuf(obj:map("events")))
    rb:close(); rb:close()
    for _, call in ipairs{ function() return rb:poll(0, print) end, function() return rb:consume(print) end,
                           function() return rb:records() end, function() return rb:fd() end,
                           function() return rb:stats() end,
                           function() return rb:add(obj:map("events2")) end } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.are.equal("closed", err.class)
    end
  end)

  it("refuses maps of another type, read-only handles, and bad options", function()
    local ok, err = pcall(ebpf.ringbuf, counters)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find('"ringbuf" expected', 1, true), err)
    local id = obj:map("events"):info().id
    local ro = ebpf.open_id(id)
    err = raised(ebpf.ringbuf, ro)
    assert.are.equal("permission", err.class)
    assert.is_truthy(tostring(err):find('access = "rw"', 1, true))
    ro:close()
    ok, err = pcall(ebpf.ringbuf, obj:map("events"), { recrod = "u32" })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("recrod", 1, true))
    ok, err = pcall(ebpf.ringbuf, obj:map("events"), { record = "struct nope", btf = obj })
    assert.is_false(ok)
    assert.are.equal("missing", err.class)
    ok, err = pcall(ebpf.ringbuf, ebpf.create{ type = "ringbuf", key_size = 0, value_size = 0, max_entries = 4096 },
                    { record = "struct event" })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("opts.btf", 1, true), tostring(err))
    ebpf.ringbuf(obj:map("events")):close() -- none of these kept the ring
  end)

  it("consumes a created ring (no program): empty, with its size", function()
    local m = ebpf.create{ type = "ringbuf", key_size = 0, value_size = 0, max_entries = 8192, name = "spec_ring" }
    local rb = track(ebpf.ringbuf(m))
    m:close() -- the consumer holds its own fd
    assert.are.equal(0, rb:poll(0, print))
    local s = rb:stats()
    assert.are.same({ 8192, 0, 0, "spec_ring" },
                    { s.rings[1].size, s.rings[1].pending, s.records, s.rings[1].name })
    rb:close()
  end)
end)

describe("ebpf.perfbuf", function()
  local function perf_track(opts) return track(obj:perfbuf("perf_events", opts)) end

  it("delivers every record exactly once with its CPU, decoded by BTF type name", function()
    local pb = perf_track{ record = "struct event" }
    route(PERF)
    trigger(20)
    local recs, n = {}, 0
    while n < 20 do
      n = n + assert(pb:poll(1000, function(r, cpu)
        assert.are.equal(r.cpu, cpu) -- the program's CPU is the buffer's
        recs[#recs + 1] = r
      end))
    end
    table.sort(recs, function(a, b) return a.seq < b.seq end) -- per-CPU buffers: any order
    assert_events(recs, 20, PERF)
    assert.are.equal(0, pb:consume(function() error("nothing is left") end))
  end)

  it("decodes a hand codec and raw records (padded to 8 bytes with the size word)", function()
    local pb = perf_track{ record = EVENT }
    route(PERF)
    trigger(2)
    local recs = {}
    pb:consume(function(r) recs[#recs + 1] = r end)
    assert_events(recs, 2, PERF)
    pb:close()
    pb = perf_track()
    trigger(1)
    local raw
    pb:consume(function(r) raw = r end)
    assert.are.equal(44, #raw) -- 40 bytes and 4 of padding: 8 + 4 + 44 is a multiple of 8
    assert.are.equal(3, ebpf.decode("u32", raw:sub(5, 8)))
  end)

  it("reports samples lost to overflow through stats().lost and opts.lost: delivered + lost = emitted", function()
    local reported, per = 0, {}
    local pb = perf_track{ record = EVENT, pages = 1, lost = function(cpu, count)
      reported = reported + count
      per[cpu + 1] = (per[cpu + 1] or 0) + count
    end }
    route(PERF)
    trigger(400) -- one page per CPU holds about 73 samples of 56 bytes
    local got = 0
    pb:consume(function() got = got + 1 end)
    trigger(ebpf.ncpus() * 4) -- the kernel reports a loss with the next sample that fits
    pb:consume(function() got = got + 1 end)
    local s = pb:stats()
    local emitted, failed = counter(0), counter(3)
    assert.is_true(s.lost > 0)
    assert.are.equal(failed, s.lost) -- the program saw each of them fail
    assert.are.equal(emitted, got + s.lost)
    assert.are.equal(s.lost, reported)
    assert.are.equal(got, s.records)
    local sum = 0
    for cpu = 1, ebpf.ncpus() do
      sum = sum + s.lost_per_cpu[cpu]
      assert.are.equal(per[cpu] or 0, s.lost_per_cpu[cpu])
    end
    assert.are.equal(s.lost, sum)
  end)

  it("re-raises the callback's error: records before it and its own stay consumed", function()
    local pb = perf_track{ record = EVENT }
    route(PERF)
    trigger(8)
    local seen, oops = {}, setmetatable({}, { __tostring = function() return "oops" end })
    local ok, err = pcall(pb.consume, pb, function(r)
      seen[#seen + 1] = r.seq
      if #seen == 3 then error(oops) end
    end)
    assert.is_false(ok)
    assert.are.equal(oops, err)
    pb:consume(function(r) seen[#seen + 1] = r.seq end)
    table.sort(seen)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, seen)
  end)

  it("iterates with records() and finishes a close from inside the callback", function()
    local pb = perf_track{ record = EVENT }
    route(PERF)
    trigger(3)
    local seen = {}
    for r, cpu in pb:records(100) do
      assert.is_true(cpu >= 0 and cpu < ebpf.ncpus())
      seen[#seen + 1] = r.seq
    end
    table.sort(seen)
    assert.are.same({ 1, 2, 3 }, seen)
    trigger(3)
    local n = pb:poll(1000, function() pb:close() end)
    assert.are.equal(1, n)
    assert.are.equal("closed", raised(pb.poll, pb, 0, print).class)
  end)

  it("refuses a second consumer of the map, a map of another type, and bad pages", function()
    local pb = perf_track()
    local err = raised(ebpf.perfbuf, obj:map("perf_events"))
    assert.are.equal("invalid", err.class)
    pb:close()
    perf_track():close()
    local ok, msg = pcall(ebpf.perfbuf, obj:map("events"))
    assert.is_false(ok)
    assert.is_truthy(tostring(msg):find('"perf_event_array" expected', 1, true))
    ok, msg = pcall(ebpf.perfbuf, obj:map("perf_events"), { pages = 3 })
    assert.is_false(ok)
    assert.is_truthy(tostring(msg):find("power of 2", 1, true))
    ok, msg = pcall(ebpf.perfbuf, obj:map("perf_events"), { lost = 1 })
    assert.is_false(ok)
    assert.is_truthy(tostring(msg):find("lost", 1, true))
    perf_track():close()
  end)

  it("raises class \"closed\" after close; fd() is an epoll fd", function()
    local pb = perf_track()
    assert.is_truthy(H.run("readlink /proc/" .. PID .. "/fd/" .. pb:fd()):find("eventpoll", 1, true))
    assert.are.equal(0, pb:poll(10, print))
    pb:close(); pb:close()
    for _, m in ipairs{ "poll", "consume", "records", "fd", "stats" } do
      local ok, err = pcall(pb[m], pb, 0, print)
      assert.is_false(ok)
      assert.are.equal("closed", err.class, m)
    end
  end)
end)

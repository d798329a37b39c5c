-- spec/lookup_fn_spec.lua: get = m:lookup_fn(opts), a lookup whose options
-- are read once. Each answer is checked against bpftool's bytes of the same
-- pinned map (and against m:lookup(k, opts), which answers the same); the
-- options are bound when get is made (later changes to the table do nothing),
-- the map's shape is read on each call (m:codec{} applies), get keeps the map
-- open, and every bad input is refused when get is made or when it is called,
-- named as m:lookup names it. 5.1 syntax: runs on every Lua.
local ebpf, H = require "luaebpf", require "spec.helpers"

local le, uint, raised, mentions = H.le, H.uint, H.raised, H.mentions
local NCPUS = ebpf.ncpus()

describe("m:lookup_fn", function()
  local fs
  local track, close_all = H.tracker()
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_all)

  -- a pinned map made by bpftool, opened as u32 -> u64
  local function open_map(mtype, entries)
    local path = fs:bpftool_map{ type = mtype, key = 4, value = 8, entries = entries or 16 }
    return track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" })), path
  end

  -- per-CPU values that differ per key and per CPU (exact on every Lua)
  local function per_cpu(k)
    local t = {}
    for cpu = 1, NCPUS do t[cpu] = k * 1000 + cpu * 7 + (cpu % 2) * 100 end
    return t
  end

  -- bpftool's per-CPU values of key k, as numbers
  local function oracle(path, k)
    local per = H.dump(path)[le(k, 4)]
    assert.is_table(per, "bpftool has no key " .. k)
    local t = {}
    for cpu = 1, NCPUS do t[cpu] = uint(per[cpu]) end
    return t
  end

  local function reduce(list, how)
    local acc = list[1]
    for i = 2, #list do
      local v = list[i]
      acc = how == "sum" and acc + v or how == "min" and math.min(acc, v) or math.max(acc, v)
    end
    return acc
  end

  for _, mtype in ipairs{ "percpu_hash", "percpu_array", "lru_percpu_hash" } do
    it(mtype .. ": reduces and fills as bpftool's per-CPU values say, key after key", function()
      local m, path = open_map(mtype)
      for k = 0, 7 do assert(m:update(k, per_cpu(k))) end
      local sum, min, max = m:lookup_fn{ percpu = "sum" }, m:lookup_fn{ percpu = "min" },
        m:lookup_fn{ percpu = "max" }
      local T = { extra = "kept" }
      local into, plain = m:lookup_fn{ into = T }, m:lookup_fn()
      for k = 0, 7 do
        local want = oracle(path, k)
        assert.are.equal(reduce(want, "sum"), sum(k), "sum of " .. k)
        assert.are.equal(reduce(want, "min"), min(k), "min of " .. k)
        assert.are.equal(reduce(want, "max"), max(k), "max of " .. k)
        assert.are.equal(m:lookup(k, { percpu = "sum" }), sum(k))
        assert.are.equal(T, into(k)) -- the same table each call, overwritten in place
        for cpu = 1, NCPUS do assert.are.equal(want[cpu], T[cpu], k .. " on CPU " .. cpu) end
        assert.is_nil(T[NCPUS + 1])
        assert.are.equal("kept", T.extra)
        assert.are.same(want, plain(k)) -- a new array per call, as m:lookup(k) gives
      end
      if mtype ~= "percpu_array" then -- every index of an array exists
        for i = 1, NCPUS do T[i] = "before " .. i end
        assert.is_nil(sum(99))
        assert.is_nil(into(99)) -- absent: the caller's table is left alone
        for i = 1, NCPUS do assert.are.equal("before " .. i, T[i]) end
      end
    end)
  end

  it("reads a plain hash as m:lookup does: values, nil when absent, nil and err", function()
    local m, path = open_map("hash")
    for k = 1, 5 do assert(m:update(k, k * 2 ^ 40 + k)) end
    local get = m:lookup_fn()
    local dump = H.dump(path)
    for k = 1, 5 do assert.are.equal(uint(dump[le(k, 4)]), get(k)) end
    assert.is_nil(get(6))
    -- a handle opened write-only: the kernel's EPERM comes back as nil, err
    local w = track(ebpf.open(path, { access = "w", key = "u32", value = "u64" }))
    local v, err = w:lookup_fn()(1)
    assert.is_nil(v)
    assert.are.equal("EPERM", err.code)
    assert.are.equal("lookup", err.op)
    -- lock = true on a value without a spin lock: the flag reaches the kernel, which refuses it
    v, err = m:lookup_fn{ lock = true }(1)
    assert.is_nil(v)
    assert.are.equal("EINVAL", err.code)
    mentions(err, { "spin_lock" })
    assert.are.equal(2 ^ 40 + 1, m:lookup_fn{ lock = false }(1))
  end)

  it("peeks a queue (a map without keys) when called with no key", function()
    local m = track(ebpf.create{ type = "queue", value = "u32", max_entries = 4 })
    assert(m:update(nil, 7))
    assert(m:update(nil, 8))
    local peek = m:lookup_fn()
    assert.are.equal(7, peek())
    assert.are.equal(7, peek(nil))
    mentions(raised(peek, 1), { "this map has no keys" })
  end)

  -- past 512 bytes of key and value a call's buffer is a userdata on the
  -- stack: it must never take the slot of an argument left out
  it("reads values too large for the call's own buffer, keys left out included", function()
    local big = string.rep("a", 1000) .. string.rep("z", 24)
    local q = track(ebpf.create{ type = "queue", value = "raw", value_size = 1024, max_entries = 4 })
    assert(q:update(nil, big))
    assert(q:update(nil, big:reverse()))
    local peek = q:lookup_fn()
    assert.are.equal(big, peek())
    assert.are.equal(big, q:lookup())
    assert.are.equal(big, q:lookup(nil))
    assert.are.equal(big, q:lookup_and_delete()) -- a pop with no key given
    assert.are.equal(big:reverse(), peek())
    mentions(raised(q.update, q, nil), { "value expected" }) -- as a small value's update says
    local h = track(ebpf.create{ type = "hash", key = "u32", value = "raw", value_size = 1024,
                                 max_entries = 4 })
    assert(h:update(1, big))
    assert.are.equal(big, h:lookup_fn()(1))
    mentions(raised(h:lookup_fn()), { "bad argument #1", "key: u32" })
    mentions(raised(h.lookup, h), { "key: u32" })
    mentions(raised(h.update, h, 1), { "value expected" })
    -- per-CPU: 37 u64 a CPU, 296 bytes each
    local p = track(ebpf.create{ type = "percpu_hash", key = "u32", value = { "u64", 37 },
                                 max_entries = 4 })
    local per = {}
    for cpu = 1, NCPUS do
      per[cpu] = {}
      for i = 1, 37 do per[cpu][i] = cpu * 1000 + i end
    end
    assert(p:update(5, per))
    local want = {}
    for i = 1, 37 do
      want[i] = 0
      for cpu = 1, NCPUS do want[i] = want[i] + p:lookup(5)[cpu][i] end
    end
    assert.are.same(want, p:lookup_fn{ percpu = "sum" }(5))
    assert.are.same(want, p:lookup(5, { percpu = "sum" }))
    local t = {}
    assert.are.same(per, p:lookup_fn{ into = t }(5))
    assert.is_nil(p:lookup_fn{ percpu = "max" }(6))
  end)

  it("binds the options when made: the table changed afterwards changes nothing", function()
    local m = open_map("percpu_hash")
    assert(m:update(1, per_cpu(1)))
    local opts = { percpu = "sum" }
    local get = m:lookup_fn(opts)
    opts.percpu = "max"
    opts.colour = "red"
    assert.are.equal(reduce(per_cpu(1), "sum"), get(1))
    -- and the into table is the one given then, kept alive by get alone
    local into = m:lookup_fn{ into = {} }
    collectgarbage()
    collectgarbage()
    local t = into(1)
    assert.are.same(per_cpu(1), t)
    assert.are.equal(t, into(1))
  end)

  it("reads the map's shape on each call: a later m:codec{} applies", function()
    local m = open_map("percpu_array", 4)
    local vals = {}
    for cpu = 1, NCPUS do vals[cpu] = cpu % 2 == 1 and 2 ^ 64 - 5 * cpu or 3 * cpu end
    if math.type == nil then -- LuaJIT: u64 beyond 2^53 as decimal text
      for cpu = 1, NCPUS do
        if cpu % 2 == 1 then vals[cpu] = "18446744073709551" .. string.format("%03d", 616 - 5 * cpu) end
      end
      m:codec{ int64 = "string" }
    else
      for cpu = 1, NCPUS do vals[cpu] = math.tointeger(vals[cpu]) or -5 * cpu end
    end
    assert(m:update(0, vals))
    local min = m:lookup_fn{ percpu = "min" }
    local as_u64 = min(0)
    m:codec{ value = "i64" } -- the same bytes as signed: the smallest is now a negative one
    local as_i64 = min(0)
    local odd = NCPUS % 2 == 1 and NCPUS or NCPUS - 1 -- the last CPU written a negative i64
    assert.are.equal(-5 * odd, as_i64)
    assert.are_not.equal(as_u64, as_i64)
  end)

  it("keeps the map open while get lives, and lets both go together", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [3] = 33 } }
    collectgarbage()
    collectgarbage()
    local fds = H.fd_count_min()
    local get = ebpf.open(path, { key = "u32", value = "u64" }):lookup_fn()
    collectgarbage()
    collectgarbage()
    assert.are.equal(33, get(3)) -- the handle's only reference is get
    assert.are.equal(fds + 1, H.fd_count_min())
    get = nil
    if jit then jit.flush() end
    for _ = 1, 4 do collectgarbage() end
    assert.are.equal(fds, H.fd_count_min())
  end)

  it("raises after m:close(), as m:lookup does", function()
    local m = open_map("hash")
    assert(m:update(1, 1))
    local get = m:lookup_fn()
    m:close()
    local err = raised(get, 1)
    assert.are.equal("closed", err.class)
    assert.are.equal(tostring(raised(m.lookup, m, 1)), tostring(err))
  end)

  describe("bad input", function()
    it("refuses bad options when get is made, as m:lookup words them", function()
      local m = open_map("percpu_hash")
      local h = open_map("hash")
      for _, case in ipairs{
        { m, { percpu = "avg" }, [["sum", "min" or "max" expected, got "avg"]] },
        { m, { into = "t" }, "bad option 'into': a table" },
        { m, { into = {}, percpu = "sum" }, "'percpu' and 'into' exclude each other" },
        { m, { sum = true }, "unknown field 'sum' in lookup options" },
        { m, { lock = 1 }, "bad option 'lock': a boolean expected, got number" },
        { m, "sum", "table expected, got string" },
        { h, { percpu = "sum" }, "option 'percpu' is for per-CPU maps" },
        { h, { into = {} }, "option 'into' is for per-CPU maps" },
      } do
        local err = tostring(raised(case[1].lookup_fn, case[1], case[2]))
        assert.truthy(err:find(case[3], 1, true), err)
        -- m:lookup says the same of the same options
        if type(case[2]) == "table" then
          local err2 = tostring(raised(case[1].lookup, case[1], 1, case[2]))
          assert.truthy(err2:find(case[3], 1, true), err2)
        end
      end
      mentions(raised(m.lookup_fn, {}), { "Map expected" })
    end)

    it("refuses a bloom filter, which has no values to look up", function()
      local f = track(ebpf.create{ type = "bloom_filter", value = "u32", max_entries = 8 })
      mentions(raised(f.lookup_fn, f), { "bloom filter", "f:contains(value)" })
    end)

    it("names the key as argument #1 and refuses a second argument", function()
      local m = open_map("percpu_hash")
      assert(m:update(1, per_cpu(1)))
      local sum = m:lookup_fn{ percpu = "sum" }
      local err = tostring(raised(sum, "x"))
      assert.truthy(err:find("bad argument #1", 1, true), err)
      assert.truthy(err:find("key: u32", 1, true), err)
      mentions(raised(sum), { "bad argument #1", "got no value" })
      mentions(raised(sum, 1, { percpu = "max" }),
        { "takes the key only", "got 2 arguments" })
      assert.are.equal(reduce(per_cpu(1), "sum"), sum(1)) -- and still works
    end)
  end)
end)

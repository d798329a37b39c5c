-- spec/percpu_reduce_spec.lua: per-CPU values read without a table per CPU:
-- m:lookup(k, { percpu = "sum" | "min" | "max" }), m:lookup(k, { into = t }),
-- and percpu = on pairs, dump, drain and read_batch; then dump's presized
-- result arrays (arrays, hashes small and large, empty maps, a map changing
-- during the walk). The oracle is bpftool's JSON dump of each CPU's bytes,
-- reduced here byte by byte (no Lua arithmetic that could round), and for
-- the walks bpftool's set of keys. 5.1 syntax: runs on every Lua.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local le, hex, raised = helpers.le, helpers.hex, helpers.raised
local NCPUS = ebpf.ncpus()
local INTEGERS = math.type ~= nil -- 5.3+: u64 as 64-bit integers; else LuaJIT's 2^53 rule

-- ------------------------------------------------ byte arithmetic (the oracle)

-- a + b, little-endian unsigned byte strings of one width, modulo 2^(8 * width)
local function le_add(a, b)
  local out, carry = {}, 0
  for i = 1, #a do
    local s = a:byte(i) + b:byte(i) + carry
    out[i] = string.char(s % 256)
    carry = s >= 256 and 1 or 0
  end
  return table.concat(out)
end

-- -1, 0, 1 as little-endian a < = > b; signed: the top bit is the sign
local function le_cmp(a, b, signed)
  local n = #a
  if signed then
    local sa, sb = a:byte(n) >= 128, b:byte(n) >= 128
    if sa ~= sb then return sa and -1 or 1 end
  end
  for i = n, 1, -1 do
    if a:byte(i) ~= b:byte(i) then return a:byte(i) < b:byte(i) and -1 or 1 end
  end
  return 0
end

-- the decimal text of a little-endian unsigned byte string
local function le_dec(bytes)
  local digits = {}
  local t = {}
  for i = 1, #bytes do t[i] = bytes:byte(i) end
  repeat
    local rem, nonzero = 0, false
    for i = #t, 1, -1 do
      local cur = rem * 256 + t[i]
      t[i] = math.floor(cur / 10)
      rem = cur % 10
      if t[i] ~= 0 then nonzero = true end
    end
    table.insert(digits, 1, tostring(rem))
  until not nonzero
  return table.concat(digits)
end

-- the reduction of a list of per-CPU byte strings, as bytes
local function reduce_bytes(list, how, signed)
  local acc = list[1]
  for i = 2, #list do
    local v = list[i]
    if how == "sum" then
      acc = le_add(acc, v)
    elseif how == "min" then
      if le_cmp(v, acc, signed) < 0 then acc = v end
    elseif le_cmp(v, acc, signed) > 0 then
      acc = v
    end
  end
  return acc
end

-- the Lua value luaebpf must give for these u64/i64 bytes: the integer with
-- those bits on 5.3+, a number up to 2^53 or else the decimal string (with
-- int64 = "string") on LuaJIT
local function u64_value(bytes)
  if INTEGERS then return (string.unpack("<i8", bytes)) end
  local dec = le_dec(bytes)
  if #dec < 16 or tonumber(dec) <= 2 ^ 53 then return tonumber(dec) end
  return dec
end

local function uint_value(bytes) -- up to 4 bytes: exact everywhere
  local v = 0
  for i = #bytes, 1, -1 do v = v * 256 + bytes:byte(i) end
  return v
end

local function int_value(bytes)
  local v = uint_value(bytes)
  if bytes:byte(#bytes) >= 128 then v = v - 2 ^ (8 * #bytes) end
  return v
end

-- -------------------------------------------------------------- fixtures

describe("per-CPU reads without a table per CPU", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  local function open_map(mtype, vsize, value_codec, opts)
    local path = fs:bpftool_map{ type = mtype, key = 4, value = vsize, entries = opts and
                                 opts.entries or 64 }
    local o = { access = "rw", key = "u32", value = value_codec }
    if opts and opts.int64 then o.int64 = opts.int64 end
    local m = ebpf.open(path, o)
    finally(function() m:close() end)
    return m, path
  end

  -- bpftool's per-CPU bytes of key k (an array of NCPUS strings of value_size)
  local function oracle(path, k)
    local per = helpers.dump(path)[le(k, 4)]
    assert.is_table(per, "bpftool has no key " .. k)
    assert.are.equal(NCPUS, #per)
    return per
  end

  -- per-CPU u64 values that use the high bits, differ per CPU and per key
  local function u64_list(k)
    local t = {}
    for cpu = 1, NCPUS do
      -- 2^62 + ..., distinct, and their sum crosses 2^63 on 2+ CPUs
      t[cpu] = INTEGERS and math.tointeger(2 ^ 62 + k * 1000003 + cpu * 7919)
               or (k * 1000003 + cpu * 7919)
    end
    return t
  end

  for _, mtype in ipairs{ "percpu_hash", "percpu_array", "lru_percpu_hash" } do
    describe(mtype, function()
      it("reduces u64 values to their sum, min and max as bpftool's bytes do", function()
        local m, path = open_map(mtype, 8, "u64", { int64 = "string" })
        for k = 1, 5 do assert(m:update(k, u64_list(k))) end
        for k = 1, 5 do
          local per = oracle(path, k)
          for _, how in ipairs{ "sum", "min", "max" } do
            assert.are.equal(u64_value(reduce_bytes(per, how)), m:lookup(k, { percpu = how }),
              how .. " of key " .. k)
          end
        end
      end)

      it("fills the caller's table with every CPU's value and returns it", function()
        local m, path = open_map(mtype, 8, "u64", { int64 = "string" })
        assert(m:update(3, u64_list(3)))
        local per = oracle(path, 3)
        local t = { extra = "kept" }
        local got = m:lookup(3, { into = t })
        assert.are.equal(t, got)
        for cpu = 1, NCPUS do assert.are.equal(u64_value(per[cpu]), t[cpu]) end
        assert.are.equal("kept", t.extra)
        assert.is_nil(t[NCPUS + 1])
        -- the same table again: overwritten in place
        assert(m:update(3, u64_list(4)))
        assert.are.equal(t, m:lookup(3, { into = t }))
        per = oracle(path, 3)
        for cpu = 1, NCPUS do assert.are.equal(u64_value(per[cpu]), t[cpu]) end
      end)

      it("reduces every entry of pairs, dump, drain and read_batch as lookup does", function()
        local m, path = open_map(mtype, 8, "u64", { int64 = "string" })
        local want = {}
        for k = 0, 9 do assert(m:update(k, u64_list(k))) end
        local dump = helpers.dump(path)
        for kb, per in pairs(dump) do want[uint_value(kb)] = u64_value(reduce_bytes(per, "sum")) end
        local function check(what, ks, vs)
          local n = 0
          for i, k in ipairs(ks) do
            assert.are.equal(want[k], vs[i], what .. ": key " .. k)
            n = n + 1
          end
          assert.are.equal(#ks, #vs)
          local expect_n = 0
          for _ in pairs(want) do expect_n = expect_n + 1 end
          assert.are.equal(expect_n, n, what .. ": entries")
        end
        for _, batch in ipairs{ true, false } do
          local ks, vs = {}, {}
          for k, v in m:pairs{ percpu = "sum", batch = batch } do
            ks[#ks + 1], vs[#vs + 1] = k, v
          end
          check("pairs batch=" .. tostring(batch), ks, vs)
          check("dump batch=" .. tostring(batch), m:dump{ percpu = "sum", batch = batch })
        end
        local ks, vs, cur = m:read_batch(nil, 4, { percpu = "sum" })
        while cur do
          local k2, v2
          k2, v2, cur = m:read_batch(cur, 4, { percpu = "sum" })
          for i = 1, #k2 do ks[#ks + 1], vs[#vs + 1] = k2[i], v2[i] end
        end
        check("read_batch", ks, vs)
        if mtype ~= "percpu_array" then -- arrays cannot delete
          check("drain", m:drain{ percpu = "sum" })
          assert.are.same({}, (m:dump()))
        end
      end)

      it("answers nil for an absent key, leaving the caller's table alone", function()
        if mtype == "percpu_array" then return end -- every index exists
        local m = open_map(mtype, 8, "u64")
        local t = { 1, 2, 3 }
        assert.is_nil(m:lookup(7, { into = t }))
        assert.are.same({ 1, 2, 3 }, t)
        assert.is_nil(m:lookup(7, { percpu = "sum" }))
      end)
    end)
  end

  it("wraps a u32 sum at 2^32 and compares i32 values as signed", function()
    local m, path = open_map("percpu_array", 4, "u32")
    local vals = {}
    for cpu = 1, NCPUS do vals[cpu] = 4294967295 - cpu end -- near 2^32: the sum wraps
    assert(m:update(0, vals))
    local per = oracle(path, 0)
    assert.are.equal(uint_value(reduce_bytes(per, "sum")), m:lookup(0, { percpu = "sum" }))
    assert.are.equal(uint_value(reduce_bytes(per, "max")), m:lookup(0, { percpu = "max" }))
    m:codec{ value = "i32" }
    for cpu = 1, NCPUS do vals[cpu] = cpu % 2 == 1 and -1000 * cpu or 1000 * cpu end
    assert(m:update(1, vals))
    per = oracle(path, 1)
    for _, how in ipairs{ "sum", "min", "max" } do
      assert.are.equal(int_value(reduce_bytes(per, how, true)), m:lookup(1, { percpu = how }), how)
    end
  end)

  it("wraps a u64 sum at 2^64 (5.3+: the integer with those bits; LuaJIT: 2^53 rule)", function()
    local m, path = open_map("percpu_hash", 8, "u64", { int64 = "string" })
    local vals = {}
    for cpu = 1, NCPUS do vals[cpu] = INTEGERS and -1 - cpu or "18446744073709551" .. (600 + cpu) end
    assert(m:update(1, vals))
    local per = oracle(path, 1)
    local sum = reduce_bytes(per, "sum")
    assert.are.equal(u64_value(sum), m:lookup(1, { percpu = "sum" }))
    assert.are.equal(u64_value(reduce_bytes(per, "max")), m:lookup(1, { percpu = "max" }))
    if not INTEGERS then
      -- without int64 = "string", a value beyond 2^53 is an error naming it, never a rounded number
      m:codec{ int64 = "number" }
      local err = raised(m.lookup, m, 1, { percpu = "max" })
      assert.truthy(err:find("2^53", 1, true), err)
      -- into decodes every CPU's value before it writes: the table stays as it was
      -- even when CPU 0's value fits and a later CPU's does not
      local two = {}
      for cpu = 1, NCPUS do two[cpu] = cpu == 1 and 5 or "18446744073709551615" end
      m:codec{ int64 = "string" }
      assert(m:update(2, two))
      m:codec{ int64 = "number" }
      local t = { "a", "b", n = 1 }
      err = raised(m.lookup, m, 2, { into = t })
      assert.truthy(err:find("2^53", 1, true), err)
      assert.are.same({ "a", "b", n = 1 }, t)
    end
  end)

  it("keeps CPU 0's value of a decoded field (an address, an errno): no arithmetic on meaning",
    function()
      local m = ebpf.create{ type = "percpu_hash", key = "u32", max_entries = 4,
                             value = { { "addr", "ipv4" }, { "err", "errno" }, { "n", "u32" } } }
      finally(function() m:close() end)
      local vals = {}
      for cpu = 1, NCPUS do
        vals[cpu] = { addr = "10.0.0." .. cpu, err = cpu == 1 and "ENOENT" or "EPERM", n = cpu }
      end
      assert(m:update(1, vals))
      for _, how in ipairs{ "sum", "min", "max" } do
        local v = m:lookup(1, { percpu = how })
        assert.are.equal("10.0.0.1", v.addr, how)
        assert.are.equal("ENOENT", v.err, how)
        local n = how == "sum" and NCPUS * (NCPUS + 1) / 2 or how == "min" and 1 or NCPUS
        assert.are.equal(n, v.n, how)
      end
    end)

  it("reduces a struct field by field; bool, char[] and enum-like fields keep CPU 0's", function()
    local codec = { { "count", "u64" }, { "delta", "i32" }, { "port", "be16" }, { "flag", "bool" },
                    { "tag", "char[5]" }, { "ratio", "f64" }, { "slots", { "u32", 3 } } }
    -- 8 + 4 + 2 + 1 + 5 (= 20) + pad 4 + 8 + 12 = 44, padded to 48
    local m, path = open_map("percpu_hash", 48, codec)
    local vals = {}
    for cpu = 1, NCPUS do
      vals[cpu] = { count = cpu * 1000 + 5, delta = (cpu % 2 == 1) and -7 * cpu or 9 * cpu,
                    port = 8000 + 300 * ((cpu * 5) % 7), flag = cpu == 1,
                    tag = "cpu" .. cpu, ratio = cpu * 0.5, slots = { cpu, 10 * cpu, 100 - cpu } }
    end
    assert(m:update(2, vals))
    local per = oracle(path, 2)
    local function field(how, off, size, signed)
      local list = {}
      for cpu = 1, NCPUS do list[cpu] = per[cpu]:sub(off + 1, off + size) end
      return reduce_bytes(list, how, signed)
    end
    local function be_field(how, off)
      local list = {}
      for cpu = 1, NCPUS do list[cpu] = per[cpu]:sub(off + 1, off + 2):reverse() end
      return reduce_bytes(list, how)
    end
    for _, how in ipairs{ "sum", "min", "max" } do
      local v = m:lookup(2, { percpu = how })
      assert.are.equal(u64_value(field(how, 0, 8)), v.count, how .. " count")
      assert.are.equal(int_value(field(how, 8, 4, true)), v.delta, how .. " delta")
      assert.are.equal(uint_value(be_field(how, 12)), v.port, how .. " port")
      assert.are.equal(per[1]:byte(15) ~= 0, v.flag, how .. " flag: CPU 0's")
      assert.are.equal((per[1]:sub(16, 20):gsub("%z.*", "")), v.tag, how .. " tag: CPU 0's")
      for i = 1, 3 do
        assert.are.equal(uint_value(field(how, 32 + 4 * (i - 1), 4)), v.slots[i], how .. " slot " .. i)
      end
      -- floats: the values written are exact in binary, so Lua's arithmetic is exact too
      local r = vals[1].ratio
      for cpu = 2, NCPUS do
        local x = vals[cpu].ratio
        r = how == "sum" and r + x or how == "min" and math.min(r, x) or math.max(r, x)
      end
      assert.are.equal(r, v.ratio, how .. " ratio")
    end
    -- into: struct tables, one per CPU, as a plain lookup gives
    local t = {}
    m:lookup(2, { into = t })
    assert.are.same(m:lookup(2), t)
  end)

  describe("bad options", function()
    it("refuses percpu and into on a map that is not per-CPU, naming the option", function()
      local m = open_map("hash", 8, "u64")
      assert(m:update(1, 1))
      local err = raised(m.lookup, m, 1, { percpu = "sum" })
      assert.truthy(err:find("option 'percpu' is for per-CPU maps", 1, true), err)
      assert.truthy(err:find("is a hash", 1, true), err)
      err = raised(m.lookup, m, 1, { into = {} })
      assert.truthy(err:find("option 'into' is for per-CPU maps", 1, true), err)
      for _, meth in ipairs{ "dump", "pairs" } do
        err = raised(m[meth], m, { percpu = "sum" })
        assert.truthy(err:find("option 'percpu' is for per-CPU maps", 1, true), err)
      end
      err = raised(m.read_batch, m, nil, 4, { percpu = "sum" })
      assert.truthy(err:find("option 'percpu' is for per-CPU maps", 1, true), err)
    end)

    it("names the reductions when given another, and the type when into is not a table", function()
      local m = open_map("percpu_hash", 8, "u64")
      assert(m:update(1, 1))
      local err = raised(m.lookup, m, 1, { percpu = "avg" })
      assert.truthy(err:find([["sum", "min" or "max" expected, got "avg"]], 1, true), err)
      err = raised(m.lookup, m, 1, { percpu = 1 })
      assert.truthy(err:find("expected, got number", 1, true), err)
      err = raised(m.dump, m, { percpu = "mean" })
      assert.truthy(err:find([[got "mean"]], 1, true), err)
      err = raised(m.lookup, m, 1, { into = "t" })
      assert.truthy(err:find("bad option 'into': a table", 1, true), err)
      assert.truthy(err:find("got string", 1, true), err)
      err = raised(m.lookup, m, 1, { into = {}, percpu = "sum" })
      assert.truthy(err:find("'percpu' and 'into' exclude each other", 1, true), err)
      err = raised(m.lookup, m, 1, { sum = true })
      assert.truthy(err:find("unknown field 'sum' in lookup options", 1, true), err)
      err = raised(m.keys, m, { percpu = "sum" })
      assert.truthy(err:find("unknown field 'percpu'", 1, true), err)
      err = raised(m.read_batch, m, nil, 4, { into = {} })
      assert.truthy(err:find("unknown field 'into'", 1, true), err)
      -- lock still works beside them, and a bad lock is still named
      err = raised(m.lookup, m, 1, { lock = "yes", percpu = "sum" })
      assert.truthy(err:find("bad option 'lock'", 1, true), err)
      assert.are.equal(NCPUS, m:lookup(1, { lock = false, percpu = "sum" }))
    end)

    it("reads the options table strictly and raw, whatever its size or metatable", function()
      local m = open_map("percpu_hash", 8, "u64")
      local per = {}
      for cpu = 1, NCPUS do per[cpu] = cpu * 10 end
      assert(m:update(1, per))
      local sum = NCPUS * (NCPUS + 1) / 2 * 10
      -- an unknown key raises wherever the walk meets it, beside known ones
      for _, opts in ipairs{ { percpu = "sum", colour = "red" }, { colour = "red", into = {} },
                             { lock = false, percpu = "sum", a = 1, b = 2, c = 3 } } do
        local err = raised(m.lookup, m, 1, opts)
        assert.truthy(err:find("unknown field '[abc]' in lookup options")
                      or err:find("unknown field 'colour' in lookup options", 1, true), err)
        assert.truthy(err:find("expected one of: lock percpu into", 1, true), err)
      end
      -- a key that is not a string is named by its type
      local err = raised(m.lookup, m, 1, { "sum" })
      assert.truthy(err:find("unknown field 'number' in lookup options", 1, true), err)
      err = raised(m.lookup, m, 1, { [true] = 1 })
      assert.truthy(err:find("unknown field 'boolean' in lookup options", 1, true), err)
      -- not a table at all: argument #3 (#2 counting from the method's self)
      err = raised(m.lookup, m, 1, "sum")
      assert.truthy(err:find("table expected, got string", 1, true), err)
      -- options come from the table's own entries: an __index is never asked,
      -- neither for a reduction nor for a key it would refuse
      local asked = 0
      local inherit = setmetatable({}, { __index = function() asked = asked + 1; return "sum" end })
      assert.are.same(per, m:lookup(1, inherit))
      assert.are.equal(0, asked)
      local sub = setmetatable({ percpu = "sum" }, { __index = { bogus = true } })
      assert.are.equal(sum, m:lookup(1, sub))
      -- the same table reused after a change is read afresh, never cached
      local opts = { percpu = "sum" }
      assert.are.equal(sum, m:lookup(1, opts))
      opts.percpu = "max"
      assert.are.equal(NCPUS * 10, m:lookup(1, opts))
      opts.percpu, opts.into = nil, {}
      assert.are.same(per, m:lookup(1, opts))
      opts.colour = "red"
      err = raised(m.lookup, m, 1, opts)
      assert.truthy(err:find("unknown field 'colour'", 1, true), err)
      opts.colour, opts.into, opts.percpu = nil, nil, "min"
      assert.are.equal(10, m:lookup(1, opts))
      -- wrong types of the option values, each named
      err = raised(m.lookup, m, 1, { percpu = true })
      assert.truthy(err:find("bad option 'percpu'", 1, true) and err:find("got boolean", 1, true), err)
      err = raised(m.lookup, m, 1, { into = 5 })
      assert.truthy(err:find("bad option 'into'", 1, true) and err:find("got number", 1, true), err)
      err = raised(m.lookup, m, 1, { lock = 1 })
      assert.truthy(err:find("bad option 'lock': a boolean expected, got number", 1, true), err)
      -- into fills raw: a __newindex on the caller's table is not called
      local t = setmetatable({}, { __newindex = function() error("__newindex called") end })
      assert.are.equal(t, m:lookup(1, { into = t }))
      local got = {}
      for i = 1, NCPUS do got[i] = rawget(t, i) end
      assert.are.same(per, got)
      -- the into table is the only reference left: it stays alive through the call
      assert.are.same(per, m:lookup(1, { into = {} }))
      -- an empty options table is a plain lookup
      assert.are.same(per, m:lookup(1, {}))
    end)
  end)
end)

-- ---------------------------------------------------------- presized dumps

describe("dump's result arrays", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- dump (and drain) against bpftool's keys and values; opts as dump's
  local function check_dump(m, path, opts, what)
    local want, n = helpers.dump(path)
    local ks, vs = m:dump(opts)
    assert.are.equal(n, #ks, what .. ": entries")
    assert.are.equal(#ks, #vs, what .. ": keys and values")
    local seen = {}
    for i = 1, #ks do
      local kb = le(ks[i], 4)
      assert.is_nil(seen[kb], what .. ": key " .. ks[i] .. " twice")
      seen[kb] = true
      assert.are.equal(hex(want[kb]), hex(le(vs[i], 8)), what .. ": value of " .. ks[i])
    end
    -- no hole and nothing past the end: a presized array holds exactly the entries
    local count = 0
    for _ in pairs(ks) do count = count + 1 end
    assert.are.equal(#ks, count, what .. ": keys array has extra slots filled")
  end

  it("holds exactly the entries of hashes empty, small and large, in any batch size", function()
    for _, case in ipairs{ { max = 64, n = 0 }, { max = 64, n = 1 }, { max = 64, n = 64 },
                           { max = 20000, n = 300 }, { max = 6000, n = 6000 },
                           { max = 20000, n = 5000 } } do
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = case.max }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      local rows = {}
      for k = 1, case.n do rows[k] = { le(k * 7, 4), le(k * 3 + 1, 8) } end
      if case.n > 0 then helpers.bpftool_fill(path, rows) end
      for _, batch in ipairs{ "default", 1, 7, 256 } do
        local opts = batch ~= "default" and { n = batch } or nil
        check_dump(m, path, opts, string.format("%d of %d, batch %s", case.n, case.max,
          tostring(batch)))
      end
      check_dump(m, path, { batch = false }, "next_key")
      m:close()
    end
  end)

  it("holds exactly max_entries for an array, and drains a hash to empty", function()
    local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 3000 }
    local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    assert(m:update(2999, 5))
    check_dump(m, path, nil, "array")
    m:close()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 5000 }
    m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    local rows = {}
    for k = 1, 4000 do rows[k] = { le(k, 4), le(k + 1, 8) } end
    helpers.bpftool_fill(path, rows)
    local ks, vs = m:drain{ n = 100 }
    assert.are.equal(4000, #ks)
    assert.are.equal(4000, #vs)
    for i = 1, #ks do assert.are.equal(ks[i] + 1, vs[i]) end
    local _, left = helpers.dump(path)
    assert.are.equal(0, left)
    m:close()
  end)

  it("yields every stable key once while another process inserts and deletes", function()
    local churn_bin = "spec/churn"
    local f = io.open(churn_bin)
    if not f then return pending("spec/churn not built (make test builds it)") end
    f:close()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 4096 }
    local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64", int64 = "string" })
    finally(function() m:close() end)
    local STABLE, LO, HI = 500, 1000, 3000
    for k = 0, STABLE - 1 do assert(m:update(k, k)) end
    local churn = assert(io.popen(string.format("%s %s %d %d %g", churn_bin, path, LO, HI, 1.5)))
    local deadline, reads = os.time() + 2, 0
    repeat
      for _, batch in ipairs{ 16, 1024 } do
        local ks, vs = m:dump{ n = batch }
        assert.are.equal(#ks, #vs)
        local seen = {}
        for i, k in ipairs(ks) do
          assert.is_nil(seen[k], "key " .. k .. " twice")
          seen[k] = true
          assert.is_true(k < STABLE or (k >= LO and k < HI), "unexpected key " .. k)
          if k < STABLE then assert.are.equal(k, vs[i]) end
        end
        for k = 0, STABLE - 1 do assert.is_true(seen[k], "stable key " .. k .. " missing") end
        reads = reads + 1
      end
    until os.time() > deadline
    local out = churn:read("*a")
    churn:close()
    assert.truthy(out:find("inserts"), out)
    assert.is_true(reads >= 2) -- one pass at least, both batch sizes
  end)
end)

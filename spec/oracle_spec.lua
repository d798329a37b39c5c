-- spec/oracle_spec.lua: round trips with bpftool as the independent oracle.
-- bpftool creates and fills, luaebpf reads: every entry equals bpftool's dump.
-- luaebpf writes (access "rw"), bpftool dumps: every byte is what we wrote.
-- Hash (u32 -> u64), array, struct values and per-CPU maps. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local uint, sorted_keys = H.uint, H.sorted_keys

--- every (key, value) luaebpf walks, keyed by the key's bytes; and the count
local function walk(m, key_size)
  local got, n = {}, 0
  for k, v in m:pairs() do
    local kb = type(k) == "string" and k or H.le(k, key_size)
    assert.is_nil(got[kb], "a key was walked twice")
    got[kb] = v
    n = n + 1
  end
  return got, n
end

-- every handle a test makes goes through track(); after_each closes them all
local track, close_tracked = H.tracker()

local STRUCT = { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" } }

--- the C layout of STRUCT: pid at 0, comm at 4, 4 bytes of padding, count at 24
local function struct_bytes(pid, comm, count)
  return H.le(pid, 4) .. comm .. string.rep("\0", 16 - #comm) .. "\0\0\0\0" .. H.le(count, 8)
end

describe("bpftool writes, luaebpf reads", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("reads every entry of a u32 -> u64 hash as bpftool dumps it", function()
    local fill = { [0] = 0, [1] = 1, [7] = 1099511627781, [65536] = 4503599627370497,
                   [4294967295] = 4294967296 }
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = fill }
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    local dump, n = H.dump(path)
    assert.are.equal(5, n)
    local got, count = walk(m, 4)
    assert.are.equal(n, count)
    assert.are.same(sorted_keys(dump), sorted_keys(got))
    for kb, vb in pairs(dump) do
      assert.are.equal(uint(vb), got[kb])
      assert.are.equal(uint(vb), m:lookup(uint(kb)))
    end
    for k, v in pairs(fill) do assert.are.equal(v, m:lookup(k)) end
  end)

  it("reads u64 values at and above 2^63 as the wrapped Lua integers (5.3+)", function()
    if not math.maxinteger then return pending("needs 64-bit Lua integers (5.3+)") end
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8,
      fill = { [1] = "\255\255\255\255\255\255\255\127", [2] = "\0\0\0\0\0\0\0\128",
               [3] = "\255\255\255\255\255\255\255\255" } }
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    assert.are.equal(math.maxinteger, m:lookup(1))
    assert.are.equal(math.mininteger, m:lookup(2))
    assert.are.equal(-1, m:lookup(3))
  end)

  it("reads every index of an array as bpftool dumps it", function()
    local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8,
      fill = { [0] = 100, [3] = 303, [7] = 707 } }
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    local dump, n = H.dump(path)
    assert.are.equal(8, n)
    local got, count = walk(m, 4)
    assert.are.equal(8, count)
    for kb, vb in pairs(dump) do
      assert.are.equal(uint(vb), got[kb])
      assert.are.equal(uint(vb), m:lookup(uint(kb)))
    end
    assert.are.equal(303, m:lookup(3))
    assert.are.equal(0, m:lookup(4))
  end)

  it("decodes struct values laid out as C does, as bpftool dumps them", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 32, fill = {
      [1] = struct_bytes(100, "bash", 5),
      [2] = struct_bytes(4294967295, "sixteen_chars_ok", 1099511627776),
      [3] = struct_bytes(0, "", 0) } }
    local m = track(ebpf.open(path, { key = "u32", value = STRUCT }))
    local dump, n = H.dump(path)
    assert.are.equal(3, n)
    for kb, vb in pairs(dump) do
      local v = m:lookup(uint(kb))
      assert.are.equal(uint(vb:sub(1, 4)), v.pid)
      assert.are.equal((vb:sub(5, 20):gsub("%z.*$", "")), v.comm)
      assert.are.equal(uint(vb:sub(25, 32)), v.count)
    end
    assert.are.same({ pid = 100, comm = "bash", count = 5 }, m:lookup(1))
    assert.are.same({ pid = 4294967295, comm = "sixteen_chars_ok", count = 1099511627776 },
      m:lookup(2))
    assert.are.same({ pid = 0, comm = "", count = 0 }, m:lookup(3))
  end)

  it("decodes a struct of be16, u8 and i32 fields, as bpftool dumps it", function()
    local spec = { { "port", "be16" }, { "proto", "u8" }, { "delta", "i32" } }
    -- port 0x1f90 (8080) big-endian at 0, proto at 2, padding at 3, delta -2 at 4
    local bytes = "\31\144" .. "\6" .. "\0" .. "\254\255\255\255"
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [9] = bytes } }
    local m = track(ebpf.open(path, { key = "u32", value = spec }))
    assert.are.equal(bytes, H.dump(path)[H.le(9, 4)])
    assert.are.same({ port = 8080, proto = 6, delta = -2 }, m:lookup(9))
  end)

  it("reads every CPU's value of a percpu_hash as bpftool dumps it", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 8,
      fill = { [1] = 5, [2] = 1099511627776 } }
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    local dump, n = H.dump(path)
    assert.are.equal(2, n)
    local got, count = walk(m, 4)
    assert.are.equal(2, count)
    for kb, per in pairs(dump) do
      assert.are.equal(ebpf.ncpus(), #per)
      assert.are.equal(#per, #got[kb])
      for cpu = 1, #per do
        assert.are.equal(uint(per[cpu]), got[kb][cpu])
        assert.are.equal(uint(per[cpu]), m:lookup(uint(kb))[cpu])
      end
    end
  end)
end)

describe("luaebpf writes, bpftool reads", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("writes a u32 -> u64 hash that bpftool dumps entry for entry", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
    local want = { [0] = 9, [1] = 0, [300] = 4503599627370497, [4294967295] = 4294967295 }
    for k, v in pairs(want) do assert.is_true(m:update(k, v)) end
    local dump, n = H.dump(path)
    assert.are.equal(4, n)
    for k, v in pairs(want) do assert.are.equal(H.le(v, 8), dump[H.le(k, 4)]) end
  end)

  it("writes u64 values at and above 2^63 from negative Lua integers (5.3+)", function()
    if not math.maxinteger then return pending("needs 64-bit Lua integers (5.3+)") end
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 8 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
    assert.is_true(m:update(1, math.maxinteger))
    assert.is_true(m:update(2, math.mininteger))
    assert.is_true(m:update(3, -1))
    local dump = H.dump(path)
    assert.are.equal("\255\255\255\255\255\255\255\127", dump[H.le(1, 4)])
    assert.are.equal("\0\0\0\0\0\0\0\128", dump[H.le(2, 4)])
    assert.are.equal("\255\255\255\255\255\255\255\255", dump[H.le(3, 4)])
  end)

  it("writes every index of an array that bpftool dumps", function()
    local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
    for i = 0, 7 do assert.is_true(m:update(i, i * 1000 + 1)) end
    local dump, n = H.dump(path)
    assert.are.equal(8, n)
    for i = 0, 7 do assert.are.equal(H.le(i * 1000 + 1, 8), dump[H.le(i, 4)]) end
  end)

  it("writes struct values in C layout with zeroed padding, as bpftool dumps", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 32 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = STRUCT }))
    assert.is_true(m:update(1, { pid = 4242, comm = "nginx", count = 1099511627776 }))
    assert.is_true(m:update(2, { pid = 1, comm = "sixteen_chars_ok", count = 0 }))
    assert.is_true(m:update(3, { pid = 7 })) -- missing fields stay zero
    local dump, n = H.dump(path)
    assert.are.equal(3, n)
    assert.are.equal(struct_bytes(4242, "nginx", 1099511627776), dump[H.le(1, 4)])
    assert.are.equal(struct_bytes(1, "sixteen_chars_ok", 0), dump[H.le(2, 4)])
    assert.are.equal(struct_bytes(7, "", 0), dump[H.le(3, 4)])
  end)

  it("overwrites a longer string with a shorter one, leaving no stale bytes", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 32 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = STRUCT }))
    assert.is_true(m:update(1, { pid = 1, comm = "a_long_name_here", count = 1 }))
    assert.is_true(m:update(1, { pid = 1, comm = "sh", count = 1 }))
    assert.are.equal(struct_bytes(1, "sh", 1), H.dump(path)[H.le(1, 4)])
  end)

  it("writes each CPU's value of a percpu_hash, as bpftool dumps", function()
    local ncpus = ebpf.ncpus()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 8 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
    for k = 1, 3 do
      local vals = {}
      for cpu = 1, ncpus do vals[cpu] = k * 1000000 + cpu end
      assert.is_true(m:update(k, vals))
    end
    local dump, n = H.dump(path)
    assert.are.equal(3, n)
    for k = 1, 3 do
      local per = dump[H.le(k, 4)]
      assert.are.equal(ncpus, #per)
      for cpu = 1, ncpus do assert.are.equal(H.le(k * 1000000 + cpu, 8), per[cpu]) end
    end
  end)

  it("writes each CPU's 4-byte value of a percpu_array, as bpftool dumps", function()
    local ncpus = ebpf.ncpus()
    local path = fs:bpftool_map{ type = "percpu_array", key = 4, value = 4, entries = 3 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u32" }))
    local vals = {}
    for cpu = 1, ncpus do vals[cpu] = 4000000000 + cpu end
    assert.is_true(m:update(2, vals))
    local dump, n = H.dump(path)
    assert.are.equal(3, n)
    for cpu = 1, ncpus do
      assert.are.equal(H.le(4000000000 + cpu, 4), dump[H.le(2, 4)][cpu])
      assert.are.equal(H.le(0, 4), dump[H.le(1, 4)][cpu])
    end
  end)
end)

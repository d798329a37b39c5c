-- spec/percpu_spec.lua: per-CPU maps (percpu_hash, percpu_array,
-- lru_percpu_hash) with value sizes 4, 8 and 12: one value per possible CPU,
-- each in round_up(value_size, 8) bytes. bpftool is the oracle for what the
-- kernel holds; a small C helper, built here, writes and reads the raw per-CPU
-- buffer (padding included), which bpftool cannot. Then the aggregation
-- helpers ebpf.sum/min/max/avg, ebpf.snapshot and ebpf.delta. 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local le = helpers.le
local NCPUS = ebpf.ncpus()

local hex = helpers.hex

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function round8(n) return math.floor((n + 7) / 8) * 8 end

local raised = helpers.raised

-- the raw per-CPU helper: `pcpu PATH write KEYHEX BUFHEX` stores the whole
-- buffer (ncpus * round_up(value_size, 8) bytes) with bpf_map_update_elem;
-- `pcpu PATH read KEYHEX` prints it as hex
local HELPER_C = [[
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
static int unhex(const char *h, unsigned char *out, size_t n) {
    if (strlen(h) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) { unsigned v; sscanf(h + 2 * i, "%2x", &v); out[i] = v; }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int fd = bpf_obj_get(argv[1]);
    if (fd < 0) { perror("bpf_obj_get"); return 1; }
    struct bpf_map_info info; unsigned len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len)) { perror("info"); return 1; }
    int ncpus = libbpf_num_possible_cpus();
    size_t vb = (size_t)(info.value_size + 7) / 8 * 8 * ncpus;
    unsigned char key[64], *val = calloc(1, vb);
    if (unhex(argv[3], key, info.key_size)) { fprintf(stderr, "bad key\n"); return 2; }
    if (!strcmp(argv[2], "write")) {
        if (argc != 5 || unhex(argv[4], val, vb)) { fprintf(stderr, "value: %zu bytes\n", vb); return 2; }
        if (bpf_map_update_elem(fd, key, val, 0)) { perror("update"); return 1; }
        return 0;
    }
    if (bpf_map_lookup_elem(fd, key, val)) { perror("lookup"); return 1; }
    for (size_t i = 0; i < vb; i++) printf("%02x", val[i]);
    printf("\n");
    return 0;
}
]]

describe("per-CPU maps", function()
  local fs, helper, helper_err
  setup(function()
    fs = helpers.mount_bpffs()
    local dir = helpers.tmpdir("luaebpf_pcpu")
    local f = assert(io.open(dir .. "/pcpu.c", "w"))
    f:write(HELPER_C)
    f:close()
    local out, ok = helpers.sh(string.format("cc -O1 -o %s/pcpu %s/pcpu.c -lbpf", dir, dir))
    if ok then helper = dir .. "/pcpu" else helper_err = out end
    helpers.sh("rm -f " .. dir .. "/pcpu.c")
    fs.helper_dir = dir
  end)
  teardown(function()
    helpers.sh("rm -rf " .. fs.helper_dir)
    fs:unmount()
  end)

  local function raw_read(path, kbytes)
    return unhex((helpers.run(string.format("%s %s read %s", helper, path, hex(kbytes)))
      :gsub("%s+$", "")))
  end
  local function raw_write(path, kbytes, buf)
    helpers.run(string.format("%s %s write %s %s", helper, path, hex(kbytes), hex(buf)))
  end

  -- the value codecs under test, by value size, and a distinct value for (key, cpu)
  local SHAPES = {
    [4] = { codec = "u32", make = function(k, cpu) return k * 1000 + cpu end,
            bytes = function(v) return le(v, 4) end },
    [8] = { codec = "u64", make = function(k, cpu) return k * 2 ^ 33 + cpu end,
            bytes = function(v) return le(v, 8) end },
    [12] = { codec = { { "a", "u32" }, { "b", "u32" }, { "c", "u32" } },
             make = function(k, cpu) return { a = k, b = cpu, c = k * 100 + cpu } end,
             bytes = function(v) return le(v.a, 4) .. le(v.b, 4) .. le(v.c, 4) end },
  }
  -- 5.3+ reads u64 as integers: make the 8-byte values integers there
  if math.type then
    SHAPES[8].make = function(k, cpu) return math.tointeger(k * 2 ^ 33 + cpu) end
  end

  local TYPES = { "percpu_hash", "percpu_array", "lru_percpu_hash" }

  local function open_fixture(mtype, vsize, entries)
    local path = fs:bpftool_map{ type = mtype, key = 4, value = vsize, entries = entries or 16 }
    local shape = SHAPES[vsize]
    local m = ebpf.open(path, { access = "rw", key = "u32", value = shape and shape.codec or "raw" })
    finally(function() m:close() end)
    return m, path
  end

  local function per_cpu(vsize, k)
    local t = {}
    for cpu = 1, NCPUS do t[cpu] = SHAPES[vsize].make(k, cpu) end
    return t
  end

  it("counts possible CPUs as /sys/devices/system/cpu/possible does", function()
    local f = assert(io.open("/sys/devices/system/cpu/possible"))
    local s = f:read("*l")
    f:close()
    local n = 0
    for range in s:gmatch("[^,]+") do
      local a, b = range:match("^(%d+)%-(%d+)$")
      if a then n = n + tonumber(b) - tonumber(a) + 1 else n = n + 1 end
    end
    assert.are.equal(n, NCPUS)
  end)

  for _, mtype in ipairs(TYPES) do
    for _, vsize in ipairs{ 4, 8, 12 } do
      local label = mtype .. " with " .. vsize .. "-byte values"

      describe(label, function()
        it("returns ncpus values from lookup", function()
          local m = open_fixture(mtype, vsize)
          assert(m:update(3, per_cpu(vsize, 3)))
          local v = m:lookup(3)
          assert.are.equal("table", type(v))
          assert.are.equal(NCPUS, #v)
          assert.are.same(per_cpu(vsize, 3), v)
        end)

        it("stores distinct per-CPU values exactly as bpftool dumps them", function()
          local m, path = open_fixture(mtype, vsize)
          for k = 1, 5 do assert(m:update(k, per_cpu(vsize, k))) end
          local dump = helpers.dump(path)
          for k = 1, 5 do
            local per = dump[le(k, 4)]
            assert.is_table(per, "bpftool has no key " .. k)
            assert.are.equal(NCPUS, #per)
            for cpu = 1, NCPUS do
              assert.are.equal(hex(SHAPES[vsize].bytes(SHAPES[vsize].make(k, cpu))), hex(per[cpu]),
                "key " .. k .. " cpu " .. (cpu - 1))
            end
          end
        end)

        it("zeroes the padding between CPUs when it writes", function()
          if not helper then return pending("needs cc and libbpf-dev: " .. tostring(helper_err)) end
          local m, path = open_fixture(mtype, vsize)
          local stride = round8(vsize)
          -- the kernel keeps the padding as written: fill it with 0xaa first
          raw_write(path, le(2, 4), string.rep("\170", stride * NCPUS))
          assert(m:update(2, per_cpu(vsize, 2)))
          local buf = raw_read(path, le(2, 4))
          assert.are.equal(stride * NCPUS, #buf)
          for cpu = 1, NCPUS do
            local want = SHAPES[vsize].bytes(SHAPES[vsize].make(2, cpu))
              .. string.rep("\0", stride - vsize)
            assert.are.equal(hex(want), hex(buf:sub((cpu - 1) * stride + 1, cpu * stride)),
              "cpu " .. (cpu - 1))
          end
        end)

        it("reads distinct per-CPU values written by another process, ignoring padding", function()
          if not helper then return pending("needs cc and libbpf-dev: " .. tostring(helper_err)) end
          local m, path = open_fixture(mtype, vsize)
          local stride = round8(vsize)
          local parts = {}
          for cpu = 1, NCPUS do
            parts[cpu] = SHAPES[vsize].bytes(SHAPES[vsize].make(4, cpu))
              .. string.rep("\170", stride - vsize)
          end
          raw_write(path, le(4, 4), table.concat(parts))
          assert.are.same(per_cpu(vsize, 4), m:lookup(4))
          -- raw: each CPU's value is exactly value_size bytes, no padding
          m:codec{ value = "raw" }
          local raw = m:lookup(4)
          assert.are.equal(NCPUS, #raw)
          for cpu = 1, NCPUS do
            assert.are.equal(vsize, #raw[cpu])
            assert.are.equal(hex(SHAPES[vsize].bytes(SHAPES[vsize].make(4, cpu))), hex(raw[cpu]))
          end
        end)

        it("stores one value for every CPU when given a single value", function()
          local m, path = open_fixture(mtype, vsize)
          local one = SHAPES[vsize].make(9, 0)
          assert(m:update(6, one))
          local per = helpers.dump(path)[le(6, 4)]
          assert.are.equal(NCPUS, #per)
          for cpu = 1, NCPUS do
            assert.are.equal(hex(SHAPES[vsize].bytes(one)), hex(per[cpu]))
          end
          local v = m:lookup(6)
          for cpu = 1, NCPUS do assert.are.same(one, v[cpu]) end
        end)

        it("reads what bpftool wrote (its value on every CPU)", function()
          local m, path = open_fixture(mtype, vsize)
          local one = SHAPES[vsize].make(7, 1)
          fs:bpftool_update(path, le(7, 4), SHAPES[vsize].bytes(one))
          local v = m:lookup(7)
          assert.are.equal(NCPUS, #v)
          for cpu = 1, NCPUS do assert.are.same(one, v[cpu]) end
        end)

        it("returns the same per-CPU arrays from pairs and dump as from lookup", function()
          local m = open_fixture(mtype, vsize, 64)
          for k = 0, 9 do assert(m:update(k, per_cpu(vsize, k))) end
          local seen = 0
          for k, v in m:pairs() do
            assert.are.same(m:lookup(k), v)
            if k <= 9 then
              assert.are.same(per_cpu(vsize, k), v)
              seen = seen + 1
            end
          end
          assert.are.equal(10, seen)
          local keys, values = m:dump()
          assert.are.equal(mtype == "percpu_array" and 64 or 10, #keys)
          for i = 1, #keys do assert.are.same(m:lookup(keys[i]), values[i]) end
          -- and the get_next_key path agrees
          local fk, fv = m:dump{ batch = false }
          assert.is_true(m:last_read().fallback)
          assert.are.equal(#keys, #fk)
          for i = 1, #fk do assert.are.same(m:lookup(fk[i]), fv[i]) end
        end)

        it("refuses a per-CPU array of the wrong length, naming ncpus", function()
          local m = open_fixture(mtype, vsize)
          local too_many = per_cpu(vsize, 1)
          too_many[NCPUS + 1] = SHAPES[vsize].make(1, NCPUS + 1)
          local err = raised(m.update, m, 1, too_many)
          assert.are.equal("string", type(err))
          assert.matches("per-CPU array of " .. NCPUS .. " values", err, 1, true)
          assert.matches("got " .. (NCPUS + 1) .. " values", err, 1, true)
          assert.is_nil(mtype ~= "percpu_array" and m:lookup(1) or nil)
        end)
      end)
    end
  end

  describe("drain on a percpu_hash", function()
    it("returns the same per-CPU arrays that lookup returned, then the map is empty", function()
      local m, path = open_fixture("percpu_hash", 12, 64)
      local want = {}
      for k = 1, 20 do
        assert(m:update(k, per_cpu(12, k)))
      end
      for k = 1, 20 do want[k] = m:lookup(k) end
      local keys, values = m:drain()
      assert.are.equal(20, #keys)
      for i = 1, #keys do assert.are.same(want[keys[i]], values[i]) end
      local _, n = helpers.dump(path)
      assert.are.equal(0, n)
    end)
  end)

  describe("struct values per CPU", function()
    local STRUCT = { { "pid", "u32" }, { "comm", "char[8]" }, { "count", "u64" } } -- 24 bytes

    it("encodes a struct per CPU as bpftool dumps it", function()
      local m, path = open_fixture("percpu_hash", 24, 8)
      m:codec{ value = STRUCT }
      local per = {}
      for cpu = 1, NCPUS do per[cpu] = { pid = 100 + cpu, comm = "c" .. cpu, count = cpu * 7 } end
      assert(m:update(1, per))
      assert.are.same(per, m:lookup(1))
      local dump = helpers.dump(path)[le(1, 4)]
      for cpu = 1, NCPUS do
        local comm = "c" .. cpu
        local want = le(100 + cpu, 4) .. comm .. string.rep("\0", 8 - #comm) .. "\0\0\0\0"
          .. le(cpu * 7, 8)
        assert.are.equal(hex(want), hex(dump[cpu]))
      end
    end)

    it("treats a single struct table as the value of every CPU", function()
      local m = open_fixture("percpu_array", 24, 4)
      m:codec{ value = STRUCT }
      assert(m:update(2, { pid = 5, comm = "x", count = 9 }))
      local v = m:lookup(2)
      assert.are.equal(NCPUS, #v)
      for cpu = 1, NCPUS do assert.are.same({ pid = 5, comm = "x", count = 9 }, v[cpu]) end
    end)

    it("refuses a per-CPU array of structs of the wrong length, naming ncpus", function()
      local m = open_fixture("percpu_hash", 24, 8)
      m:codec{ value = STRUCT }
      local per = {}
      for cpu = 1, NCPUS + 1 do per[cpu] = { pid = cpu } end
      local err = raised(m.update, m, 1, per)
      assert.matches("per-CPU array of " .. NCPUS .. " values", err, 1, true)
    end)
  end)

  describe("ebpf.sum, ebpf.min, ebpf.max, ebpf.avg", function()
    it("fold per-CPU numbers read from a map", function()
      local m = open_fixture("percpu_array", 8, 4)
      local per, sum, mn, mx = {}, 0, nil, nil
      for cpu = 1, NCPUS do
        per[cpu] = (cpu * 37) % 11 + cpu
        sum = sum + per[cpu]
        mn = (mn == nil or per[cpu] < mn) and per[cpu] or mn
        mx = (mx == nil or per[cpu] > mx) and per[cpu] or mx
      end
      assert(m:update(0, per))
      local v = m:lookup(0)
      assert.are.equal(sum, ebpf.sum(v))
      assert.are.equal(mn, ebpf.min(v))
      assert.are.equal(mx, ebpf.max(v))
      assert.are.equal(sum / NCPUS, ebpf.avg(v))
    end)

    it("fold known numbers", function()
      assert.are.equal(10, ebpf.sum{ 1, 2, 3, 4 })
      assert.are.equal(-2, ebpf.min{ 5, -2, 7 })
      assert.are.equal(7, ebpf.max{ 5, -2, 7 })
      assert.are.equal(2.5, ebpf.avg{ 1, 2, 3, 4 })
      assert.are.equal(3, ebpf.sum{ 3 })
    end)

    it("return nil for an empty array", function()
      assert.is_nil(ebpf.sum{})
      assert.is_nil(ebpf.min{})
      assert.is_nil(ebpf.max{})
      assert.is_nil(ebpf.avg{})
    end)

    it("fold struct tables field by field, nested structs and arrays too", function()
      local vals = {
        { n = 1, inner = { x = 10, y = 5 }, arr = { 1, 9 } },
        { n = 4, inner = { x = 2, y = 8 }, arr = { 7, 3 } },
        { n = 7, inner = { x = 6, y = 2 }, arr = { 4, 6 } },
      }
      assert.are.same({ n = 12, inner = { x = 18, y = 15 }, arr = { 12, 18 } }, ebpf.sum(vals))
      assert.are.same({ n = 1, inner = { x = 2, y = 2 }, arr = { 1, 3 } }, ebpf.min(vals))
      assert.are.same({ n = 7, inner = { x = 10, y = 8 }, arr = { 7, 9 } }, ebpf.max(vals))
      assert.are.same({ n = 4, inner = { x = 6, y = 5 }, arr = { 4, 6 } }, ebpf.avg(vals))
      -- the inputs are left alone
      assert.are.same({ n = 1, inner = { x = 10, y = 5 }, arr = { 1, 9 } }, vals[1])
    end)

    it("fold per-CPU nested struct values read from a map", function()
      local codec = { { "hits", "u32" }, { "lat", { { "lo", "u16" }, { "hi", "u16" } } },
                      { "hist", { "u32", 2 } } } -- 16 bytes
      local m = open_fixture("percpu_hash", 16, 8)
      m:codec{ value = codec }
      local per, want = {}, { hits = 0, lat = { lo = 0, hi = 0 }, hist = { 0, 0 } }
      for cpu = 1, NCPUS do
        per[cpu] = { hits = cpu * 3, lat = { lo = cpu, hi = 100 - cpu }, hist = { cpu, 2 * cpu } }
        want.hits = want.hits + cpu * 3
        want.lat.lo = want.lat.lo + cpu
        want.lat.hi = want.lat.hi + 100 - cpu
        want.hist[1] = want.hist[1] + cpu
        want.hist[2] = want.hist[2] + 2 * cpu
      end
      assert(m:update(1, per))
      assert.are.same(want, ebpf.sum(m:lookup(1)))
      local mx = ebpf.max(m:lookup(1))
      assert.are.equal(NCPUS * 3, mx.hits)
      assert.are.equal(99, mx.lat.hi)
    end)

    it("raise when the values cannot be combined", function()
      assert.has_error(function() ebpf.sum{ 1, { x = 1 } } end)
      assert.has_error(function() ebpf.sum(5) end)
    end)
  end)

  describe("ebpf.snapshot and ebpf.delta", function()
    it("give the deltas of changed counters, the new and the vanished keys", function()
      local m = open_fixture("hash", 8, 16)
      m:codec{ value = "u64" }
      assert(m:update(1, 10)); assert(m:update(2, 20)); assert(m:update(3, 30))
      local prev = ebpf.snapshot(m)
      assert(m:update(1, 15)); assert(m:update(2, 26)); assert(m:delete(3)); assert(m:update(4, 40))
      local d = ebpf.delta(prev, ebpf.snapshot(m))
      local changed = {}
      for _, e in ipairs(d.changed) do changed[e.key] = e end
      assert.are.equal(5, changed[1].delta); assert.are.equal(15, changed[1].value)
      assert.are.equal(6, changed[2].delta); assert.are.equal(26, changed[2].value)
      assert.is_false(changed[1].reset)
      assert.are.equal(1, #d.new)
      assert.are.equal(4, d.new[1].key); assert.are.equal(40, d.new[1].value)
      assert.are.equal(1, #d.vanished)
      assert.are.equal(3, d.vanished[1].key); assert.are.equal(30, d.vanished[1].value)
    end)

    it("flags a counter that went down as reset, its delta being its new value", function()
      local m = open_fixture("hash", 8, 16)
      m:codec{ value = "u64" }
      assert(m:update(1, 100))
      local prev = ebpf.snapshot(m)
      assert(m:update(1, 7))
      local d = ebpf.delta(prev, ebpf.snapshot(m))
      assert.are.equal(1, #d.changed)
      assert.is_true(d.changed[1].reset)
      assert.are.equal(7, d.changed[1].delta)
    end)

    it("does not list an entry whose value did not change among the changed", function()
      local m = open_fixture("hash", 8, 16)
      m:codec{ value = "u64" }
      assert(m:update(1, 10)); assert(m:update(2, 20))
      local prev = ebpf.snapshot(m)
      assert(m:update(2, 21))
      local d = ebpf.delta(prev, ebpf.snapshot(m))
      assert.are.equal(1, #d.changed, "an unchanged counter listed as changed")
      assert.are.equal(2, d.changed[1].key)
    end)

    it("subtracts per-CPU values CPU by CPU and flags a reset on any CPU", function()
      local m = open_fixture("percpu_hash", 8, 16)
      local a, b = {}, {}
      for cpu = 1, NCPUS do a[cpu] = cpu * 10; b[cpu] = cpu * 10 + cpu end
      assert(m:update(1, a))
      assert(m:update(2, a))
      local prev = ebpf.snapshot(m)
      assert(m:update(1, b))
      local down = {}
      for cpu = 1, NCPUS do down[cpu] = a[cpu] end
      down[1] = 1
      assert(m:update(2, down))
      local d = ebpf.delta(prev, ebpf.snapshot(m))
      local changed = {}
      for _, e in ipairs(d.changed) do changed[e.key] = e end
      local want1 = {}
      for cpu = 1, NCPUS do want1[cpu] = cpu end
      assert.are.same(want1, changed[1].delta)
      assert.is_false(changed[1].reset)
      assert.is_true(changed[2].reset)
      assert.are.equal(1, changed[2].delta[1])
    end)

    it("matches struct keys across snapshots and subtracts struct values field by field", function()
      local path = fs:bpftool_map{ type = "hash", key = 8, value = 16, entries = 16 }
      local m = ebpf.open(path, { access = "rw",
        key = { { "pid", "u32" }, { "cpu", "u16" }, { "tag", "u8" } },
        value = { { "calls", "u64" }, { "bytes", "u64" } } })
      finally(function() m:close() end)
      assert(m:update({ pid = 1, cpu = 0, tag = 1 }, { calls = 1, bytes = 100 }))
      assert(m:update({ pid = 2, cpu = 1, tag = 0 }, { calls = 5, bytes = 500 }))
      local prev = ebpf.snapshot(m)
      assert(m:update({ pid = 1, cpu = 0, tag = 1 }, { calls = 3, bytes = 160 }))
      assert(m:update({ pid = 2, cpu = 1, tag = 0 }, { calls = 6, bytes = 10 }))
      assert(m:update({ pid = 3, cpu = 0, tag = 0 }, { calls = 1, bytes = 1 }))
      local cur = ebpf.snapshot(m)
      -- equal keys share an id: two snapshots of three keys have three ids
      local ids = {}
      for id in pairs(prev) do ids[id] = true end
      for id in pairs(cur) do ids[id] = true end
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.are.equal(3, n)
      local d = ebpf.delta(prev, cur)
      assert.are.equal(0, #d.vanished)
      assert.are.equal(1, #d.new)
      assert.are.equal(3, d.new[1].key.pid)
      local by_pid = {}
      for _, e in ipairs(d.changed) do by_pid[e.key.pid] = e end
      assert.are.same({ calls = 2, bytes = 60 }, by_pid[1].delta)
      assert.is_false(by_pid[1].reset)
      assert.are.same({ calls = 1, bytes = 10 }, by_pid[2].delta)
      assert.is_true(by_pid[2].reset)
    end)

    it("takes plain { [key] = value } tables too", function()
      local d = ebpf.delta({ a = 1, b = 5 }, { a = 4, c = 2 })
      assert.are.equal(1, #d.changed)
      assert.are.equal("a", d.changed[1].key)
      assert.are.equal(3, d.changed[1].delta)
      assert.are.equal("c", d.new[1].key)
      assert.are.equal("b", d.vanished[1].key)
    end)
  end)
end)

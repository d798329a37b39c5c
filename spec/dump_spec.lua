-- spec/dump_spec.lua: m:dump() and m:drain(), the calls that read a whole
-- map at once (drain deleting what it reads), against bpftool's dump of real
-- maps of each type; pairs and keys must agree with dump. Batches that grow,
-- opts.batch = false and types without batch operations (get_next_key), and
-- drain's refusals. Shared by every Lua version: 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local le, count, keyset = helpers.le, helpers.count, helpers.keyset
local to_set, collect, assert_same_entries = helpers.to_set, helpers.collect,
  helpers.assert_same_entries
local bpftool_fill, raised = helpers.bpftool_fill, helpers.raised
-- bpftool's dump as { [key bytes] = value bytes }, and the entry count
local oracle = helpers.dump

describe("whole-map reads", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- a fresh pinned map opened read-write through luaebpf (raw codecs unless given)
  local function fixture(spec, opts)
    local path = fs:bpftool_map(spec)
    opts = opts or {}
    opts.access = opts.access or "rw"
    local m = ebpf.open(path, opts)
    finally(function() m:close() end)
    return m, path
  end

  -- dump, pairs and keys of m must all equal bpftool's dump of path, on the batch path
  -- (fallback: the map type walks with get_next_key, not batches)
  local function check_against_bpftool(m, path, opts, fallback)
    local want, nwant = oracle(path)
    assert.is_true(nwant > 0, "the fixture is empty")

    local keys, values = m:dump(opts)
    local got, dups = to_set(keys, values)
    assert.are.same({}, dups)
    assert.are.equal(nwant, #keys)
    assert.are.equal(#keys, #values)
    assert_same_entries(want, got)
    local lr = m:last_read()
    assert.are.equal(fallback or false, lr.fallback)
    assert.are.equal(nwant, lr.entries)
    assert.is_true(fallback or lr.batches >= 1)

    local pgot, pn, pdups = collect(m:pairs(opts))
    assert.are.same({}, pdups)
    assert.are.equal(nwant, pn)
    assert_same_entries(want, pgot)
    assert.are.equal(fallback or false, m:last_read().fallback)
    assert.are.equal(nwant, m:last_read().entries)

    local kgot, kn, kdups = collect(m:keys(opts))
    assert.are.same({}, kdups)
    assert.are.equal(nwant, kn)
    assert_same_entries(keyset(want), kgot)
    assert.are.equal(fallback or false, m:last_read().fallback)
  end

  describe("Map:dump, Map:pairs and Map:keys, compared with bpftool's dump", function()
    it("read a 100,000-entry hash exactly as bpftool dumps it", function()
      local m, path = fixture({ type = "hash", key = 4, value = 8, entries = 100000 })
      m:codec{ key = "u32", value = "u64" }
      for k = 0, 99999 do assert(m:update(k, k * 3 + 1)) end
      m:codec{ key = "raw", value = "raw" }
      check_against_bpftool(m, path)
      assert.is_true(m:last_read().batches > 1)
      -- and typed: every key once, every value k * 3 + 1
      m:codec{ key = "u32", value = "u64" }
      local n, bad = 0, 0
      for k, v in m:pairs() do
        n = n + 1
        if v ~= k * 3 + 1 then bad = bad + 1 end
      end
      assert.are.equal(100000, n)
      assert.are.equal(0, bad)
    end)

    it("read an array (every index, set or not) exactly as bpftool dumps it", function()
      local m, path = fixture({ type = "array", key = 4, value = 8, entries = 300 })
      local rows = {}
      for k = 0, 299, 3 do rows[#rows + 1] = { le(k, 4), le(k * 11 + 5, 8) } end
      bpftool_fill(path, rows)
      check_against_bpftool(m, path)
      assert.are.equal(300, m:last_read().entries)
    end)

    it("read a percpu_hash exactly as bpftool dumps it, CPU by CPU", function()
      local m, path = fixture({ type = "percpu_hash", key = 4, value = 8, entries = 1024 },
        { key = "u32", value = "u64" })
      for k = 1, 500 do
        local per = {}
        for cpu = 1, ebpf.ncpus() do per[cpu] = k * 1000 + cpu end
        assert(m:update(k, per))
      end
      m:codec{ key = "raw", value = "raw" }
      check_against_bpftool(m, path)
    end)

    it("read a percpu_array exactly as bpftool dumps it, CPU by CPU", function()
      local m, path = fixture({ type = "percpu_array", key = 4, value = 4, entries = 50 },
        { key = "u32", value = "u32" })
      for k = 0, 49, 2 do
        local per = {}
        for cpu = 1, ebpf.ncpus() do per[cpu] = k * 100 + cpu end
        assert(m:update(k, per))
      end
      m:codec{ key = "raw", value = "raw" }
      check_against_bpftool(m, path)
      assert.are.equal(50, m:last_read().entries)
    end)

    it("read an lru_hash exactly as bpftool dumps it", function()
      local m, path = fixture({ type = "lru_hash", key = 4, value = 8, entries = 4096 },
        { key = "u32", value = "u64" })
      for k = 1, 1000 do assert(m:update(k, k + 7)) end
      m:codec{ key = "raw", value = "raw" }
      check_against_bpftool(m, path)
    end)


    it("read an lpm_trie with {prefixlen, addr} keys exactly as bpftool dumps it", function()
      local ok, m = pcall(ebpf.create, { type = "lpm_trie", key_size = 8, value_size = 8,
        max_entries = 256, flags = { "no_prealloc" } })
      if not ok then return pending("needs lpm_trie maps: " .. tostring(m)) end
      m:close()
      local path = fs:bpftool_map{ type = "lpm_trie", key = 8, value = 8, entries = 256, flags = 1 }
      local t = ebpf.open(path, { access = "rw",
        key = { { "prefixlen", "u32" }, { "addr", "be32" } }, value = "u64" })
      finally(function() t:close() end)
      for i = 0, 99 do
        assert(t:update({ prefixlen = 16 + i % 17, addr = 0x0a000000 + i * 0x10000 }, i))
      end
      -- the same prefixes under bpftool's eyes, as raw bytes. An LPM trie walks
      -- with get_next_key: its generic batch restarts at the leftmost key when
      -- the cursor key is deleted, which could yield a key twice
      t:codec{ key = "raw", value = "raw" }
      check_against_bpftool(t, path, nil, true)
      assert.are.equal(100, t:last_read().entries)
      -- and decoded: the struct keys come back with their fields
      t:codec{ key = { { "prefixlen", "u32" }, { "addr", "be32" } }, value = "u64" }
      local keys, values = t:dump()
      assert.are.equal(100, #keys)
      for i = 1, #keys do
        local v = values[i]
        assert.are.equal(16 + v % 17, keys[i].prefixlen)
        assert.are.equal(0x0a000000 + v * 0x10000, keys[i].addr)
      end
    end)

    for _, ks in ipairs{ 1, 2, 3 } do
      it("read a hash with " .. ks .. "-byte keys (packed key stride) exactly as bpftool dumps it", function()
        local m, path = fixture({ type = "hash", key = ks, value = 8, entries = 300 })
        local n = ks == 1 and 256 or 300
        for i = 0, n - 1 do assert(m:update(le(i, ks), le(i * 13 + 1, 8))) end
        check_against_bpftool(m, path, { n = 7 })
        assert.are.equal(n, m:last_read().entries)
      end)
    end

    it("read a hash_of_maps on the batch path, yielding inner map ids", function()
      local inner = ebpf.create{ type = "array", key_size = 4, value_size = 4, max_entries = 1 }
      finally(function() inner:close() end)
      local ok, hom = pcall(ebpf.create, { type = "hash_of_maps", key_size = 4, value_size = 4,
        max_entries = 8, inner_map = inner, key = "u32", value = "u32" })
      if not ok then return pending("needs hash_of_maps: " .. tostring(hom)) end
      finally(function() hom:close() end)
      assert(hom:update(3, inner:fd()))
      assert(hom:update(5, inner:fd()))
      local keys, values = hom:dump()
      local got = to_set(keys, values)
      local id = inner:info().id
      assert.are.same({ [3] = id, [5] = id }, got)
      assert.is_false(hom:last_read().fallback)
    end)
  end)

  describe("Map:dump with batches that must grow", function()
    it("dumps every entry once with n = 1, like pairs", function()
      local m = fixture({ type = "hash", key = 4, value = 8, entries = 4096 },
        { key = "u32", value = "u64" })
      for k = 0, 3999 do assert(m:update(k, k + 1)) end
      local keys, values = m:dump{ n = 1 }
      local got, dups = to_set(keys, values)
      assert.are.same({}, dups)
      assert.are.equal(4000, #keys)
      for k = 0, 3999 do assert(got[k] == k + 1, "key " .. k .. " missing or wrong") end
      assert.is_true(m:last_read().grows > 0)
    end)
  end)

  describe("the get_next_key fallback", function()
    it("opts.batch = false reads the same entries, and last_read says fallback", function()
      local m, path = fixture({ type = "hash", key = 4, value = 8, entries = 2048 })
      local rows = {}
      for k = 0, 999 do rows[#rows + 1] = { le(k, 4), le(k * 5, 8) } end
      bpftool_fill(path, rows)
      local want = oracle(path)
      local keys, values = m:dump{ batch = false }
      local got, dups = to_set(keys, values)
      assert.are.same({}, dups)
      assert.is_true(m:last_read().fallback)
      assert.are.equal(1000, m:last_read().entries)
      assert_same_entries(want, got)
      local pgot, pn = collect(m:pairs{ batch = false })
      assert.are.equal(1000, pn)
      assert.is_true(m:last_read().fallback)
      assert_same_entries(want, pgot)
      local kgot = collect(m:keys{ batch = false })
      assert.is_true(m:last_read().fallback)
      assert_same_entries(keyset(want), kgot)
      -- and the batch path again gives the same
      local bgot = collect(m:pairs())
      assert.is_false(m:last_read().fallback)
      assert_same_entries(want, bgot)
    end)

    it("reads a devmap (a type without batch operations) through get_next_key", function()
      local m, path = fixture({ type = "devmap", key = 4, value = 4, entries = 8 },
        { key = "u32", value = "u32" })
      assert(m:update(2, 1)) -- ifindex 1: lo
      assert(m:update(5, 1))
      local want = oracle(path)
      assert.are.equal(2, count(want))
      local keys, values = m:dump()
      assert.are.same({ [2] = 1, [5] = 1 }, (to_set(keys, values)))
      assert.is_true(m:last_read().fallback)
      local got = collect(m:pairs())
      assert.are.same({ [2] = 1, [5] = 1 }, got)
      assert.is_true(m:last_read().fallback)
      assert.are.equal(2, m:last_read().entries)
    end)

    it("refuses to walk a queue with class 'unsupported'", function()
      local q = ebpf.create{ type = "queue", key_size = 0, value_size = 8, max_entries = 4,
        value = "u64" }
      finally(function() q:close() end)
      assert(q:update(nil, 1))
      for _, method in ipairs{ "pairs", "keys", "dump" } do
        local err = raised(q[method], q)
        assert.are.equal("unsupported", err.class, method)
      end
    end)
  end)

  describe("Map:drain", function()
    it("returns every entry once and leaves the map empty, as bpftool sees it", function()
      local m, path = fixture({ type = "hash", key = 4, value = 8, entries = 2048 })
      local rows = {}
      for k = 0, 1499 do rows[#rows + 1] = { le(k, 4), le(k * 9, 8) } end
      bpftool_fill(path, rows)
      local want = oracle(path)
      local keys, values = m:drain()
      local got, dups = to_set(keys, values)
      assert.are.same({}, dups)
      assert.are.equal(1500, #keys)
      assert_same_entries(want, got)
      assert.is_false(m:last_read().fallback)
      local _, left = oracle(path)
      assert.are.equal(0, left)
      local k2 = m:dump()
      assert.are.equal(0, #k2)
    end)

    it("drains a percpu_hash, returning per-CPU arrays, and leaves it empty", function()
      local m, path = fixture({ type = "percpu_hash", key = 4, value = 8, entries = 64 },
        { key = "u32", value = "u64" })
      for k = 1, 40 do
        local per = {}
        for cpu = 1, ebpf.ncpus() do per[cpu] = k * 10 + cpu end
        assert(m:update(k, per))
      end
      local keys, values = m:drain()
      local got = to_set(keys, values)
      assert.are.equal(40, #keys)
      for k = 1, 40 do
        assert.are.equal(ebpf.ncpus(), #got[k])
        for cpu = 1, ebpf.ncpus() do assert.are.equal(k * 10 + cpu, got[k][cpu]) end
      end
      local _, left = oracle(path)
      assert.are.equal(0, left)
    end)

    it("drains everything with n = 1, growing past crowded buckets", function()
      local m, path = fixture({ type = "hash", key = 4, value = 8, entries = 4096 },
        { key = "u32", value = "u64" })
      for k = 0, 3999 do assert(m:update(k, k)) end
      local keys, values = m:drain{ n = 1 }
      local got, dups = to_set(keys, values)
      assert.are.same({}, dups)
      assert.are.equal(4000, #keys)
      for k = 0, 3999 do assert(got[k] == k, "key " .. k .. " missing or wrong") end
      assert.is_true(m:last_read().grows > 0)
      local _, left = oracle(path)
      assert.are.equal(0, left)
    end)

    it("drains everything through get_next_key with opts.batch = false", function()
      local m, path = fixture({ type = "hash", key = 4, value = 8, entries = 256 },
        { key = "u32", value = "u64" })
      for k = 0, 199 do assert(m:update(k, k * 4)) end
      local keys, values = m:drain{ batch = false }
      local got, dups = to_set(keys, values)
      assert.are.same({}, dups)
      assert.are.equal(200, #keys)
      for k = 0, 199 do assert(got[k] == k * 4, "key " .. k .. " missing or wrong") end
      assert.is_true(m:last_read().fallback)
      local _, left = oracle(path)
      assert.are.equal(0, left)
    end)

    it("raises class 'permission' on a read-only handle and deletes nothing", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [1] = 10, [2] = 20 } }
      local m = ebpf.open(path)
      finally(function() m:close() end)
      local err = raised(m.drain, m)
      assert.are.equal("permission", err.class)
      assert.matches('access = "rw"', tostring(err), 1, true)
      local _, left = oracle(path)
      assert.are.equal(2, left)
    end)

    it("raises class 'unsupported' on an array and leaves it unchanged", function()
      local m, path = fixture({ type = "array", key = 4, value = 8, entries = 4 },
        { key = "u32", value = "u64" })
      assert(m:update(1, 11))
      local err = raised(m.drain, m)
      assert.are.equal("unsupported", err.class)
      assert.are.equal("drain", err.op)
      assert.are.equal(11, m:lookup(1))
      local want = oracle(path)
      assert.are.equal(le(11, 8), want[le(1, 4)])
    end)
  end)
end)

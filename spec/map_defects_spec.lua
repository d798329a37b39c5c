-- spec/map_defects_spec.lua: the Map handle's element calls, bloom filters,
-- create's inner_map and name, and the words of element and walk errors
-- (issue 10, items 3, 5, 8, 9, 15, 16, 20). Runs against real kernel maps;
-- cases that need the collector at pause 0 run in a child process, so a
-- crash fails one test. Shared by every Lua version: 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

-- a child process (helpers.child: paths, ebpf, garbage(fn)) with `fields`,
-- the spec of a 512-byte struct of 64 u64 fields
local function child(body)
  return helpers.child("local fields = {}\n" ..
    "for i = 1, 64 do fields[i] = { 'f' .. i, 'u64' } end -- a 512-byte struct\n" .. body)
end

-- the value of a 64 x u64 struct whose every field is v
local function struct_of(v)
  local t = {}
  for i = 1, 64 do t["f" .. i] = v end
  return t
end

describe("Map element calls", function()
  it("never return another key's value while finalizers look up the same map (512-byte values)",
    function()
    local out, ok = child([[
local m = ebpf.create{ type = "hash", max_entries = 16, key = "u32", value = fields }
for k = 1, 8 do
  local v = {}
  for i = 1, 64 do v["f" .. i] = k * 1000 + i end
  assert(m:update(k, v))
end
collectgarbage("setpause", 0)
local wrong, nested = 0, 0
for round = 1, 20000 do
  local k = round % 8 + 1
  local other = k % 8 + 1
  garbage(function() local o = m:lookup(other); nested = nested + 1
    assert(o.f1 == other * 1000 + 1) end)
  local v = m:lookup(k)
  for i = 1, 64, 9 do
    if v["f" .. i] ~= k * 1000 + i then wrong = wrong + 1; break end
  end
end
collectgarbage("setpause", 200)
print("wrong", wrong, "nested", nested > 1000)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("wrong\t0\tnested\ttrue", 1, true), out)
  end)

  it("write the key they were given while finalizers use the same map during encoding", function()
    -- the codec's field names live in no Lua string: encoding the fields the
    -- value leaves out allocates their names, so finalizers run mid-encode
    local out, ok = child([[
local function make()
  local spec = {}
  for i = 1, 64 do spec[i] = { ("g%d"):format(i), "u64" } end
  return ebpf.create{ type = "hash", max_entries = 16, key = "u32", value = spec }
end
local m = make()
local function value(n) local v = {}; v["g" .. 1] = n; v["g" .. 64] = n; return v end
assert(m:update(100, value(7)))
collectgarbage("setpause", 0)
local wrong, nested = 0, 0
for round = 1, 20000 do
  local k = round % 8 + 1
  garbage(function() m:lookup(100); nested = nested + 1 end)
  assert(m:update(k, value(round)))
  local back = m:lookup(k)
  if back["g" .. 1] ~= round or back["g" .. 64] ~= round then wrong = wrong + 1 end
end
collectgarbage("setpause", 200)
local s = m:lookup(100)
local n = 0
for _ in m:keys() do n = n + 1 end
print("wrong", wrong, "sentinel", s["g" .. 1] == 7 and s["g" .. 64] == 7, "keys", n,
  "nested", nested > 1000)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("wrong\t0\tsentinel\ttrue\tkeys\t9\tnested\ttrue", 1, true), out)
  end)

  it("write the right key when the value table's __index would look up another key", function()
    local fields = {}
    for i = 1, 64 do fields[i] = { "f" .. i, "u64" } end
    local m = ebpf.create{ type = "hash", max_entries = 16, key = "u32", value = fields }
    assert(m:update(100, struct_of(7)))
    local v = setmetatable({ f1 = 5 }, { __index = function(_, k)
      m:lookup(100) -- a nested call on the same handle
      return nil
    end })
    assert.is_true(m:update(3, v))
    assert.are.equal(5, m:lookup(3).f1)
    assert.are.equal(0, m:lookup(3).f2)
    assert.are.equal(7, m:lookup(100).f1)
    m:close()
  end)
end)

describe("bloom filters", function()
  local f
  before_each(function()
    -- zero_seed: the same hashes on every run, so "never pushed" answers are reproducible
    f = ebpf.create{ type = "bloom_filter", value = "u32", max_entries = 64, flags = { "zero_seed" } }
  end)
  after_each(function() f:close() end)

  it("f:contains(v) is true for every pushed value and false for values never pushed", function()
    for v = 1, 10 do assert.is_true(f:update(nil, v * 7)) end
    for v = 1, 10 do assert.is_true(f:contains(v * 7)) end
    local absent = 0
    for v = 1001, 1020 do
      if f:contains(v) == false then absent = absent + 1 end
    end
    assert.is_true(absent >= 18, "only " .. absent .. " of 20 never-pushed values were absent")
    assert.is_false(f:contains(123456))
  end)

  it("f:contains(v) on an empty filter is false, whatever was pushed elsewhere", function()
    local g = ebpf.create{ type = "bloom_filter", value = "u32", max_entries = 64 }
    assert.is_true(g:update(nil, 5))
    assert.is_false(f:contains(5))
    assert.is_true(g:contains(5))
    g:close()
  end)

  it("f:lookup() refuses and points to contains", function()
    assert.is_true(f:update(nil, 5))
    local _, msg = helpers.raised(function() return f:lookup() end)
    helpers.mentions(msg, { "bloom filter", "contains" })
    helpers.raised(function() return f:lookup(5) end)
  end)

  it("contains refuses maps other than bloom filters", function()
    local m = ebpf.create{ type = "hash", key = "u32", value = "u32", max_entries = 4 }
    local _, msg = helpers.raised(function() return m:contains(1) end)
    helpers.mentions(msg, { "bloom filters", "hash", "lookup" })
    m:close()
  end)

  it("contains checks the value against the codec", function()
    local _, msg = helpers.raised(function() return f:contains("x") end)
    helpers.mentions(msg, { "u32", "got string" })
  end)
end)

describe("ebpf.create", function()
  it("takes the inner map's fd last: a template closed by an option's __index is refused",
    function()
    local tmpl = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
    local fd, other = tmpl:fd(), nil
    local spec = setmetatable({ type = "array_of_maps", key = "u32", value = "u32",
                                max_entries = 2, inner_map = tmpl }, {
      __index = function(_, k)
        -- int64: the option read last before this fix, after the inner map's fd
        if k == "int64" and not other then -- close the template; another map takes its fd
          tmpl:close()
          other = ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 8 }
        end
      end })
    local ok, err = pcall(ebpf.create, spec)
    assert.is_truthy(other)
    assert.are.equal(fd, other:fd()) -- the case this guards against is real here
    if ok then -- built on `other`: the wrong template
      local like_tmpl = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
      local took = err:update(0, like_tmpl:fd())
      like_tmpl:close(); err:close(); other:close()
      error("create used fd " .. fd .. " after its map was closed (a hash-shaped inner map "
        .. (took and "still fits" or "no longer fits") .. ")")
    end
    assert.are.equal("closed", err.class, tostring(err))
    other:close()
  end)

  it("builds the outer map on the template given, with __index on the spec", function()
    local tmpl = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
    local calls = 0
    local spec = setmetatable({ type = "array_of_maps", key = "u32", value = "u32",
                                max_entries = 2, inner_map = tmpl },
      { __index = function() calls = calls + 1 end })
    local outer = ebpf.create(spec)
    assert.is_true(calls > 0)
    local like = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
    local unlike = ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 8 }
    assert.is_true(outer:update(0, like:fd()))
    assert.is_nil((outer:update(1, unlike:fd())))
    outer:close(); like:close(); unlike:close(); tmpl:close()
  end)

  it("keeps a name computed by __index alive until the kernel has it", function()
    local out, ok = child([[
collectgarbage("setpause", 0)
local bad = 0
for i = 1, 300 do
  local spec = setmetatable({ type = "hash", key = "u32", value = "u32", max_entries = 1 }, {
    __index = function(_, k)
      if k == "name" then return "cn" .. i .. string.rep("x", i % 7) end
      local junk = {}
      for j = 1, 20 do junk[j] = ("junk%d_%d"):format(i, j) end
    end })
  local m = ebpf.create(spec)
  if m:info().name ~= "cn" .. i .. string.rep("x", i % 7) then bad = bad + 1 end
  m:close()
end
collectgarbage("setpause", 200)
print("bad", bad)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("bad\t0", 1, true), out)
  end)
end)

describe("element error hints", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("an array_of_maps update with a map unlike its template says so", function()
    local tmpl = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    local aom = track(ebpf.create{ type = "array_of_maps", key = "u32", value = "u32",
                                   max_entries = 2, inner_map = tmpl })
    local unlike = track(ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 8 })
    local v, err = aom:update(0, unlike:fd())
    assert.is_nil(v)
    assert.are.equal("EINVAL", err.code)
    assert.is_falsy(tostring(err):find("deleted", 1, true), tostring(err))
    helpers.mentions(err.detail, { "inner map" })
  end)

  it("a prog_array update with a map's fd asks for a program's fd", function()
    local pa = track(ebpf.create{ type = "prog_array", key = "u32", value = "u32", max_entries = 4 })
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u32", max_entries = 4 })
    local v, err = pa:update(0, m:fd())
    assert.is_nil(v)
    assert.are.equal("EINVAL", err.code)
    assert.is_falsy(tostring(err):find("deleted", 1, true), tostring(err))
    helpers.mentions(err.detail, { "program" })
  end)

  it("a delete on an array still says array elements cannot be deleted", function()
    local a = track(ebpf.create{ type = "array", key = "u32", value = "u32", max_entries = 4 })
    local v, err = a:delete(1)
    assert.is_nil(v)
    assert.are.equal("invalid", err.class)
    helpers.mentions(err.detail, { "cannot be deleted" })
  end)
end)

describe("element error classes", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("a write to a frozen map is class permission and says the map is frozen", function()
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    assert.is_true(m:update(1, 10))
    helpers.run("bpftool map freeze id " .. m:info().id)
    local v, err = m:update(1, 11)
    assert.is_nil(v)
    assert.are.equal("EPERM", err.code)
    assert.are.equal("permission", err.class)
    helpers.mentions(err.detail, { "frozen" })
    v, err = m:delete(1)
    assert.is_nil(v)
    helpers.mentions(err.detail, { "frozen" })
    assert.are.equal(10, m:lookup(1)) -- reads still work
  end)

  it("a write through a read-only handle still says opened read-only, not frozen", function()
    local fs = helpers.mount_bpffs()
    local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
    assert(m:pin(fs.path .. "/ro"))
    local r = ebpf.open(fs.path .. "/ro", { key = "u32", value = "u64" })
    local v, err = r:update(1, 1)
    r:close(); m:close()
    fs:unmount()
    assert.is_nil(v)
    helpers.mentions(err.detail, { "opened read-only" })
  end)

  describe("task_storage", function()
    local dir, obj
    setup(function()
      dir = helpers.tmpdir("luaebpf")
      local f = assert(io.open(dir .. "/ts.bpf.c", "w"))
      f:write([[
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u64);
} ts SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
]])
      f:close()
      helpers.run("clang -target bpf -g -O2 -I/usr/include/x86_64-linux-gnu -c -o " .. dir ..
        "/ts.bpf.o " .. dir .. "/ts.bpf.c")
      obj = ebpf.load(dir .. "/ts.bpf.o")
    end)
    teardown(function()
      if obj then obj:close() end
      helpers.run("rm -rf " .. dir)
    end)

    it("a key that is not an open fd is class invalid with a pidfd hint, not closed", function()
      local ts = obj:map("ts")
      local free_fd = 1000 -- an fd number this process does not hold
      assert.is_falsy(io.open("/proc/self/fd/" .. free_fd))
      for _, call in ipairs({ function() return ts:lookup(free_fd) end,
                              function() return ts:update(free_fd, 1) end,
                              function() return ts:delete(free_fd) end }) do
        local v, err = call()
        assert.is_nil(v)
        assert.are.equal("EBADF", err.code)
        assert.are.equal("invalid", err.class)
        helpers.mentions(err.detail, { "pidfd" })
      end
      ts:close()
    end)
  end)
end)

-- the element methods check self by comparing its metatable with the one
-- they hold as an upvalue: anything but an open Map gets the full check's error
describe("an element method called on something else", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("refuses every other object as self, and a closed Map as closed", function()
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    assert(m:update(1, 10))
    local a = track(ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 4,
                                 flags = { "mmapable" } })
    local ring = track(ebpf.create{ type = "ringbuf", key_size = 0, value_size = 0,
                                    max_entries = 4096 })
    local others = { io.stdout, track(a:mmap()), track(ebpf.ringbuf(ring)), {}, "m", 1,
                     newproxy and newproxy(true) or setmetatable({}, { __index = ebpf.Map }) }
    local methods = { "lookup", "update", "delete", "lookup_and_delete", "contains" }
    for i, x in ipairs(others) do
      for _, name in ipairs(methods) do
        local ok, err = pcall(ebpf.Map[name], x, 1, 1)
        assert.is_false(ok, name .. " on other #" .. i)
        assert.truthy(tostring(err):find("Map expected", 1, true), tostring(err))
      end
    end
    local closed = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
    closed:close()
    for _, name in ipairs(methods) do
      assert.are.equal("closed", select(2, pcall(ebpf.Map[name], closed, 1, 1)).class, name)
    end
    assert.are.equal(10, m:lookup(1)) -- and the open one still reads
  end)
end)

describe("a missing argument", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("m:lookup(), m:lookup_and_delete() and m:delete() say got no value for argument #1",
    function()
    local maps = {
      { track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }), "u32" },
      { track(ebpf.create{ type = "hash", key = { { "a", "u32" } }, value = "u64",
                           max_entries = 4 }), "a table of fields" },
      { track(ebpf.create{ type = "hash", key_size = 4, value = "u64", max_entries = 4 }),
        "a string of 4 bytes" },
    }
    for _, mc in ipairs(maps) do
      local m = mc[1]
      -- not tail calls: LuaJIT names the method only from its caller's frame
      for _, msg in ipairs({ select(2, pcall(function() local r = m:lookup(); return r end)),
                             select(2, pcall(function() local r = m:lookup_and_delete(); return r end)),
                             select(2, pcall(function() local r = m:delete(); return r end)) }) do
        helpers.mentions(msg, { "bad argument #1", "key: " .. mc[2], "got no value" })
        assert.is_falsy(tostring(msg):find("got string", 1, true), tostring(msg))
      end
    end
  end)

  it("m:update() blames argument #1, the key", function()
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    local _, msg = pcall(function() local r = m:update(); return r end)
    helpers.mentions(msg, { "bad argument #1 to 'update'", "key: u32", "got no value" })
    _, msg = pcall(function() local r = m:update(1); return r end)
    helpers.mentions(msg, { "bad argument #2 to 'update'" })
  end)
end)

describe("walk errors", function()
  local fs
  local track, close_all = helpers.tracker()
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_all)

  it("pairs, keys and dump on a write-only handle say opened write-only", function()
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    assert(m:update(1, 1))
    local path = fs.path .. "/wo"
    assert(m:pin(path))
    local w = track(ebpf.open(path, { access = "w", key = "u32", value = "u64" }))
    for _, walk in ipairs({ function() for _ in w:pairs() do end end,
                            function() for _ in w:keys() do end end,
                            function() return w:dump() end }) do
      local err = helpers.raised(walk)
      assert.are.equal("permission", err.class)
      helpers.mentions(err.detail, { "opened write-only" })
    end
    os.remove(path)
  end)

  it("drain on an array says its elements cannot be deleted", function()
    local a = track(ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 4 })
    local err = helpers.raised(function() return a:drain() end)
    assert.are.equal("unsupported", err.class)
    helpers.mentions(err.detail, { "cannot be deleted", "dump" })
  end)

  it("on LuaJIT a value beyond 2^53 read by pairs, dump or lookup names its key", function()
    if not jit then return pending("LuaJIT only: 5.3+ integers hold every u64") end
    local m = track(ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 })
    assert(m:update(5, "18446744073709551615"))
    for _, read in ipairs({ function() for _ in m:pairs() do end end,
                            function() return m:dump() end,
                            function() return m:lookup(5) end }) do
      local _, msg = helpers.raised(read)
      helpers.mentions(msg, { "beyond 2^53", "of the entry with key 5" })
    end
    local s = track(ebpf.create{ type = "hash", key = { { "pid", "u32" } },
                                 value = { { "n", "u64" } }, max_entries = 4 })
    assert(s:update({ pid = 42 }, { n = "18446744073709551615" }))
    local _, msg = helpers.raised(function() return s:dump() end)
    helpers.mentions(msg, { "field 'n' of the entry with key {pid=42}" })
  end)
end)

describe("paths holding a NUL byte", function()
  -- the kernel and libbpf read a path up to its first NUL: "/a\0b" would
  -- open, pin or load "/a", another file than the one named
  it("are refused by every call that takes a path, naming the byte, before any file is touched",
    function()
      local fs = helpers.mount_bpffs()
      local m = ebpf.create{ type = "hash", key = "u32", value = "u32", max_entries = 2 }
      local short = fs.path .. "/a"
      local calls = {
        open = function() return ebpf.open(short .. "\0b") end,
        pin = function() return m:pin(short .. "\0b") end,
        load = function() return ebpf.load("bpf/hist.bpf.o\0.x") end,
        open_link = function() return ebpf.open_link(short .. "\0b") end,
        open_program = function() return ebpf.open_program(short .. "\0b") end,
        elf_symbolize = function() return ebpf.elf_symbolize("/bin/true\0x", { 0 }) end,
      }
      for name, call in pairs(calls) do
        local msg = select(2, pcall(call))
        helpers.mentions(msg, { "without NUL bytes", "at byte" })
        assert.is_nil(io.open(short), name .. " made " .. short)
      end
      m:close()
      fs:unmount()
    end)

  it("and an empty path is refused as such", function()
    helpers.mentions(select(2, pcall(ebpf.open, "")), { "a path expected, got an empty string" })
  end)
end)

-- spec/map_spec.lua: the Map handle against real kernel maps. Opening (path,
-- id, name, create, expect), access modes, info against bpftool's `map show`,
-- the fd's life (close, __gc, <close>), single-element operations, arrays,
-- per-CPU layouts and queues/stacks. bpftool and /proc are the oracles.
-- Shared by every Lua version: 5.1 syntax (5.4-only code goes through load()).
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

-- ------------------------------------------------------------ local helpers

local int = H.int

--- bpftool's `map show` JSON with its numbers made integers
local function ints(s)
  for k, v in pairs(s) do if type(v) == "number" then s[k] = int(v) end end
  return s
end

--- bpftool's `map show id N`, decoded
local function show_id(id)
  return ints(cjson.decode(H.run("bpftool -j map show id " .. string.format("%d", id))))
end

--- bpftool's `map show pinned PATH`, decoded
local function show(path)
  return ints(H.show(path))
end

local map_exists = H.map_exists

--- how many fds this process holds on the map with this id (from /proc fdinfo)
local function fds_on(id)
  local out = H.run("grep -lsxE 'map_id:[[:space:]]+" .. string.format("%d", id) .. "' /proc/$PPID/fdinfo/* | wc -l")
  return tonumber((out:gsub("%s", "")))
end

--- the open mode of one of our fds, from fdinfo: "r", "w" or "rw"
local function fd_mode(fd)
  local flags = H.run("cat /proc/$PPID/fdinfo/" .. fd):match("flags:%s*(%d+)")
  local acc = tonumber(flags, 8) % 4
  return ({ [0] = "r", [1] = "w", [2] = "rw" })[acc]
end

local uint = H.uint

--- the map_flags bits of the flag names (uapi linux/bpf.h), summed
local FLAG_BITS = {
  no_prealloc = 1, no_common_lru = 2, numa_node = 4, rdonly = 8, wronly = 16,
  stack_build_id = 32, zero_seed = 64, rdonly_prog = 128, wronly_prog = 256,
  clone = 512, mmapable = 1024, preserve_elems = 2048, inner_map = 4096,
}
local function flag_bits(names)
  local sum = 0
  for _, n in ipairs(names) do
    assert(FLAG_BITS[n], "flag name unknown to the spec: " .. tostring(n))
    sum = sum + FLAG_BITS[n]
  end
  return sum
end

--- every field of an info table against bpftool's `map show` JSON
local function assert_info_is_bpftools(info, s)
  assert.are.equal(s.id, info.id)
  assert.are.equal(s.name or "", info.name) -- bpftool omits an empty name
  assert.are.equal(s.type, info.type)
  assert.are.equal(s.bytes_key, info.key_size)
  assert.are.equal(s.bytes_value, info.value_size)
  assert.are.equal(s.max_entries, info.max_entries)
  assert.are.equal(s.flags, flag_bits(info.flags))
  assert.are.equal(s.btf_id or 0, info.btf_id) -- bpftool omits btf_id when there is none
end

local PID = H.run("echo $PPID"):gsub("%s", "")
local name_counter = 0
--- a map name no parallel run uses (<= 15 bytes)
local function unique_name(prefix)
  name_counter = name_counter + 1
  return (prefix .. PID .. "_" .. name_counter):sub(1, 15)
end

--- the number of CPUs in /sys/devices/system/cpu/possible ("0-3,5,7-8")
local function possible_cpus()
  local f = assert(io.open("/sys/devices/system/cpu/possible"))
  local s = f:read("*l")
  f:close()
  local n = 0
  for part in s:gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    if a then n = n + tonumber(b) - tonumber(a) + 1 else n = n + 1 end
  end
  return n
end

-- every handle a test makes goes through track(); after_each closes them all
local track, close_tracked = H.tracker()

-- ----------------------------------------------------------------- opening

describe("ebpf.open", function()
  local fs, path
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  before_each(function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [1] = 10, [2] = 20 } }
  end)
  after_each(close_tracked)

  it("opens read-only by default: lookups work, the fd is O_RDONLY", function()
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    assert.are.equal("r", m:info().access)
    assert.are.equal("r", fd_mode(m:fd()))
    assert.are.equal(10, m:lookup(1))
    assert.are.equal(20, m:lookup(2))
  end)

  it("refuses update, delete and lookup_and_delete on a read-only handle with EPERM", function()
    local m = track(ebpf.open(path, { key = "u32", value = "u64" }))
    local calls = {
      update = function() return m:update(1, 99) end,
      delete = function() return m:delete(1) end,
      lookup_and_delete = function() return m:lookup_and_delete(1) end,
    }
    for op, call in pairs(calls) do
      local v, err = call()
      assert.is_nil(v)
      assert.are.equal("EPERM", err.code)
      assert.are.equal("permission", err.class)
      assert.are.equal(op, err.op)
      assert.matches("read%-only", tostring(err))
    end
    local entries, n = H.dump(path) -- nothing changed in the kernel
    assert.are.equal(2, n)
    assert.are.equal(H.le(10, 8), entries[H.le(1, 4)])
  end)

  it("accepts access = \"r\" explicitly, the same as the default", function()
    local m = track(ebpf.open(path, { access = "r", key = "u32", value = "u64" }))
    assert.are.equal("r", fd_mode(m:fd()))
    assert.are.equal(20, m:lookup(2))
    local _, err = m:update(2, 1)
    assert.are.equal("EPERM", err.code)
  end)

  it("reads and writes with access = \"rw\", as bpftool then sees", function()
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
    assert.are.equal("rw", m:info().access)
    assert.are.equal("rw", fd_mode(m:fd()))
    assert.is_true(m:update(3, 30))
    assert.is_true(m:delete(1))
    assert.are.equal(20, m:lookup(2))
    local entries, n = H.dump(path)
    assert.are.equal(2, n)
    assert.are.equal(H.le(30, 8), entries[H.le(3, 4)])
    assert.are.equal(H.le(20, 8), entries[H.le(2, 4)])
    assert.is_nil(entries[H.le(1, 4)])
  end)

  it("writes but refuses lookup with EPERM when access = \"w\"", function()
    local m = track(ebpf.open(path, { access = "w", key = "u32", value = "u64" }))
    assert.are.equal("w", m:info().access)
    assert.are.equal("w", fd_mode(m:fd()))
    local v, err = m:lookup(1)
    assert.is_nil(v)
    assert.are.equal("EPERM", err.code)
    assert.are.equal("permission", err.class)
    assert.matches("write%-only", tostring(err))
    assert.is_true(m:update(1, 11))
    assert.are.equal(H.le(11, 8), H.dump(path)[H.le(1, 4)])
  end)

  it("raises a 'permission' error when a write-only handle is walked", function()
    local m = track(ebpf.open(path, { access = "w", key = "u32", value = "u64" }))
    local ok, err = pcall(function() for _ in m:keys() do end end)
    assert.is_false(ok)
    assert.are.equal("table", type(err))
    assert.are.equal("permission", err.class)
  end)
end)

describe("ebpf.open_id", function()
  local fs, path, id
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  before_each(function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [7] = 70 } }
    id = show(path).id
  end)
  after_each(close_tracked)

  it("opens the map with that id, read-only by default", function()
    local m = track(ebpf.open_id(id, { key = "u32", value = "u64" }))
    assert.are.equal(id, m:info().id)
    assert.are.equal("r", m:info().access)
    assert.are.equal(70, m:lookup(7))
    local _, err = m:update(7, 1)
    assert.are.equal("EPERM", err.code)
    assert.are.equal("permission", err.class)
  end)

  it("writes through access = \"rw\", as bpftool then sees", function()
    local m = track(ebpf.open_id(id, { access = "rw", key = "u32", value = "u64" }))
    assert.are.equal("rw", fd_mode(m:fd()))
    assert.is_true(m:update(8, 80))
    assert.are.equal(H.le(80, 8), H.dump(path)[H.le(8, 4)])
  end)

  it("refuses lookup on access = \"w\"", function()
    local m = track(ebpf.open_id(id, { access = "w", key = "u32", value = "u64" }))
    assert.are.equal("w", fd_mode(m:fd()))
    local _, err = m:lookup(7)
    assert.are.equal("EPERM", err.code)
  end)

  it("accepts an id that is a float with an integral value, as JSON decoders give", function()
    local m = track(ebpf.open_id(id + 0.0, { key = "u32", value = "u64" }))
    assert.are.equal(id, m:info().id)
    assert.are.equal(70, m:lookup(7))
  end)

  it("raises a 'missing' error for an id no map has", function()
    local gone = track(ebpf.create{ type = "hash", key_size = 4, value_size = 4, max_entries = 1 })
    local gone_id = gone:info().id
    gone:close() -- the kernel frees it: its id is now unused
    local ok, err = pcall(ebpf.open_id, gone_id)
    assert.is_false(ok)
    assert.are.equal("missing", err.class)
    assert.are.equal(gone_id, err.id)
  end)
end)

describe("ebpf.open_name", function()
  after_each(close_tracked)

  it("opens the one loaded map with that name", function()
    local name = unique_name("on")
    local made = track(ebpf.create{ type = "hash", key = "u32", value = "u64",
      max_entries = 4, name = name })
    made:update(5, 55)
    local m = track(ebpf.open_name(name, { key = "u32", value = "u64" }))
    assert.are.equal(made:info().id, m:info().id)
    assert.are.equal("r", m:info().access)
    assert.are.equal(55, m:lookup(5))
  end)

  it("raises a 'missing' error when no map has the name", function()
    local name = unique_name("ab")
    local ok, err = pcall(ebpf.open_name, name)
    assert.is_false(ok)
    assert.are.equal("missing", err.class)
    assert.truthy(tostring(err):find(name, 1, true))
  end)

  it("raises an 'invalid' error listing both ids when two maps share the name", function()
    local name = unique_name("du")
    local a = track(ebpf.create{ type = "hash", key_size = 4, value_size = 4, max_entries = 1,
      name = name })
    local b = track(ebpf.create{ type = "array", key_size = 4, value_size = 4, max_entries = 1,
      name = name })
    local ok, err = pcall(ebpf.open_name, name)
    assert.is_false(ok)
    assert.are.equal("invalid", err.class)
    local msg = tostring(err)
    assert.truthy(msg:find("%f[%d]" .. a:info().id .. "%f[%D]"), msg)
    assert.truthy(msg:find("%f[%d]" .. b:info().id .. "%f[%D]"), msg)
  end)
end)

describe("ebpf.create", function()
  after_each(close_tracked)

  it("creates a map of each named type, as bpftool shows it", function()
    local specs = {
      { type = "hash", key_size = 4, value_size = 8 },
      { type = "array", key_size = 4, value_size = 8 },
      { type = "percpu_hash", key_size = 4, value_size = 8 },
      { type = "percpu_array", key_size = 4, value_size = 8 },
      { type = "lru_hash", key_size = 4, value_size = 8 },
      { type = "lru_percpu_hash", key_size = 4, value_size = 8 },
      { type = "queue", key_size = 0, value_size = 4 },
      { type = "stack", key_size = 0, value_size = 4 },
    }
    for _, s in ipairs(specs) do
      s.max_entries = 8
      local m = track(ebpf.create(s))
      local info = m:info()
      assert.are.equal(s.type, info.type)
      assert_info_is_bpftools(info, show_id(info.id))
      assert.are.equal(s.type:find("percpu") ~= nil, info.percpu)
    end
  end)

  it("sets flags given by name, visible in info().flags and to bpftool", function()
    local m = track(ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 8,
      flags = { "no_prealloc" } })
    assert.are.same({ "no_prealloc" }, m:info().flags)
    assert.are.equal(1, show_id(m:info().id).flags)
    local m2 = track(ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 8,
      flags = { "no_prealloc", "rdonly_prog" } })
    local got = m2:info().flags
    table.sort(got)
    assert.are.same({ "no_prealloc", "rdonly_prog" }, got)
    assert.are.equal(129, show_id(m2:info().id).flags)
  end)

  it("infers key_size and value_size from the key and value codecs", function()
    local m = track(ebpf.create{ type = "hash", key = "u16",
      value = { { "a", "u32" }, { "b", "u64" } }, max_entries = 4 })
    local s = show_id(m:info().id)
    assert.are.equal(2, s.bytes_key)
    assert.are.equal(16, s.bytes_value) -- u32, 4 bytes of padding, u64
    assert.is_true(m:update(65535, { a = 1, b = 2 }))
    assert.are.same({ a = 1, b = 2 }, m:lookup(65535))
  end)

  it("gives the map its name, up to 15 characters", function()
    local m = track(ebpf.create{ type = "hash", key_size = 4, value_size = 4, max_entries = 1,
      name = "abcdefghij_.123" })
    assert.are.equal("abcdefghij_.123", m:info().name)
    assert.are.equal("abcdefghij_.123", show_id(m:info().id).name)
  end)

  it("refuses a name of 16 characters, naming the limit and the name", function()
    local ok, err = pcall(ebpf.create, { type = "hash", key_size = 4, value_size = 4,
      max_entries = 1, name = "abcdefghijklmnop" })
    assert.is_false(ok)
    assert.matches("15", tostring(err))
    assert.truthy(tostring(err):find("abcdefghijklmnop", 1, true))
  end)

  it("refuses a name with '-', naming the allowed characters and the name", function()
    local ok, err = pcall(ebpf.create, { type = "hash", key_size = 4, value_size = 4,
      max_entries = 1, name = "my-map" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("my-map", 1, true))
    assert.truthy(tostring(err):find("A-Za-z0-9_.", 1, true))
  end)

  it("refuses an unknown type name, naming it", function()
    local ok, err = pcall(ebpf.create, { type = "hashh", key_size = 4, value_size = 4,
      max_entries = 1 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("hashh", 1, true))
  end)

  it("refuses an unknown flag name, naming it", function()
    local ok, err = pcall(ebpf.create, { type = "hash", key_size = 4, value_size = 4,
      max_entries = 1, flags = { "no_prealoc" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no_prealoc", 1, true))
  end)

  it("frees the kernel map when its handle is closed", function()
    local m = ebpf.create{ type = "hash", key_size = 4, value_size = 4, max_entries = 1 }
    local id = m:info().id
    assert.is_true(map_exists(id))
    m:close()
    assert.is_false(map_exists(id))
  end)
end)

describe("ebpf.maps", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("lists maps made by ebpf.create and by bpftool, each as bpftool shows it", function()
    local made = track(ebpf.create{ type = "percpu_array", key_size = 4, value_size = 12,
      max_entries = 3, name = unique_name("ls") })
    local path = fs:bpftool_map{ type = "hash", key = 8, value = 16, entries = 32, flags = 1 }
    local want = { [made:info().id] = true, [show(path).id] = true }
    local found = 0
    for info in ebpf.maps() do
      if want[info.id] then
        found = found + 1
        assert_info_is_bpftools(info, show_id(info.id))
        assert.are.equal(info.type == "percpu_array", info.percpu)
      end
    end
    assert.are.equal(2, found)
  end)

  it("yields each map once, in increasing id order", function()
    local seen, last = {}, 0
    for info in ebpf.maps() do
      assert.is_nil(seen[info.id])
      assert.is_true(info.id > last)
      seen[info.id], last = true, info.id
    end
  end)
end)

describe("ebpf.ncpus", function()
  it("equals the count of possible CPUs in /sys/devices/system/cpu/possible", function()
    assert.are.equal(possible_cpus(), ebpf.ncpus())
  end)
end)

describe("opts.expect", function()
  local fs, path, id
  setup(function()
    fs = H.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 64, name = "expected",
      flags = 1, fill = { [3] = 33 } }
    id = show(path).id
  end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("opens the map when every field matches, then applies the codecs", function()
    local m = track(ebpf.open(path, {
      expect = { type = "hash", key_size = 4, value_size = 8, max_entries = 64,
                 name = "expected", flags = { "no_prealloc" }, percpu = false, btf_id = 0 },
      key = "u32", value = "u64" }))
    assert.are.equal(id, m:info().id)
    assert.are.equal(33, m:lookup(3))
  end)

  it("works the same through open_id", function()
    local m = track(ebpf.open_id(id, { expect = { type = "hash", value_size = 8 },
      key = "u32", value = "u64" }))
    assert.are.equal(33, m:lookup(3))
  end)

  it("names each differing field with what was expected and what the map has", function()
    local ok, err = pcall(ebpf.open, path, {
      expect = { type = "array", key_size = 4, value_size = 16, max_entries = 64 } })
    assert.is_false(ok)
    assert.are.equal("invalid", err.class)
    local msg = tostring(err)
    assert.truthy(msg:find("type", 1, true) and msg:find("array", 1, true)
      and msg:find("hash", 1, true), msg)
    assert.truthy(msg:find("value_size", 1, true) and msg:find("16", 1, true)
      and msg:find("%f[%d]8%f[%D]"), msg)
    assert.is_nil(msg:find("key_size", 1, true), "a matching field is not named: " .. msg)
    assert.is_nil(msg:find("max_entries", 1, true), "a matching field is not named: " .. msg)
  end)

  it("closes the handle it opened when expect does not match", function()
    assert.are.equal(0, fds_on(id))
    local ok = pcall(ebpf.open, path, { expect = { max_entries = 65 } })
    assert.is_false(ok)
    assert.are.equal(0, fds_on(id))
  end)
end)

-- ------------------------------------------------------------ the handle

describe("Map:info", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("reports every field as bpftool's map show does", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 8, value = 12, entries = 100,
      name = "infotest", flags = 129 }
    local m = track(ebpf.open(path))
    local info = m:info()
    assert_info_is_bpftools(info, show(path))
    assert.are.equal("infotest", info.name)
    assert.are.equal("percpu_hash", info.type)
    assert.are.equal(8, info.key_size)
    assert.are.equal(12, info.value_size)
    assert.are.equal(100, info.max_entries)
    assert.is_true(info.percpu)
    assert.are.equal(0, info.btf_id)
    assert.are.equal("r", info.access)
  end)

  it("says percpu = false and the access it was opened with on a plain array", function()
    local path = fs:bpftool_map{ type = "array", key = 4, value = 4, entries = 5 }
    local m = track(ebpf.open(path, { access = "rw" }))
    local info = m:info()
    assert_info_is_bpftools(info, show(path))
    assert.is_false(info.percpu)
    assert.are.equal("rw", info.access)
    assert.are.same({}, info.flags)
  end)

  it("reports the btf_id of a map that has BTF, as bpftool does", function()
    local has_clang = H.has("clang")
    if not has_clang then return pending("needs clang to build a BPF object with BTF") end
    local dir = H.tmpdir("luaebpfbtf")
    local f = assert(io.open(dir .. "/m.bpf.c", "w"))
    f:write([[
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8);
    __type(key, __u32);
    __type(value, __u64);
} btfmap SEC(".maps");
SEC("socket") int prog(void *ctx) { __u32 k = 0; bpf_map_lookup_elem(&btfmap, &k); return 0; }
char LICENSE[] SEC("license") = "GPL";
]])
    f:close()
    local out, built = H.sh("clang -O2 -g -target bpf -I/usr/include/$(gcc -print-multiarch "
      .. "2>/dev/null || uname -m) -c " .. dir .. "/m.bpf.c -o " .. dir .. "/m.bpf.o")
    if not built then
      H.run("rm -rf " .. dir)
      return pending("needs a BPF toolchain: " .. out)
    end
    H.run("bpftool prog loadall " .. dir .. "/m.bpf.o " .. fs.path .. "/progs pinmaps "
      .. fs.path .. "/maps")
    H.run("rm -rf " .. dir)
    local mpath = fs.path .. "/maps/btfmap"
    local m = track(ebpf.open(mpath, { key = "u32", value = "u64" }))
    local info, s = m:info(), show(mpath)
    assert.is_truthy(s.btf_id)
    assert.are.equal(s.btf_id, info.btf_id)
    assert.is_true(info.btf_id > 0)
    assert_info_is_bpftools(info, s)
  end)
end)

describe("Map:fd", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("returns an fd above 2 that this process holds on that very map", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 4 }
    local m = track(ebpf.open(path))
    local fd = m:fd()
    assert.is_true(fd > 2)
    assert.are.equal("anon_inode:bpf-map",
      (H.run("readlink /proc/$PPID/fd/" .. fd):gsub("%s+$", "")))
    local map_id = H.run("cat /proc/$PPID/fdinfo/" .. fd):match("map_id:%s*(%d+)")
    assert.are.equal(show(path).id, tonumber(map_id))
  end)
end)

describe("tostring(Map)", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("names the type, name, id and access, and says closed after close", function()
    local path = fs:bpftool_map{ type = "lru_hash", key = 4, value = 4, name = "shown" }
    local id = show(path).id
    local m = track(ebpf.open(path, { access = "rw" }))
    local s = tostring(m)
    assert.truthy(s:find("lru_hash", 1, true), s)
    assert.truthy(s:find("shown", 1, true), s)
    assert.truthy(s:find("%f[%d]" .. id .. "%f[%D]"), s)
    assert.truthy(s:find("rw", 1, true), s)
    assert.is_nil(s:find("closed", 1, true), s)
    m:close()
    assert.truthy(tostring(m):find("closed", 1, true), tostring(m))
  end)
end)

describe("Map:close", function()
  local fs, path, id
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  before_each(function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [2] = 20 } }
    id = show(path).id
  end)
  after_each(close_tracked)

  it("releases the fd, and can be repeated", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    assert.are.equal(1, fds_on(id))
    m:close()
    assert.are.equal(0, fds_on(id))
    assert.has_no.errors(function() m:close() end)
    assert.are.equal(0, fds_on(id))
  end)

  local uses = {
    { "lookup", function(m) return m:lookup(2) end },
    { "update", function(m) return m:update(2, 1) end },
    { "delete", function(m) return m:delete(2) end },
    { "lookup_and_delete", function(m) return m:lookup_and_delete(2) end },
    { "info", function(m) return m:info() end },
    { "fd", function(m) return m:fd() end },
    { "pairs", function(m) return m:pairs() end },
    { "keys", function(m) return m:keys() end },
    { "codec", function(m) return m:codec{ value = "u64" } end },
  }
  for _, use in ipairs(uses) do
    it("raises a 'closed' error object from m:" .. use[1] .. " after close", function()
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      m:close()
      local ok, err = pcall(use[2], m)
      assert.is_false(ok)
      assert.are.equal("table", type(err), tostring(err))
      assert.are.equal("closed", err.class)
      assert.are.equal(use[1], err.op)
      assert.matches("closed", tostring(err))
    end)
  end

  it("raises 'closed' from an iterator resumed after its map was closed", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local step = m:pairs()
    m:close()
    local ok, err = pcall(step)
    assert.is_false(ok)
    assert.are.equal("closed", err.class)
  end)

  it("never reads through a reused fd number after close", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local fd = m:fd()
    m:close()
    local other_path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [2] = 99 } }
    local other = track(ebpf.open(other_path, { key = "u32", value = "u64" }))
    assert.are.equal(fd, other:fd()) -- the kernel hands out the lowest free number
    local ok, err = pcall(m.lookup, m, 2)
    assert.is_false(ok)
    assert.are.equal("closed", err.class)
  end)
end)

describe("Map garbage collection", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- in its own function so that no register of the test keeps the handle alive
  local function open_and_drop(path)
    local m = ebpf.open(path)
    return m:info().id
  end

  it("closes the fd of a handle the collector frees", function()
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 4 }
    local id = open_and_drop(path)
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(0, fds_on(id))
  end)

  it("frees a created map once its unreachable handle is collected", function()
    local id = (function()
      return ebpf.create{ type = "hash", key_size = 4, value_size = 4, max_entries = 1 }:info().id
    end)()
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_false(map_exists(id))
  end)
end)

describe("local m <close>", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  it("closes the handle when its scope ends (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then return pending("needs Lua 5.4 to-be-closed variables") end
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 4 }
    local chunk = assert(load([[
      local ebpf, path, fds_on = ...
      local id, inside, handle
      do
        local m <close> = ebpf.open(path)
        handle, id = m, m:info().id
        inside = fds_on(id)
      end
      return id, inside, fds_on(id), handle
    ]], "=close_chunk"))
    local id, inside, after, handle = chunk(ebpf, path, fds_on)
    assert.are.equal(1, inside)
    assert.are.equal(0, after) -- closed by __close, though `handle` keeps it reachable
    local ok, err = pcall(handle.info, handle)
    assert.is_false(ok)
    assert.are.equal("closed", err.class)
    assert.are.equal(show(path).id, id)
  end)

  it("closes the handle when an error leaves its scope (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then return pending("needs Lua 5.4 to-be-closed variables") end
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 4 }
    local id = show(path).id
    local chunk = assert(load([[
      local ebpf, path, keep = ...
      local m <close> = ebpf.open(path)
      keep[1] = m
      error("boom")
    ]], "=close_error_chunk"))
    local keep = {}
    local ok, err = pcall(chunk, ebpf, path, keep)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.are.equal(0, fds_on(id))
  end)
end)

-- ----------------------------------------------------- element operations

describe("Map:lookup, update, delete, lookup_and_delete on a hash", function()
  local fs, path, m
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  before_each(function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 4,
      fill = { [1] = 10, [2] = 20 } }
    m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
  end)
  after_each(close_tracked)

  it("returns the value bpftool wrote, and nil alone for an absent key", function()
    assert.are.equal(10, m:lookup(1))
    assert.are.equal(20, m:lookup(2))
    assert.are.equal(1, select("#", m:lookup(3)))
    assert.is_nil(m:lookup(3))
  end)

  it("inserts and overwrites with flag \"any\" (the default)", function()
    assert.is_true(m:update(3, 30))
    assert.is_true(m:update(1, 11, "any"))
    local entries = H.dump(path)
    assert.are.equal(H.le(30, 8), entries[H.le(3, 4)])
    assert.are.equal(H.le(11, 8), entries[H.le(1, 4)])
  end)

  it("inserts with \"noexist\" and refuses an existing key with EEXIST", function()
    assert.is_true(m:update(3, 30, "noexist"))
    local v, err = m:update(1, 99, "noexist")
    assert.is_nil(v)
    assert.are.equal("EEXIST", err.code)
    assert.are.equal("invalid", err.class)
    assert.matches("noexist", tostring(err))
    local entries = H.dump(path)
    assert.are.equal(H.le(10, 8), entries[H.le(1, 4)])
    assert.are.equal(H.le(30, 8), entries[H.le(3, 4)])
  end)

  it("overwrites with \"exist\" and refuses an absent key with ENOENT", function()
    assert.is_true(m:update(2, 22, "exist"))
    local v, err = m:update(3, 33, "exist")
    assert.is_nil(v)
    assert.are.equal("ENOENT", err.code)
    assert.are.equal("missing", err.class)
    local entries, n = H.dump(path)
    assert.are.equal(2, n)
    assert.are.equal(H.le(22, 8), entries[H.le(2, 4)])
  end)

  it("refuses a new key in a full hash with E2BIG, class 'resource'", function()
    assert.is_true(m:update(3, 3))
    assert.is_true(m:update(4, 4))
    local v, err = m:update(5, 5)
    assert.is_nil(v)
    assert.are.equal("E2BIG", err.code)
    assert.are.equal("resource", err.class)
  end)

  it("deletes: true when the key was there, false when absent", function()
    assert.is_true(m:delete(1))
    assert.is_false(m:delete(1))
    assert.is_false(m:delete(77))
    local entries, n = H.dump(path)
    assert.are.equal(1, n)
    assert.is_nil(entries[H.le(1, 4)])
  end)

  it("lookup_and_delete returns the value and removes it; nil when absent", function()
    assert.are.equal(20, m:lookup_and_delete(2))
    assert.is_nil(m:lookup_and_delete(2))
    local entries, n = H.dump(path)
    assert.are.equal(1, n)
    assert.is_nil(entries[H.le(2, 4)])
  end)
end)

describe("Map on an array", function()
  local fs, path, m
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  before_each(function()
    path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 4, fill = { [3] = 33 } }
    m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u64" }))
  end)
  after_each(close_tracked)

  it("reads every index below max_entries, zero where never written", function()
    assert.are.equal(0, m:lookup(0))
    assert.are.equal(33, m:lookup(3))
  end)

  it("returns nil for an index at or past max_entries", function()
    assert.is_nil(m:lookup(4))
    assert.is_nil(m:lookup(1000))
  end)

  it("refuses an update past max_entries with E2BIG, class 'resource'", function()
    local v, err = m:update(4, 1)
    assert.is_nil(v)
    assert.are.equal("E2BIG", err.code)
    assert.are.equal("resource", err.class)
    local _, n = H.dump(path)
    assert.are.equal(4, n)
  end)

  it("refuses delete with EINVAL, class 'invalid'", function()
    local v, err = m:delete(3)
    assert.is_nil(v)
    assert.are.equal("EINVAL", err.code)
    assert.are.equal("invalid", err.class)
    assert.are.equal(H.le(33, 8), H.dump(path)[H.le(3, 4)])
  end)
end)

describe("Map on per-CPU maps", function()
  local fs
  local ncpus = ebpf.ncpus()
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("returns ncpus values from a percpu_hash with 4-byte values, as bpftool dumps", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 4, fill = { [1] = 7 } }
    local m = track(ebpf.open(path, { key = "u32", value = "u32" }))
    local v = m:lookup(1)
    assert.are.equal(ncpus, #v)
    local per = H.dump(path)[H.le(1, 4)]
    assert.are.equal(ncpus, #per)
    for cpu = 1, ncpus do assert.are.equal(uint(per[cpu]), v[cpu]) end
    assert.are.equal(7, v[ncpus])
  end)

  it("stores one value per CPU from an array, as bpftool dumps", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 4 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u32" }))
    local vals = {}
    for cpu = 1, ncpus do vals[cpu] = 1000 + cpu end
    assert.is_true(m:update(5, vals))
    local per = H.dump(path)[H.le(5, 4)]
    for cpu = 1, ncpus do assert.are.equal(H.le(1000 + cpu, 4), per[cpu]) end
    assert.are.same(vals, m:lookup(5))
  end)

  it("stores one value on every CPU when given a single value", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 4 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u32" }))
    assert.is_true(m:update(6, 42))
    local per = H.dump(path)[H.le(6, 4)]
    assert.are.equal(ncpus, #per)
    for cpu = 1, ncpus do assert.are.equal(H.le(42, 4), per[cpu]) end
  end)

  it("lays out 12-byte values of a percpu_array at an 8-byte-rounded stride", function()
    local path = fs:bpftool_map{ type = "percpu_array", key = 4, value = 12, entries = 2 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = { "u32", 3 } }))
    local vals = {}
    for cpu = 1, ncpus do vals[cpu] = { cpu, cpu * 100, cpu * 10000 } end
    assert.is_true(m:update(1, vals))
    local per = H.dump(path)[H.le(1, 4)]
    for cpu = 1, ncpus do
      assert.are.equal(H.le(cpu, 4) .. H.le(cpu * 100, 4) .. H.le(cpu * 10000, 4), per[cpu])
    end
    assert.are.same(vals, m:lookup(1))
    local zero = m:lookup(0)
    assert.are.equal(ncpus, #zero)
    for cpu = 1, ncpus do assert.are.same({ 0, 0, 0 }, zero[cpu]) end
  end)

  it("reads what bpftool wrote into a percpu_array with 12-byte raw values", function()
    local bytes = "abcdefghijkl"
    local path = fs:bpftool_map{ type = "percpu_array", key = 4, value = 12, entries = 2,
      fill = { [1] = bytes } }
    local m = track(ebpf.open(path, { key = "u32" }))
    local v = m:lookup(1)
    assert.are.equal(ncpus, #v)
    for cpu = 1, ncpus do assert.are.equal(bytes, v[cpu]) end
  end)

  it("refuses a per-CPU array of the wrong length, naming ncpus and the length", function()
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 4 }
    local m = track(ebpf.open(path, { access = "rw", key = "u32", value = "u32" }))
    local vals = {}
    for cpu = 1, ncpus + 1 do vals[cpu] = cpu end
    local ok, err = pcall(m.update, m, 1, vals)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("%f[%d]" .. ncpus .. "%f[%D]"), tostring(err))
    assert.truthy(tostring(err):find("%f[%d]" .. (ncpus + 1) .. "%f[%D]"), tostring(err))
  end)
end)

describe("Map on queues and stacks", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  --- bpftool's peek: the value bytes at the head, or nil when empty
  local function bpftool_peek(path)
    local out, ok = H.sh("bpftool -j map peek pinned " .. path)
    if not ok then return nil end
    return H.from_hex_list(cjson.decode(out).value)
  end

  it("pushes with update(nil, v), peeks with lookup(nil), pops in FIFO order", function()
    local path = fs:bpftool_map{ type = "queue", key = 0, value = 4, entries = 8 }
    local q = track(ebpf.open(path, { access = "rw", value = "u32" }))
    assert.is_nil(q:lookup(nil))
    assert.is_true(q:update(nil, 5))
    assert.is_true(q:update(nil, 6))
    assert.are.equal(H.le(5, 4), bpftool_peek(path))
    assert.are.equal(5, q:lookup(nil))
    assert.are.equal(5, q:lookup_and_delete(nil))
    assert.are.equal(H.le(6, 4), bpftool_peek(path))
    assert.are.equal(6, q:lookup_and_delete())
    assert.is_nil(q:lookup_and_delete(nil))
    assert.is_nil(bpftool_peek(path))
  end)

  it("pops in LIFO order from a stack", function()
    local path = fs:bpftool_map{ type = "stack", key = 0, value = 4, entries = 8 }
    local s = track(ebpf.open(path, { access = "rw", value = "u32" }))
    assert.is_true(s:update(nil, 5))
    assert.is_true(s:update(nil, 6))
    assert.are.equal(H.le(6, 4), bpftool_peek(path))
    assert.are.equal(6, s:lookup())
    assert.are.equal(6, s:lookup_and_delete(nil))
    assert.are.equal(5, s:lookup_and_delete(nil))
    assert.is_nil(s:lookup(nil))
  end)

  it("pops what bpftool pushed", function()
    local path = fs:bpftool_map{ type = "queue", key = 0, value = 4, entries = 8 }
    H.run("bpftool map push pinned " .. path .. " value " .. H.hex_args(H.le(77, 4)))
    local q = track(ebpf.open(path, { access = "rw", value = "u32" }))
    assert.are.equal(77, q:lookup_and_delete(nil))
    assert.is_nil(bpftool_peek(path))
  end)

  it("refuses a key on a map that has none", function()
    local path = fs:bpftool_map{ type = "queue", key = 0, value = 4, entries = 8 }
    local q = track(ebpf.open(path, { access = "rw", value = "u32" }))
    local ok, err = pcall(q.lookup, q, 1)
    assert.is_false(ok)
    assert.matches("no keys", tostring(err))
  end)

  it("refuses a push on a full queue with E2BIG", function()
    local path = fs:bpftool_map{ type = "queue", key = 0, value = 4, entries = 1 }
    local q = track(ebpf.open(path, { access = "rw", value = "u32" }))
    assert.is_true(q:update(nil, 1))
    local v, err = q:update(nil, 2)
    assert.is_nil(v)
    assert.are.equal("E2BIG", err.code)
  end)
end)

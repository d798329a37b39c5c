-- spec/codec_defects_spec.lua: codec defects of issue 10, each against the
-- kernel: field and codec names holding a NUL byte (item 4), small BTF enums
-- with negative enumerators (item 11) and BTF types that expand far beyond
-- their bytes (item 14). The BTF maps come from spec/fixtures/btf_edges.bpf.c
-- (built here with make, loaded with ebpf.load, gone with obj:close());
-- bpftool reads and writes the bytes. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local EDGES = "spec/fixtures/btf_edges.bpf.o"
local PAIR = { { "pid", "u32" }, { "cnt", "u32" } }

local bpftool_lookup = H.bpftool_lookup

--- what fn raised, as a string, asserting it names every part
local function refused(parts, fn, ...)
  local _, msg = H.raised(fn, ...)
  H.mentions(msg, parts)
  return msg
end

describe("codecs: names holding a NUL byte (issue 10, item 4)", function()
  local m
  before_each(function()
    m = ebpf.create{ type = "hash", key = "u32", value = PAIR, max_entries = 4 }
  end)
  after_each(function() m:close() end)

  it("refuses a field name with a NUL byte in update, storing nothing", function()
    refused({ "unknown field 'pid\\0junk'", "pid", "cnt" }, m.update, m, 1, { ["pid\0junk"] = 5 })
    assert.is_nil(m:lookup(1))
    -- the same key with the real field stored beside it
    refused({ "unknown field 'cnt\\0'" }, m.update, m, 1, { pid = 1, cnt = 2, ["cnt\0"] = 3 })
    assert.is_nil(m:lookup(1))
    assert.is_true(m:update(1, { pid = 7, cnt = 9 }))
    assert.are.same({ pid = 7, cnt = 9 }, m:lookup(1))
    assert.are.equal(H.le(7, 4) .. H.le(9, 4), bpftool_lookup(m:info().id, H.le(1, 4)))
  end)

  it("refuses a field name with a NUL byte in ebpf.encode", function()
    refused({ "unknown field 'pid\\0junk'" }, ebpf.encode, PAIR, { ["pid\0junk"] = 5 })
    refused({ "unknown field 'pid\\0'" }, ebpf.encode, PAIR, { pid = 1, ["pid\0"] = 5 })
    assert.are.equal(H.le(5, 4) .. H.le(0, 4), ebpf.encode(PAIR, { pid = 5 }))
  end)

  it("still finds an unknown key among given fields, and takes every field", function()
    refused({ "unknown field 'pids'" }, ebpf.encode, PAIR, { pid = 1, cnt = 2, pids = 3 })
    refused({ "unknown field '1'" }, ebpf.encode, PAIR, { pid = 1, 7 })
    assert.are.equal(H.le(1, 4) .. H.le(2, 4), ebpf.encode(PAIR, { pid = 1, cnt = 2 }))
  end)

  it("refuses a field name with a NUL byte in a codec spec", function()
    refused({ "field 1 name", "a\\0b", "NUL" }, ebpf.sizeof, { { "a\0b", "u32" } })
    refused({ "field 2 name", "cnt\\0", "NUL" }, ebpf.encode,
      { { "cnt", "u32" }, { "cnt\0", "u32" } }, {})
    refused({ "NUL" }, m.codec, m, { value = { { "pid\0", "u32" }, { "cnt", "u32" } } })
  end)

  it("refuses codec names and options with a NUL byte", function()
    refused({ "u32\\0junk", "NUL" }, ebpf.sizeof, "u32\0junk")
    refused({ "char[4]\\0", "NUL" }, ebpf.sizeof, "char[4]\0")
    refused({ "packed\\0" }, ebpf.sizeof, { { "a", "u8" }, { "b", "u32" }, ["packed\0"] = true })
    refused({ "int64", "string\\0" }, ebpf.decode, "u64", string.rep("\0", 8),
      { int64 = "string\0" })
  end)
end)

--- builds the fixture object (make's pattern rule; the .o is not tracked)
local function build_edges()
  local out, ok = H.sh("make -s " .. EDGES)
  assert(ok, "building " .. EDGES .. ": " .. out)
  return ebpf.load(EDGES)
end

describe("btf codec: a 1-byte enum with a negative enumerator (issue 10, item 11)", function()
  local obj, m, id
  setup(function()
    obj = build_edges()
    m = obj:map("small_enum")
    id = m:info().id
  end)
  teardown(function() obj:close() end)

  it("writes NEG as the enum's byte and reads it back as NEG", function()
    assert.is_true(m:update(0, "NEG"))
    assert.are.equal("\255", bpftool_lookup(id, H.le(0, 4)))
    assert.are.equal("NEG", m:lookup(0))
    assert.is_true(m:update(1, "POS"))
    assert.are.equal("\5", bpftool_lookup(id, H.le(1, 4)))
    assert.are.equal("POS", m:lookup(1))
  end)

  it("names the byte bpftool wrote", function()
    H.run("bpftool map update id " .. id .. " key 0 0 0 0 value 0xff")
    assert.are.equal("NEG", m:lookup(0))
    H.run("bpftool map update id " .. id .. " key 0 0 0 0 value 0x03")
    assert.are.equal(3, m:lookup(0)) -- no name: the number
  end)

  it("lists the enumerators at the enum's own size", function()
    local values = m:layout().value.values
    assert.are.same({ NEG = 255, ZERO = 0, POS = 5 }, values)
  end)

  it("range-checks integers at the enum's size", function()
    assert.is_true(m:update(0, 255))
    assert.are.equal("NEG", m:lookup(0))
    refused({ "0..255", "256" }, m.update, m, 0, 256)
    refused({ "NEGATIVE" }, m.update, m, 0, "NEGATIVE")
    refused({ "NEG\\0" }, m.update, m, 0, "NEG\0")
  end)
end)

describe("btf codec: types far larger than their bytes (issue 10, item 14)", function()
  it("refuses a union whose fields double at each level, at once and saying why", function()
    local obj = build_edges()
    local m = obj:map("bomb")
    local t0 = os.clock()
    local msg = refused({ "union bomb24", "too large", "\"btf\" codec", "raw" }, m.lookup, m, 0)
    local cpu = os.clock() - t0
    obj:close()
    assert.is_true(cpu < 0.5, "refused after " .. cpu .. " s of CPU: " .. msg)
  end)

  it("still reads the map with a codec of one's own", function()
    local obj = build_edges()
    local m = obj:map("bomb")
    m:codec{ value = "u32" }
    assert.is_true(m:update(0, 42))
    assert.are.equal(42, m:lookup(0))
    obj:close()
  end)

  -- fuzz/slow/btf/btf-slow-unit.bin took 20 to 55 s in the BTF harness: a
  -- struct containing itself twice, expanded until the node limit, for every
  -- type that used it. The harness is the one way to feed a raw blob in.
  it("replays the slow units of the fuzz corpus well under their bound", function()
    local why, fuzzer = H.sh("echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)"
      .. "{return 0;}' | clang -x c -fsanitize=fuzzer -o /dev/null -")
    if not fuzzer then return pending("needs clang with libFuzzer: " .. why) end
    -- a make of its own: not this Lua's build variables, not the ASan preload
    local env = "env -u LD_PRELOAD -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA "
    H.run(env .. "make -s fuzz/fuzz_btf fuzz/fuzz_codec")
    local out, ok = H.sh(env .. "make -s fuzz-replay")
    assert(ok, out)
    local ms = tonumber(out:match("btf%-slow%-unit%.bin in (%d+) ms"))
    assert(ms, out)
    assert.is_true(ms < 1000, out)
  end)
end)

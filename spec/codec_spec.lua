-- spec/codec_spec.lua: every codec of DESIGN.md except "btf", against bytes
-- built by hand and against real maps read and written by bpftool (the
-- oracle). Shared by every Lua version: 5.1 syntax; what needs 64-bit
-- integers (5.3+) is pending elsewhere, and 5.1/LuaJIT's side of the rule
-- has its own cases ("codecs: 64-bit values beyond 2^53").
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local INT64 = math.type ~= nil and math.maxinteger ~= nil
local NEEDS_INT64 = "needs Lua 5.3+ integers (5.1/LuaJIT: see 'codecs: 64-bit values beyond 2^53')"

local function zeros(n) return string.rep("\0", n) end

local le = helpers.le -- negative integers as two's complement

local function be(v, size) return le(v, size):reverse() end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x ", c:byte()) end))
end

local mentions = helpers.mentions

-- calls fn and returns its error message; fails the test when fn succeeds
local function refused(fn, ...) return select(2, helpers.raised(fn, ...)) end

-- The cases: spec, a Lua value, and the bytes a C compiler would store for it
-- on this (little-endian) machine. `plain` is the spec for ebpf.encode and
-- ebpf.decode when `spec` needs a map to be sized ("raw").
local COMM = "bash" .. zeros(12)
local CASES = {
  { name = "raw", spec = "raw", plain = "raw[8]", value = "ab\0cdefg", bytes = "ab\0cdefg" },
  { name = "raw[3]", spec = "raw[3]", value = "\1\0\255", bytes = "\1\0\255" },
  { name = "u8", spec = "u8", value = 171, bytes = "\171" },
  { name = "u8 at 255", spec = "u8", value = 255, bytes = "\255" },
  { name = "u8 at 0", spec = "u8", value = 0, bytes = "\0" },
  { name = "u16", spec = "u16", value = 4660, bytes = "\52\18" },            -- 0x1234
  { name = "u32", spec = "u32", value = 305419896, bytes = "\120\86\52\18" }, -- 0x12345678
  { name = "u32 at 4294967295", spec = "u32", value = 4294967295, bytes = "\255\255\255\255" },
  { name = "u64", spec = "u64", value = 2826896153644816, -- 0x000a0b0c0d0e0f10
    bytes = "\16\15\14\13\12\11\10\0" },
  { name = "i8", spec = "i8", value = -1, bytes = "\255" },
  { name = "i8 at -128", spec = "i8", value = -128, bytes = "\128" },
  { name = "i8 at 127", spec = "i8", value = 127, bytes = "\127" },
  { name = "i16", spec = "i16", value = -2, bytes = "\254\255" },
  { name = "i32", spec = "i32", value = -123456789, bytes = le(-123456789, 4) },
  { name = "i32 at -2147483648", spec = "i32", value = -2147483648, bytes = "\0\0\0\128" },
  { name = "i64", spec = "i64", value = -2, bytes = "\254" .. string.rep("\255", 7) },
  { name = "be16", spec = "be16", value = 4660, bytes = "\18\52" },
  { name = "be32", spec = "be32", value = 305419896, bytes = "\18\52\86\120" },
  { name = "be64", spec = "be64", value = 2826896153644816, bytes = "\0\10\11\12\13\14\15\16" },
  { name = "bool true", spec = "bool", value = true, bytes = "\1" },
  { name = "bool false", spec = "bool", value = false, bytes = "\0" },
  { name = "f32", spec = "f32", value = 1.5, bytes = "\0\0\192\63" },         -- 0x3fc00000
  { name = "f32 negative", spec = "f32", value = -2.25, bytes = "\0\0\16\192" }, -- 0xc0100000
  { name = "f64", spec = "f64", value = 1.5, bytes = zeros(6) .. "\248\63" },
  { name = "f64 0.1", spec = "f64", value = -0.1,                            -- 0xbfb999999999999a
    bytes = "\154\153\153\153\153\153\185\191" },
  { name = "char[16]", spec = "char[16]", value = "bash", bytes = COMM },
  { name = "char[16] empty", spec = "char[16]", value = "", bytes = zeros(16) },
  { name = "char[16] full, no NUL", spec = "char[16]", value = "0123456789abcdef",
    bytes = "0123456789abcdef" },
  { name = "{ \"u32\", 4 }", spec = { "u32", 4 }, value = { 1, 2, 3, 3735928559 },
    bytes = le(1, 4) .. le(2, 4) .. le(3, 4) .. "\239\190\173\222" },
  { name = "\"u16[3]\"", spec = "u16[3]", value = { 1, 515, 65535 },
    bytes = "\1\0\3\2\255\255" },
  { name = "{ \"be16\", 2 }", spec = { "be16", 2 }, value = { 80, 443 }, bytes = "\0\80\1\187" },
  { name = "{ \"char[4]\", 2 }", spec = { "char[4]", 2 }, value = { "ab", "wxyz" },
    bytes = "ab\0\0wxyz" },
  { name = "struct { u8 a; u64 b } (b at offset 8, 16 bytes)",
    spec = { { "a", "u8" }, { "b", "u64" } }, value = { a = 1, b = 2 },
    bytes = "\1" .. zeros(7) .. "\2" .. zeros(7) },
  { name = "struct { u32 pid; char comm[16]; u64 count } (32 bytes)",
    spec = { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" } },
    value = { pid = 4242, comm = "bash", count = 7 },
    bytes = le(4242, 4) .. COMM .. zeros(4) .. le(7, 8) },
  { name = "packed struct { u32 pid; char comm[16]; u64 count } (28 bytes)",
    spec = { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" }, packed = true },
    value = { pid = 4242, comm = "bash", count = 7 },
    bytes = le(4242, 4) .. COMM .. le(7, 8) },
  { name = "struct { u8 a; char c[16]; u64 b } (32 bytes)",
    spec = { { "a", "u8" }, { "c", "char[16]" }, { "b", "u64" } },
    value = { a = 9, c = "bash", b = 3 },
    bytes = "\9" .. COMM .. zeros(7) .. le(3, 8) },
  { name = "packed struct { u8 a; char c[16]; u64 b } (25 bytes)",
    spec = { { "a", "u8" }, { "c", "char[16]" }, { "b", "u64" }, packed = true },
    value = { a = 9, c = "bash", b = 3 },
    bytes = "\9" .. COMM .. le(3, 8) },
  { name = "packed struct { u8 a; u64 b } (9 bytes)",
    spec = { { "a", "u8" }, { "b", "u64" }, packed = true }, value = { a = 1, b = 2 },
    bytes = "\1\2" .. zeros(7) },
  { name = "struct with trailing padding { u64 a; u8 b } (16 bytes)",
    spec = { { "a", "u64" }, { "b", "u8" } }, value = { a = 5, b = 6 },
    bytes = le(5, 8) .. "\6" .. zeros(7) },
  { name = "nested struct { struct { u8 a; u32 b } hdr; u8 x } (12 bytes)",
    spec = { { "hdr", { { "a", "u8" }, { "b", "u32" } } }, { "x", "u8" } },
    value = { hdr = { a = 1, b = 2 }, x = 3 },
    bytes = "\1" .. zeros(3) .. le(2, 4) .. "\3" .. zeros(3) },
  { name = "packed struct inside a struct { u8 x; packed { u8 a; u32 b } p } (6 bytes)",
    spec = { { "x", "u8" }, { "p", { { "a", "u8" }, { "b", "u32" }, packed = true } } },
    value = { x = 7, p = { a = 1, b = 2 } },
    bytes = "\7\1" .. le(2, 4) },
  { name = "array of structs { struct { u16 a; u8 b }, 3 } (12 bytes)",
    spec = { { { "a", "u16" }, { "b", "u8" } }, 3 },
    value = { { a = 1, b = 2 }, { a = 3, b = 4 }, { a = 65535, b = 255 } },
    bytes = "\1\0\2\0" .. "\3\0\4\0" .. "\255\255\255\0" },
  { name = "struct with an array and a be16 { u16 id; be16 port; u32 v[2] } (12 bytes)",
    spec = { { "id", "u16" }, { "port", "be16" }, { "v", { "u32", 2 } } },
    value = { id = 1, port = 8080, v = { 10, 20 } },
    bytes = "\1\0\31\144" .. le(10, 4) .. le(20, 4) },
  { name = "struct of every scalar",
    spec = { { "b", "bool" }, { "i8", "i8" }, { "i16", "i16" }, { "f", "f32" },
             { "d", "f64" }, { "be", "be32" }, { "name", "char[3]" }, { "u", "u16" } },
    value = { b = true, i8 = -3, i16 = -300, f = 1.5, d = 1.5, be = 1, name = "ab", u = 513 },
    bytes = "\1\253" .. le(-300, 2) .. "\0\0\192\63" .. zeros(6) .. "\248\63"
      .. "\0\0\0\1" .. "ab\0" .. "\0" .. "\1\2" .. zeros(6) },
}

describe("codecs: ebpf.encode / ebpf.decode / ebpf.sizeof", function()
  for _, c in ipairs(CASES) do
    local spec = c.plain or c.spec
    it("encodes " .. c.name .. " to the bytes C stores, and decodes them back", function()
      assert.are.equal(#c.bytes, ebpf.sizeof(spec))
      local got = ebpf.encode(spec, c.value)
      assert.are.equal(hex(c.bytes), hex(got))
      assert.are.same(c.value, ebpf.decode(spec, c.bytes))
      assert.are.same(c.value, ebpf.decode(spec, ebpf.encode(spec, c.value)))
    end)
  end

  it("decodes a char[N] up to the first NUL and ignores what follows", function()
    assert.are.equal("ab", ebpf.decode("char[8]", "ab\0cdefg"))
    assert.are.equal("ab", ebpf.decode("char[8]", "ab\0\0\0\0\0\0"))
  end)

  it("rounds an f32 to the nearest float: 0.1 is stored as 0x3dcccccd", function()
    assert.are.equal(hex("\205\204\204\61"), hex(ebpf.encode("f32", 0.1)))
    local back = ebpf.decode("f32", "\205\204\204\61")
    assert.is_true(back ~= 0.1 and math.abs(back - 0.1) < 1e-8)
  end)

  it("decodes any nonzero byte as true for bool", function()
    assert.is_true(ebpf.decode("bool", "\2"))
    assert.is_true(ebpf.decode("bool", "\255"))
    assert.is_false(ebpf.decode("bool", "\0"))
  end)

  it("ignores whatever the padding bytes hold when decoding a struct", function()
    local spec = { { "a", "u8" }, { "b", "u64" } }
    assert.are.same({ a = 1, b = 2 }, ebpf.decode(spec, "\1\170\187\204\221\238\255\17\2" .. zeros(7)))
  end)

  it("zeroes the padding bytes when encoding a struct", function()
    local got = ebpf.encode({ { "a", "u8" }, { "b", "u32" }, { "c", "u8" } }, { a = 255, b = 0, c = 255 })
    assert.are.equal(hex("\255\0\0\0\0\0\0\0\255\0\0\0"), hex(got))
  end)

  it("encodes a struct's missing fields as zero (as a C initializer does)", function()
    local spec = { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" } }
    assert.are.equal(hex(le(5, 4) .. zeros(28)), hex(ebpf.encode(spec, { pid = 5 })))
    assert.are.equal(hex(zeros(32)), hex(ebpf.encode(spec, {})))
    assert.are.same({ pid = 0, comm = "", count = 0 }, ebpf.decode(spec, ebpf.encode(spec, {})))
  end)

  it("refuses to decode a byte string of the wrong size, naming both sizes", function()
    local msg = refused(ebpf.decode, "u32", "abc")
    mentions(msg, { "4 bytes", "got 3" })
  end)
end)

describe("codecs: 64-bit boundaries", function()
  it("encodes u64 -1 as all ones and decodes all ones as -1", function()
    if not INT64 then pending(NEEDS_INT64) return end
    assert.are.equal(hex(string.rep("\255", 8)), hex(ebpf.encode("u64", -1)))
    assert.are.equal(-1, ebpf.decode("u64", string.rep("\255", 8)))
  end)

  it("decodes u64 2^63 as math.mininteger, the same 64 bits", function()
    if not INT64 then pending(NEEDS_INT64) return end
    assert.are.equal(math.mininteger, ebpf.decode("u64", zeros(7) .. "\128"))
    assert.are.equal(hex(zeros(7) .. "\128"), hex(ebpf.encode("u64", math.mininteger)))
  end)

  it("round trips u64 2^63 - 1 and 2^63 + 1", function()
    if not INT64 then pending(NEEDS_INT64) return end
    local max = math.maxinteger
    assert.are.equal(hex(string.rep("\255", 7) .. "\127"), hex(ebpf.encode("u64", max)))
    assert.are.equal(max, ebpf.decode("u64", string.rep("\255", 7) .. "\127"))
    local above = math.mininteger + 1
    assert.are.equal(hex("\1" .. zeros(6) .. "\128"), hex(ebpf.encode("u64", above)))
    assert.are.equal(above, ebpf.decode("u64", "\1" .. zeros(6) .. "\128"))
  end)

  it("round trips i64 min and max", function()
    if not INT64 then pending(NEEDS_INT64) return end
    assert.are.equal(hex(zeros(7) .. "\128"), hex(ebpf.encode("i64", math.mininteger)))
    assert.are.equal(hex(string.rep("\255", 7) .. "\127"), hex(ebpf.encode("i64", math.maxinteger)))
    assert.are.equal(math.mininteger, ebpf.decode("i64", zeros(7) .. "\128"))
    assert.are.equal(math.maxinteger, ebpf.decode("i64", string.rep("\255", 7) .. "\127"))
  end)

  it("stores be64 -1 as all ones and reads 2^63 in network order as math.mininteger", function()
    if not INT64 then pending(NEEDS_INT64) return end
    assert.are.equal(hex(string.rep("\255", 8)), hex(ebpf.encode("be64", -1)))
    assert.are.equal(math.mininteger, ebpf.decode("be64", "\128" .. zeros(7)))
  end)
end)

-- The 64-bit rule (README, "Lua versions"): 5.3+ reads every 64-bit value as
-- the exact integer. 5.1/LuaJIT reads one within 2^53 as a number and any
-- other as a decimal string (int64 = "string") or an error naming the field:
-- never a nearby number. Each case states both sides.
describe("codecs: 64-bit values beyond 2^53", function()
  local BIG = "\1\0\0\0\0\0\32\0" -- 2^53 + 1 = 0x0020000000000001
  local ONES = string.rep("\255", 8)
  local MIN = zeros(7) .. "\128"        -- i64 -2^63, u64 2^63
  local AS_STRING = { int64 = "string" }

  it("reads 2^53 and -2^53 as numbers on every Lua", function()
    assert.are.equal(2 ^ 53, ebpf.decode("u64", zeros(6) .. "\32\0"))
    assert.are.equal(-2 ^ 53, ebpf.decode("i64", zeros(6) .. "\224\255"))
    assert.are.equal(2 ^ 53, ebpf.decode("u64", zeros(6) .. "\32\0", AS_STRING))
  end)

  it("reads 2^53 + 1 as the exact integer (5.3+) or raises naming the field and its bits (5.1)", function()
    local spec = { { "pid", "u32" }, { "bytes", "u64" } }
    if INT64 then
      assert.are.same({ pid = 0, bytes = 9007199254740993 }, ebpf.decode(spec, zeros(8) .. BIG))
    else
      mentions(refused(ebpf.decode, spec, zeros(8) .. BIG),
        { "u64 field 'bytes'", "9007199254740993", "0x20000000000001", 'int64 = "string"' })
      mentions(refused(ebpf.decode, "u64", ONES), { "u64 value", "0xffffffffffffffff" })
    end
  end)

  it("names the path of a nested field, array elements included (5.1)", function()
    local spec = { { "hist", { { { "n", "i64" } }, 2 } } }
    if INT64 then
      assert.are.same({ hist = { { n = 0 }, { n = math.mininteger } } },
        ebpf.decode(spec, zeros(8) .. MIN))
    else
      mentions(refused(ebpf.decode, spec, zeros(8) .. MIN),
        { "i64 field 'hist[2].n'", "-9223372036854775808", "0x8000000000000000" })
    end
  end)

  it("reads them as decimal strings with int64 = \"string\" (5.1); 5.3+ keeps integers", function()
    if INT64 then
      assert.are.equal(-1, ebpf.decode("u64", ONES, AS_STRING))
      assert.are.equal(9007199254740993, ebpf.decode("u64", BIG, AS_STRING))
      assert.are.equal(math.mininteger, ebpf.decode("i64", MIN, AS_STRING))
    else
      assert.are.equal("18446744073709551615", ebpf.decode("u64", ONES, AS_STRING))
      assert.are.equal("18446744073709551615", ebpf.decode("be64", ONES, AS_STRING))
      assert.are.equal("9007199254740993", ebpf.decode("u64", BIG, AS_STRING))
      assert.are.equal("9223372036854775808", ebpf.decode("u64", MIN, AS_STRING))
      assert.are.equal("-9223372036854775808", ebpf.decode("i64", MIN, AS_STRING))
    end
    -- within 2^53 a value stays a number on every Lua
    assert.are.equal(7, ebpf.decode("u64", le(7, 8), AS_STRING))
    assert.are.equal(-1, ebpf.decode("i64", ONES, AS_STRING))
  end)

  it("writes decimal strings to 64-bit fields (5.1); 5.3+ takes integers only", function()
    if INT64 then
      mentions(refused(ebpf.encode, "u64", "18446744073709551615"), { "u64", "got string" })
      return
    end
    assert.are.equal(hex(ONES), hex(ebpf.encode("u64", "18446744073709551615")))
    assert.are.equal(hex(ONES), hex(ebpf.encode("u64", "-1"))) -- two's complement, as on 5.3+
    assert.are.equal(hex(MIN), hex(ebpf.encode("i64", "-9223372036854775808")))
    assert.are.equal(hex(BIG), hex(ebpf.encode("u64", "9007199254740993")))
    assert.are.equal(hex(ONES), hex(ebpf.encode("be64", "18446744073709551615")))
    for _, bad in ipairs{ "18446744073709551616", "-9223372036854775809", "1.5", " 1", "0x10", "", "-" } do
      mentions(refused(ebpf.encode, "u64", bad), { "u64", "decimal string", "got string" })
    end
    mentions(refused(ebpf.encode, "i64", "9223372036854775808"), { "i64", "got string" })
    -- narrower fields take numbers only: a number holds all their values
    mentions(refused(ebpf.encode, "u32", "5"), { "u32", "got string" })
  end)

  it("refuses a number beyond 2^53 for a 64-bit field (5.1: it may be rounded already)", function()
    if INT64 then -- 5.3+: a float with an exact integer value is that integer
      assert.are.equal(hex(zeros(7) .. "\16"), hex(ebpf.encode("u64", 2 ^ 60)))
      return
    end
    mentions(refused(ebpf.encode, "u64", 2 ^ 53 + 2), { "u64", "decimal string", "9007199254740994" })
    mentions(refused(ebpf.encode, "i64", -2 ^ 60), { "i64", "decimal string" })
    assert.are.equal(hex(zeros(6) .. "\32\0"), hex(ebpf.encode("u64", 2 ^ 53)))
    assert.are.equal(hex(zeros(6) .. "\224\255"), hex(ebpf.encode("i64", -2 ^ 53)))
  end)

  describe("on maps bpftool wrote", function()
    local fs
    setup(function() fs = helpers.mount_bpffs() end)
    teardown(function() fs:unmount() end)
    local spec = { { "a", "u64" }, { "b", "i64" } }

    it("reads by the rule; int64 on open and in m:codec{} turns strings on; writes them back", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 16, entries = 8 }
      fs:bpftool_update(path, le(1, 4), ONES .. MIN)
      local m = ebpf.open(path, { access = "rw", key = "u32", value = spec })
      finally(function() m:close() end)
      local want = INT64 and { a = -1, b = math.mininteger }
        or { a = "18446744073709551615", b = "-9223372036854775808" }
      if INT64 then
        assert.are.same(want, m:lookup(1))
      else
        mentions(refused(m.lookup, m, 1), { "u64 field 'a'", "0xffffffffffffffff" })
      end
      assert.are.equal(m, m:codec{ int64 = "string" })
      assert.are.same(want, m:lookup(1))
      assert.is_true(m:update(2, want))
      assert.are.equal(hex(ONES .. MIN), hex(helpers.dump(path)[le(2, 4)]))
      local k, v = m:codec()
      assert.are.equal("u32", k)
      assert.are.equal("struct (16 bytes)", v)
      local m2 = ebpf.open(path, { key = "u32", value = spec, int64 = "string" })
      finally(function() m2:close() end)
      assert.are.same(want, m2:lookup(2))
      m2:codec{ int64 = "number" }
      if not INT64 then refused(m2.lookup, m2, 2) end
    end)

    it("takes int64 in ebpf.create's spec too", function()
      local m = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 1,
        int64 = "string" }
      finally(function() m:close() end)
      local all_ones = INT64 and -1 or "18446744073709551615"
      assert.is_true(m:update(0, all_ones))
      assert.are.equal(all_ones, m:lookup(0))
    end)

    it("refuses an int64 option other than \"number\" or \"string\"", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 8 }
      mentions(refused(ebpf.open, path, { int64 = "hex" }), { "int64", '"number" or "string"', '"hex"' })
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      mentions(refused(m.codec, m, { int64 = 64 }), { "int64", "got number" })
      mentions(refused(ebpf.decode, "u64", zeros(8), { int64 = true }), { "int64", "got boolean" })
      mentions(refused(ebpf.decode, "u64", zeros(8), { int46 = "string" }), { "int46" })
    end)
  end)
end)

describe("codecs against bpftool", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- a pinned hash made by bpftool with 4-byte keys and `size`-byte values,
  -- opened read-write with a u32 key codec and `spec` as the value codec
  local function value_map(size, spec)
    local path = fs:bpftool_map{ type = "hash", key = 4, value = size, entries = 8 }
    return ebpf.open(path, { access = "rw", key = "u32", value = spec }), path
  end

  for _, c in ipairs(CASES) do
    it("writes " .. c.name .. " as a value that bpftool reads as the same bytes", function()
      local m, path = value_map(#c.bytes, c.spec)
      finally(function() m:close() end)
      assert.is_true(m:update(1, c.value))
      local entries, n = helpers.dump(path)
      assert.are.equal(1, n)
      assert.are.equal(hex(c.bytes), hex(entries[le(1, 4)]))
    end)

    it("decodes " .. c.name .. " from a value bpftool wrote", function()
      local m, path = value_map(#c.bytes, c.spec)
      finally(function() m:close() end)
      fs:bpftool_update(path, le(2, 4), c.bytes)
      assert.are.same(c.value, m:lookup(2))
    end)

    it("uses " .. c.name .. " as a key codec in both directions with bpftool", function()
      local path = fs:bpftool_map{ type = "hash", key = #c.bytes, value = 4, entries = 8 }
      local m = ebpf.open(path, { access = "rw", key = c.spec, value = "u32" })
      finally(function() m:close() end)
      assert.is_true(m:update(c.value, 77))
      local entries = helpers.dump(path)
      assert.are.equal(hex(le(77, 4)), hex(entries[c.bytes] or ""))
      assert.are.equal(77, m:lookup(c.value))
      assert.is_true(m:delete(c.value))
      fs:bpftool_update(path, c.bytes, le(88, 4))
      local keys = {}
      for k in m:keys() do keys[#keys + 1] = k end
      assert.are.same({ c.value }, keys)
    end)
  end

  it("stores be16/be32/be64 in network byte order, as bpftool shows", function()
    local path = fs:bpftool_map{ type = "hash", key = 2, value = 12, entries = 8 }
    local m = ebpf.open(path, { access = "rw", key = "be16",
      value = { { "a", "be32" }, { "b", "be64" }, packed = true } })
    finally(function() m:close() end)
    assert.is_true(m:update(258, { a = 16909060, b = 283686952306183 })) -- 0x0102, 0x01020304, 0x0001020304050607
    local entries = helpers.dump(path)
    assert.are.equal(hex("\1\2\3\4\0\1\2\3\4\5\6\7"), hex(entries["\1\2"] or ""))
    fs:bpftool_update(path, "\0\80", "\0\0\1\187" .. zeros(7) .. "\80")
    assert.are.same({ a = 443, b = 80 }, m:lookup(80))
  end)

  it("reads bytes bpftool wrote into a struct's padding as nothing", function()
    local m, path = value_map(16, { { "a", "u8" }, { "b", "u64" } })
    finally(function() m:close() end)
    fs:bpftool_update(path, le(3, 4), "\1\170\170\170\170\170\170\170\2" .. zeros(7))
    assert.are.same({ a = 1, b = 2 }, m:lookup(3))
  end)

  it("writes a struct's missing fields as zero bytes, as bpftool shows", function()
    local spec = { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" } }
    local m, path = value_map(32, spec)
    finally(function() m:close() end)
    fs:bpftool_update(path, le(1, 4), string.rep("\255", 32))
    assert.is_true(m:update(1, { comm = "sh" }))
    local entries = helpers.dump(path)
    assert.are.equal(hex(zeros(4) .. "sh" .. zeros(26)), hex(entries[le(1, 4)]))
  end)

  it("writes u64 -1 as all ones, as bpftool shows", function()
    local m, path = value_map(8, "u64")
    finally(function() m:close() end)
    assert.is_true(m:update(1, -1))
    assert.are.equal(hex(string.rep("\255", 8)), hex(helpers.dump(path)[le(1, 4)]))
  end)

  it("reads u64 0xffffffffffffffff written by bpftool as -1", function()
    if not INT64 then pending(NEEDS_INT64) return end
    local m, path = value_map(8, "u64")
    finally(function() m:close() end)
    fs:bpftool_update(path, le(1, 4), string.rep("\255", 8))
    assert.are.equal(-1, m:lookup(1))
  end)

  it("reads u64 2^63 written by bpftool as math.mininteger and writes it back unchanged", function()
    if not INT64 then pending(NEEDS_INT64) return end
    local m, path = value_map(8, "u64")
    finally(function() m:close() end)
    fs:bpftool_update(path, le(1, 4), zeros(7) .. "\128")
    local v = m:lookup(1)
    assert.are.equal(math.mininteger, v)
    assert.is_true(m:update(2, v))
    assert.are.equal(hex(zeros(7) .. "\128"), hex(helpers.dump(path)[le(2, 4)]))
  end)

  it("writes i64 min and max as bpftool shows them, and reads them back", function()
    if not INT64 then pending(NEEDS_INT64) return end
    local m, path = value_map(8, "i64")
    finally(function() m:close() end)
    assert.is_true(m:update(1, math.mininteger))
    assert.is_true(m:update(2, math.maxinteger))
    local entries = helpers.dump(path)
    assert.are.equal(hex(zeros(7) .. "\128"), hex(entries[le(1, 4)]))
    assert.are.equal(hex(string.rep("\255", 7) .. "\127"), hex(entries[le(2, 4)]))
    fs:bpftool_update(path, le(3, 4), zeros(7) .. "\128")
    assert.are.equal(math.mininteger, m:lookup(3))
  end)

  it("writes u64 2^63 - 1 and u64 keys above 2^63 as bpftool shows them", function()
    if not INT64 then pending(NEEDS_INT64) return end
    local path = fs:bpftool_map{ type = "hash", key = 8, value = 8, entries = 8 }
    local m = ebpf.open(path, { access = "rw", key = "u64", value = "u64" })
    finally(function() m:close() end)
    assert.is_true(m:update(math.mininteger + 5, math.maxinteger))
    local entries = helpers.dump(path)
    assert.are.equal(hex(string.rep("\255", 7) .. "\127"), hex(entries["\5" .. zeros(6) .. "\128"] or ""))
  end)

  it("writes u32 4294967295 and u8 255 as all ones, as bpftool shows", function()
    local m, path = value_map(5, { { "a", "u32" }, { "b", "u8" }, packed = true })
    finally(function() m:close() end)
    assert.is_true(m:update(1, { a = 4294967295, b = 255 }))
    assert.are.equal(hex(string.rep("\255", 5)), hex(helpers.dump(path)[le(1, 4)]))
  end)
end)

describe("codecs: refusals", function()
  local fs, m, path
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(function() if m then m:close(); m = nil end end)

  -- a read-write map with the given codecs holding key 1 -> `init` bytes (as
  -- bpftool wrote them); after a refused write, it must still hold them
  local function fixture(ksize, vsize, kspec, vspec)
    path = fs:bpftool_map{ type = "hash", key = ksize, value = vsize, entries = 8,
      fill = { [le(1, ksize)] = string.rep("\90", vsize) } }
    m = ebpf.open(path, { access = "rw", key = kspec, value = vspec })
    return m
  end

  local function unchanged(ksize, vsize)
    local entries, n = helpers.dump(path)
    assert.are.equal(1, n)
    assert.are.equal(hex(string.rep("\90", vsize)), hex(entries[le(1, ksize)]))
  end

  it("refuses u8 256, naming u8's range and 256", function()
    fixture(4, 1, "u32", "u8")
    mentions(refused(m.update, m, 1, 256), { "value", "u8", "0..255", "256" })
    unchanged(4, 1)
  end)

  it("refuses u8 -1, naming u8's range and -1", function()
    fixture(4, 1, "u32", "u8")
    mentions(refused(m.update, m, 1, -1), { "u8", "0..255", "-1" })
    unchanged(4, 1)
  end)

  it("refuses u32 4294967296, naming u32's range and the number", function()
    fixture(4, 4, "u32", "u32")
    mentions(refused(m.update, m, 1, 4294967296), { "u32", "0..4294967295", "4294967296" })
    unchanged(4, 4)
  end)

  it("refuses i8 128 and -129, naming i8's range", function()
    fixture(4, 1, "u32", "i8")
    mentions(refused(m.update, m, 1, 128), { "i8", "-128..127", "128" })
    mentions(refused(m.update, m, 1, -129), { "i8", "-128..127", "-129" })
    unchanged(4, 1)
  end)

  it("refuses i16 32768, naming i16's range", function()
    fixture(4, 2, "u32", "i16")
    mentions(refused(m.update, m, 1, 32768), { "i16", "-32768..32767", "32768" })
    unchanged(4, 2)
  end)

  it("refuses be16 65536, naming be16's range", function()
    fixture(4, 2, "u32", "be16")
    mentions(refused(m.update, m, 1, 65536), { "be16", "0..65535", "65536" })
    unchanged(4, 2)
  end)

  it("refuses an out-of-range key, naming the key", function()
    fixture(2, 4, "u16", "u32")
    mentions(refused(m.update, m, 65536, 1), { "key", "u16", "65536" })
    mentions(refused(m.lookup, m, -1), { "key", "u16", "-1" })
    unchanged(2, 4)
  end)

  it("refuses a string for an integer codec, naming the type given", function()
    fixture(4, 4, "u32", "u32")
    mentions(refused(m.update, m, 1, "12"), { "value", "u32", "string" })
    mentions(refused(m.update, m, "1", 12), { "key", "u32", "string" })
    unchanged(4, 4)
  end)

  it("refuses a number for bool, naming boolean and the number", function()
    fixture(4, 1, "u32", "bool")
    mentions(refused(m.update, m, 1, 1), { "boolean", "1" })
    unchanged(4, 1)
  end)

  it("refuses a string for f64, naming f64 and string", function()
    fixture(4, 8, "u32", "f64")
    mentions(refused(m.update, m, 1, "1.5"), { "f64", "string" })
    unchanged(4, 8)
  end)

  it("refuses a number for char[16], naming the string expected and the number", function()
    fixture(4, 16, "u32", "char[16]")
    mentions(refused(m.update, m, 1, 5), { "string", "16 bytes", "5" })
    unchanged(4, 16)
  end)

  it("refuses a number for a struct, naming a table and the number", function()
    fixture(4, 8, "u32", { { "a", "u32" }, { "b", "u32" } })
    mentions(refused(m.update, m, 1, 7), { "table", "7" })
    unchanged(4, 8)
  end)

  it("refuses a string for an array, naming a table of N elements and string", function()
    fixture(4, 16, "u32", { "u32", 4 })
    mentions(refused(m.update, m, 1, "abcd"), { "table", "4 elements", "string" })
    unchanged(4, 16)
  end)

  it("refuses a float with a fraction for an integer codec, naming the number", function()
    fixture(4, 8, "u32", "u64")
    mentions(refused(m.update, m, 1, 1.5), { "u64", "1.5" })
    mentions(refused(m.update, m, 1.25, 1), { "key", "u32", "1.25" })
    unchanged(4, 8)
  end)

  it("refuses NaN and infinity for an integer codec", function()
    fixture(4, 4, "u32", "i32")
    mentions(refused(m.update, m, 1, 0 / 0), { "i32", "nan" })
    mentions(refused(m.update, m, 1, math.huge), { "i32", "inf" })
    unchanged(4, 4)
  end)

  it("refuses a 17-byte string for char[16], naming both lengths", function()
    fixture(4, 16, "u32", "char[16]")
    mentions(refused(m.update, m, 1, string.rep("x", 17)), { "at most 16 bytes", "17 bytes" })
    unchanged(4, 16)
  end)

  it("refuses a raw value of the wrong length, naming both lengths", function()
    fixture(4, 8, "u32", "raw")
    mentions(refused(m.update, m, 1, "abc"), { "value", "8 bytes", "3 bytes" })
    mentions(refused(m.update, m, 1, string.rep("x", 9)), { "8 bytes", "9 bytes" })
    unchanged(4, 8)
  end)

  it("refuses a raw key of the wrong length, naming both lengths", function()
    fixture(4, 8, nil, nil)
    mentions(refused(m.lookup, m, "\1\0"), { "key", "4 bytes", "2 bytes" })
    unchanged(4, 8)
  end)

  it("refuses an array with the wrong element count, naming both counts", function()
    fixture(4, 16, "u32", { "u32", 4 })
    mentions(refused(m.update, m, 1, { 1, 2, 3 }), { "4 elements", "3 elements" })
    mentions(refused(m.update, m, 1, { 1, 2, 3, 4, 5 }), { "4 elements", "5 elements" })
    unchanged(4, 16)
  end)

  it("refuses a bad element inside an array, naming its index", function()
    fixture(4, 6, "u32", "u16[3]")
    mentions(refused(m.update, m, 1, { 1, 70000, 3 }), { "[2]", "u16", "70000" })
    unchanged(4, 6)
  end)

  it("refuses a bad field inside a nested struct, naming its path", function()
    fixture(4, 12, "u32", { { "hdr", { { "a", "u8" }, { "b", "u32" } } }, { "x", "u8" } })
    mentions(refused(m.update, m, 1, { hdr = { a = 300, b = 1 }, x = 1 }), { "hdr.a", "u8", "300" })
    unchanged(4, 12)
  end)

  it("refuses an unknown struct field, naming it and the fields the struct has", function()
    fixture(4, 8, "u32", { { "pid", "u32" }, { "tgid", "u32" } })
    mentions(refused(m.update, m, 1, { pid = 1, bogus = 2 }), { "bogus", "pid", "tgid" })
    unchanged(4, 8)
  end)

  it("refuses an unknown codec name, naming it and the known names", function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 4, entries = 8 }
    mentions(refused(ebpf.open, path, { value = "u31" }), { "u31", "u8..u64", "char[N]" })
    mentions(refused(ebpf.sizeof, "uint32"), { "uint32", "u8..u64" })
  end)

  it("refuses an unknown codec name inside a struct", function()
    mentions(refused(ebpf.sizeof, { { "a", "u32" }, { "b", "float" } }), { "float", "u8..u64" })
  end)

  it("refuses m:codec{ value = ... } of another size, naming both sizes", function()
    fixture(4, 8, "u32", "u64")
    mentions(refused(m.codec, m, { value = "u32" }), { "value", "4 bytes", "8-byte" })
  end)

  it("refuses m:codec{ key = ... } of another size, naming both sizes", function()
    fixture(4, 8, "u32", "u64")
    mentions(refused(m.codec, m, { key = { { "a", "u32" }, { "b", "u8" } } }),
      { "key", "8 bytes", "4-byte" })
  end)

  it("refuses opts.key of another size at open, naming both sizes", function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 8 }
    mentions(refused(ebpf.open, path, { key = "u64" }), { "key", "8 bytes", "4-byte" })
  end)

  it("refuses opts.value of another size at open, naming both sizes", function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 8 }
    mentions(refused(ebpf.open, path, { value = "char[16]" }), { "value", "16 bytes", "8-byte" })
  end)

  it("refuses opts.value of another size together with opts.expect", function()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 8 }
    mentions(refused(ebpf.open, path, { expect = { type = "hash" }, value = "u16" }),
      { "value", "2 bytes", "8-byte" })
  end)

  it("refuses a key codec of another size than key_size in ebpf.create, naming both", function()
    mentions(refused(ebpf.create, { type = "hash", key = "u64", key_size = 4, value_size = 4,
      max_entries = 4 }), { "key", "8 bytes", "4" })
  end)

  it("returns both codec descriptions from m:codec()", function()
    fixture(4, 32, "u32", { { "pid", "u32" }, { "comm", "char[16]" }, { "count", "u64" } })
    local k, v = m:codec()
    assert.are.equal("u32", k)
    assert.is_truthy(v:find("32", 1, true), v)
    m:codec{ key = "be32", value = "char[32]" }
    k, v = m:codec()
    assert.are.equal("be32", k)
    assert.are.equal("char[32]", v)
  end)

  it("describes the codecs as raw when none was set", function()
    fixture(4, 8, nil, nil)
    local k, v = m:codec()
    assert.are.equal("raw", k)
    assert.are.equal("raw", v)
  end)

  it("keeps the previous codecs after an m:codec{} with a wrong value size", function()
    fixture(4, 8, "u32", "u64")
    refused(m.codec, m, { key = "i32", value = "u16" })
    local k, v = m:codec()
    assert.are.equal("u32", k)
    assert.are.equal("u64", v)
    fs:bpftool_update(path, le(4000000000, 4), le(9, 8))
    assert.are.equal(9, m:lookup(4000000000)) -- an i32 key codec would refuse it
  end)

  it("keeps the previous codecs after an m:codec{} with an unknown codec", function()
    fixture(4, 8, "u32", "u64")
    refused(m.codec, m, { key = "raw", value = "nope" })
    local k, v = m:codec()
    assert.are.equal("u32", k)
    assert.are.equal("u64", v)
  end)

  it("keeps the previous codecs after an m:codec{} with a wrong key size", function()
    fixture(4, 8, "u32", "u64")
    refused(m.codec, m, { key = "u16", value = "f64" })
    local k, v = m:codec()
    assert.are.equal("u32", k)
    assert.are.equal("u64", v)
    m:codec{ int64 = "string" } -- 0x5a5a...: beyond 2^53, a decimal string on LuaJIT
    assert.are.equal(hex(string.rep("\90", 8)), hex(ebpf.encode("u64", m:lookup(1))))
  end)
end)

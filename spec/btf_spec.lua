-- spec/btf_spec.lua: the "btf" codec against the maps of bpf/shapes.bpf.o,
-- whose BTF holds every shape the codec reads: integers of each size and
-- sign, bool, char arrays, arrays, a nested struct, a union, an anonymous
-- struct, an enum, typedef'd and const volatile fields, bitfields, padding and
-- a struct bpf_spin_lock. The maps come two ways: pinned by `bpftool prog
-- loadall ... pinmaps` and opened with ebpf.open (BTF loaded on first use),
-- and from ebpf.load() with obj:map(). bpftool is the oracle: its `map dump
-- -j` "formatted" output and raw bytes for decoding, its `btf dump` for the
-- layout; strace shows the BPF_F_LOCK flag. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local OBJ = "bpf/shapes.bpf.o"
local NCPUS = ebpf.ncpus()

-- ------------------------------------------------------------ local helpers

local int = H.int

local le = H.le -- negative integers as two's complement

local uint = H.uint

--- 8 little-endian bytes as luaebpf reads them: on 5.3+ the Lua integer with
-- those 64 bits (u64 >= 2^63 reads negative), elsewhere the nearest double
local function int64(bytes, signed)
  if string.unpack then return (string.unpack("<i8", bytes)) end
  if signed and bytes:byte(8) >= 128 then -- -(~x + 1), exact where x is
    return -(uint((bytes:gsub(".", function(c) return string.char(255 - c:byte()) end))) + 1)
  end
  return uint(bytes)
end

--- asserts that a decoded 64-bit field holds the 8 bytes (exact on 5.3+)
local function assert_64(got, bytes, signed, what)
  local want = int64(bytes, signed)
  if string.unpack then
    assert.are.equal(want, got, what)
  else
    assert.is_true(math.abs(got - want) <= math.abs(want) * 2 ^ -50, what)
  end
end

--- the string up to the first NUL
local function upto_nul(s)
  local i = s:find("\0", 1, true)
  return i and s:sub(1, i - 1) or s
end

local function pad(s, n) return s .. string.rep("\0", n - #s) end

local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  return s
end

--- a shape_value's bytes as this Lua can read them: where numbers are
-- doubles (5.1, LuaJIT), luaebpf refuses u64 values beyond 2^53, so the 64-bit
-- fields (u64v at 8, s64v at 16, in.bytes at 64) keep their top 11 bits clear
local function readable(v)
  if math.maxinteger then return v end
  for _, off in ipairs({ 8, 16, 64 }) do
    v = v:sub(1, off + 6) .. string.char(v:byte(off + 7) % 32) .. "\0" .. v:sub(off + 9)
  end
  return v
end

local sorted_keys = H.sorted_keys

local mentions = H.mentions

local raised = H.raised

--- bpftool's dump of a map (REF is "pinned PATH" or "id N"): an array of
-- { key = bytes, value = bytes | values = { per-CPU bytes }, formatted = json }
local function dump(ref)
  local out = {}
  for _, e in ipairs(cjson.decode(H.run("bpftool -j map dump " .. ref))) do
    local r = { key = H.from_hex_list(e.key), formatted = e.formatted }
    if e.values then
      r.values = {}
      for _, cv in ipairs(e.values) do r.values[cv.cpu + 1] = H.from_hex_list(cv.value) end
    else
      r.value = H.from_hex_list(e.value)
    end
    out[#out + 1] = r
  end
  return out
end

--- the entry of a dump with these key bytes, or nil
local function entry(entries, kbytes)
  for _, e in ipairs(entries) do if e.key == kbytes then return e end end
end

local bpftool_update = H.bpftool_update

--- deletes every entry of a hash map with bpftool
local function clear(ref)
  for _, e in ipairs(dump(ref)) do
    H.run(string.format("bpftool map delete %s key %s", ref, H.hex_args(e.key)))
  end
end

-- every handle a test makes goes through track(); after_each closes them all
local track, close_tracked = H.tracker()

-- --------------------------------------------- the oracle for struct shape_value

-- bytes of struct shape_key { pid_type pid; char comm[8]; }
local function key_bytes(pid, comm) return le(pid, 4) .. pad(comm, 8) end

--- a char[N] read by luaebpf against bpftool's formatted form and the bytes:
-- luaebpf gives the string up to the first NUL; bpftool a string when the
-- bytes are printable, else an array of signed numbers
local function assert_chars(got, fmt, raw, what)
  assert.are.equal(upto_nul(raw), got, what)
  if type(fmt) == "string" then
    -- bpftool 7.1 mangles a printable char array holding '\' or '"' in its
    -- JSON (bytes 5c 54 come out as "\nT"): the bytes decide then
    if not got:find('[\\"]') then assert.are.equal(fmt, got, what) end
  else
    local t = {}
    for i, n in ipairs(fmt) do t[i] = string.char(n % 256) end
    assert.are.equal(raw, table.concat(t), what .. " (bpftool's bytes)")
  end
end

--- the bitfields in the 32-bit storage unit at offset 88: { bits, bit offset }
local BITS = { bf_lo = { 3, 0 }, bf_mid = { 12, 3 }, bf_hi = { 17, 15 } }

--- a decoded shape_key against bpftool's formatted key and the key bytes
local function assert_key_agrees(k, f, raw)
  assert.are.same({ "comm", "pid" }, sorted_keys(k))
  assert.are.equal(uint(raw:sub(1, 4)), k.pid)
  assert.are.equal(f.pid, k.pid)
  assert_chars(k.comm, f.comm, raw:sub(5, 12), "key.comm")
end

--- a decoded shape_value against bpftool's formatted value and the value bytes
-- (offsets are the C layout of shape_value, which the layout test checks)
local function assert_value_agrees(v, f, raw)
  -- the same fields as bpftool shows, with its "" (anonymous struct) flattened
  local names = {}
  for k, x in pairs(f) do
    if k == "" then
      for k2 in pairs(x) do names[#names + 1] = k2 end
    else
      names[#names + 1] = k
    end
  end
  table.sort(names)
  assert.are.same(names, sorted_keys(v))
  for _, k in ipairs({ "u8v", "s16v", "s32v", "flag", "cv" }) do
    assert.are.equal(f[k], v[k], k)
  end
  -- enum color is unsigned in the BTF (every enumerator >= 0), and luaebpf
  -- reads a value with no enumerator unsigned; bpftool 7.1 prints it as a
  -- signed 32-bit int whatever the BTF says, so compare its number mod 2^32
  if type(f.color) == "string" then
    assert.are.equal(f.color, v.color, "color")
  else
    assert.are.equal(uint(raw:sub(81, 84)), v.color, "color")
    assert.are.equal(f.color % 2 ^ 32, v.color, "color (bpftool)")
  end
  -- 64-bit integers: cjson rounds those of 2^53 and up, the bytes do not
  assert_64(v.u64v, raw:sub(9, 16), false, "u64v")
  if math.abs(f.u64v) < 2 ^ 53 then assert.are.equal(f.u64v, v.u64v) end
  assert_64(v.s64v, raw:sub(17, 24), true, "s64v")
  if math.abs(f.s64v) < 2 ^ 53 then assert.are.equal(f.s64v, v.s64v) end
  assert_chars(v.name, f.name, raw:sub(26, 37), "name")
  assert.are.same(f.list, v.list)
  assert.are.equal(3, #v.list)
  local inn, finn = v["in"], f["in"]
  assert.are.same({ "bytes", "delta", "port" }, sorted_keys(inn))
  assert.are.equal(finn.port, inn.port)
  assert.are.equal(finn.delta, inn.delta)
  assert_64(inn.bytes, raw:sub(65, 72), false, "in.bytes")
  assert.are.same(f.u, v.u) -- both members of the union
  assert.are.equal(uint(raw:sub(73, 76)), v.u.as_u32)
  assert.are.equal(f[""].anon_a, v.anon_a)
  assert.are.equal(f[""].anon_b, v.anon_b)
  -- bitfields: bpftool shows their bits as hex strings
  local word = uint(raw:sub(89, 92))
  for name, b in pairs(BITS) do
    local want = math.floor(word / 2 ^ b[2]) % 2 ^ b[1]
    assert.are.equal(want, v[name], name)
    assert.are.equal(want, tonumber(f[name]), name .. " (bpftool)")
  end
  local sb = raw:byte(93) % 32 -- bf_signed: the low 5 bits of byte 92
  assert.are.equal(sb >= 16 and sb - 32 or sb, v.bf_signed, "bf_signed")
  assert.are.equal(sb, tonumber(f.bf_signed), "bf_signed (bpftool)")
end

--- the bytes a C compiler stores for a struct shape_value (64-bit fields and
-- enum numbers given as integers below 2^53 in magnitude)
local function value_bytes(t)
  local word = t.bf_lo + t.bf_mid * 2 ^ 3 + t.bf_hi * 2 ^ 15
  return le(t.u8v, 1) .. "\0" .. le(t.s16v, 2) .. le(t.s32v, 4) .. le(t.u64v, 8)
    .. le(t.s64v, 8) .. (t.flag and "\1" or "\0") .. pad(t.name, 12) .. "\0\0\0"
    .. le(t.list[1], 4) .. le(t.list[2], 4) .. le(t.list[3], 4) .. "\0\0\0\0"
    .. le(t["in"].port, 2) .. le(t["in"].delta, 1) .. "\0\0\0\0\0" .. le(t["in"].bytes, 8)
    .. le(t.as_u32, 4) .. le(t.anon_a, 2) .. le(t.anon_b, 2) .. le(t.color_value, 4)
    .. le(t.cv, 4) .. le(word, 4) .. le(t.bf_signed % 32, 1) .. "\0\0\0"
end

--- a struct shape_value table with every field set
local function full_value()
  return {
    u8v = 255, s16v = -32768, s32v = 2147483647, u64v = 1234567890123,
    s64v = -1234567890123, flag = true, name = "hello, btf", list = { 1, 2, 4294967295 },
    ["in"] = { port = 65535, delta = -128, bytes = 1099511627776 },
    u = { as_u32 = 67305985 }, anon_a = 1, anon_b = 65535, color = "BLUE", cv = 42,
    bf_lo = 7, bf_mid = 4095, bf_hi = 131071, bf_signed = -16,
  }
end

--- what luaebpf should read back for full_value(): the union's other view too
local function full_value_decoded()
  local v = full_value()
  v.u.as_bytes = { 1, 2, 3, 4 }
  return v
end

--- full_value() as value_bytes() wants it
local function full_value_flat()
  local v = full_value()
  v.as_u32 = v.u.as_u32
  v.color_value = 7
  return v
end

-- ------------------------------------------------------------ map sources

--- maps pinned by `bpftool prog loadall ... pinmaps`, opened with ebpf.open
local function pinned_source()
  local S = { name = "maps pinned by bpftool, opened with ebpf.open (BTF loaded on first use)" }
  function S.setup()
    S.fs = H.mount_bpffs()
    H.run(string.format("bpftool prog loadall %s %s/p pinmaps %s/m", OBJ, S.fs.path, S.fs.path))
  end
  function S.teardown() S.fs:unmount() end
  function S.path(name) return S.fs.path .. "/m/" .. name end
  function S.ref(name) return "pinned " .. S.path(name) end
  function S.open(name, opts)
    opts = opts or {}
    opts.access = "rw"
    return track(ebpf.open(S.path(name), opts))
  end
  return S
end

--- maps of ebpf.load(OBJ), taken with obj:map(); bpftool reaches them by id
local function object_source()
  local S = { name = "maps of ebpf.load(), taken with obj:map()" }
  local ids = {}
  function S.setup()
    S.fs = H.mount_bpffs()
    S.obj = ebpf.load(OBJ)
    for name, m in S.obj:maps() do
      ids[name] = m:info().id
      m:close()
    end
  end
  function S.teardown()
    S.obj:close()
    S.fs:unmount()
  end
  function S.ref(name) return "id " .. string.format("%d", assert(ids[name], name)) end
  function S.open(name, opts)
    local m = track(S.obj:map(name))
    if opts and (opts.key or opts.value) then m:codec{ key = opts.key, value = opts.value } end
    return m
  end
  return S
end

-- --------------------------------------------------------------- the specs

for _, S in ipairs({ pinned_source(), object_source() }) do

describe("the \"btf\" codec, " .. S.name, function()
  setup(function() S.setup() end)
  teardown(function() S.teardown() end)
  before_each(function() clear(S.ref("shapes")) end)
  after_each(close_tracked)

  it("decodes every field of random entries as bpftool's formatted dump shows them", function()
    local ref = S.ref("shapes")
    local pids = {}
    for _ = 1, 24 do
      local k = random_bytes(12)
      while pids[k:sub(1, 4)] do k = random_bytes(12) end
      pids[k:sub(1, 4)] = true
      bpftool_update(ref, k, readable(random_bytes(96)))
    end
    local entries = dump(ref)
    assert.are.equal(24, #entries)
    local m = S.open("shapes")
    local by_pid, n = {}, 0
    for k, v in m:pairs() do
      by_pid[k.pid] = { k = k, v = v }
      n = n + 1
    end
    assert.are.equal(24, n)
    local byraw = S.open("shapes", { key = "raw" }) -- raw keys, the value still from BTF
    for _, e in ipairs(entries) do
      local got = by_pid[uint(e.key:sub(1, 4))]
      assert.is_table(got)
      assert_key_agrees(got.k, e.formatted.key, e.key)
      assert_value_agrees(got.v, e.formatted.value, e.value)
      assert.are.same(got.v, byraw:lookup(e.key)) -- lookup decodes as the walk does
    end
  end)

  it("decodes an all-zero, an all-ones and a printable entry", function()
    local ref = S.ref("shapes")
    local printable = "\42\0\0\0" .. string.rep("\0", 4) .. le(math.maxinteger and -5 or 5, 8) .. le(-6, 8) .. "\1"
      .. pad("hello", 12) .. string.rep("\0", 43) .. le(7, 4) .. string.rep("\0", 12)
    assert.are.equal(96, #printable)
    local values = {
      [key_bytes(0, "")] = string.rep("\0", 96),
      [key_bytes(4294967295, "\255\255\255\255\255\255\255\255")] = readable(string.rep("\255", 96)),
      [key_bytes(42, "lua")] = printable,
    }
    for k, v in pairs(values) do bpftool_update(ref, k, v) end
    local m = S.open("shapes")
    local byraw = S.open("shapes", { key = "raw" })
    local entries = dump(ref)
    assert.are.equal(3, #entries)
    local seen = 0
    for k, v in m:pairs() do
      local kb = le(k.pid, 4) .. pad(k.comm, 8)
      local e = entry(entries, kb)
      assert.is_table(e, "luaebpf walked a key bpftool does not have")
      assert_key_agrees(k, e.formatted.key, e.key)
      assert_value_agrees(v, e.formatted.value, e.value)
      assert.are.same(v, byraw:lookup(e.key))
      seen = seen + 1
    end
    assert.are.equal(3, seen)
    local zero = m:lookup({ pid = 0, comm = "" })
    assert.are.equal("", zero.name)
    assert.are.equal("RED", zero.color)
    assert.are.equal(false, zero.flag)
    local ones = m:lookup({ pid = 4294967295, comm = "\255\255\255\255\255\255\255\255" })
    assert.are.equal(string.rep("\255", 12), ones.name) -- no NUL: all 12 bytes
    assert.are.equal(4294967295, ones.color)           -- no enumerator: the integer
    assert.are.equal(-1, ones.bf_signed)
    if math.maxinteger then assert.are.equal(-1, ones.s64v) end
    if math.maxinteger then assert.are.equal(-1, ones.u64v) end -- 2^64-1 wraps to -1
    local p = m:lookup({ pid = 42, comm = "lua" })
    assert.are.equal("hello", p.name)
    assert.are.equal("BLUE", p.color)
    if math.maxinteger then assert.are.equal(-5, p.u64v) end -- 2^64-5
    assert.are.equal(-6, p.s64v)
  end)

  it("writes a full struct shape_value that bpftool's dump and luaebpf's decode agree on", function()
    local ref = S.ref("shapes")
    local m = S.open("shapes")
    assert.is_true(m:update({ pid = 7, comm = "writer" }, full_value()))
    local e = entry(dump(ref), key_bytes(7, "writer"))
    assert.is_table(e)
    assert.are.equal(value_bytes(full_value_flat()), e.value) -- the C layout, byte by byte
    local f = e.formatted.value
    assert.are.equal("hello, btf", f.name)
    assert.are.equal("BLUE", f.color)
    assert.are.same({ as_u32 = 67305985, as_bytes = { 1, 2, 3, 4 } }, f.u)
    assert.are.same({ anon_a = 1, anon_b = 65535 }, f[""])
    assert.are.same({ port = 65535, delta = -128, bytes = 1099511627776 }, f["in"])
    assert.are.equal("0x7", f.bf_lo)
    assert.are.equal("0xfff", f.bf_mid)
    assert.are.equal("0x1ffff", f.bf_hi)
    assert.are.equal("0x10", f.bf_signed)
    assert.are.same(full_value_decoded(), m:lookup({ pid = 7, comm = "writer" }))
    assert_value_agrees(m:lookup({ pid = 7, comm = "writer" }), f, e.value)
  end)

  it("stores a missing field as zero, as a C designated initializer does", function()
    local m = S.open("shapes")
    assert.is_true(m:update({ pid = 8, comm = "" }, { cv = 5 }))
    local e = entry(dump(S.ref("shapes")), key_bytes(8, ""))
    assert.are.equal(string.rep("\0", 84) .. le(5, 4) .. string.rep("\0", 8), e.value)
    assert.are.equal(5, m:lookup({ pid = 8, comm = "" }).cv)
  end)

  it("writes u64 values at and above 2^63 as their two's complement bytes (5.3+)", function()
    if not math.maxinteger then return pending("needs 64-bit Lua integers (5.3+)") end
    local m = S.open("shapes")
    local k = { pid = 9, comm = "big" }
    assert.is_true(m:update(k, { u64v = math.mininteger, s64v = math.maxinteger,
      ["in"] = { bytes = -1 } }))
    local e = entry(dump(S.ref("shapes")), key_bytes(9, "big"))
    assert.are.equal("\0\0\0\0\0\0\0\128", e.value:sub(9, 16))
    assert.are.equal("\255\255\255\255\255\255\255\127", e.value:sub(17, 24))
    assert.are.equal(string.rep("\255", 8), e.value:sub(65, 72))
    local v = m:lookup(k)
    assert.are.equal(math.mininteger, v.u64v)
    assert.are.equal(math.maxinteger, v.s64v)
    assert.are.equal(-1, v["in"].bytes)
  end)

  it("stores the union through either member: as_u32 and its as_bytes view agree", function()
    local m = S.open("shapes")
    local ref = S.ref("shapes")
    assert.is_true(m:update({ pid = 10, comm = "u" }, { u = { as_bytes = { 0xde, 0xad, 0xbe, 0xef } } }))
    local e = entry(dump(ref), key_bytes(10, "u"))
    assert.are.equal("\222\173\190\239", e.value:sub(73, 76))
    assert.are.same({ as_u32 = 0xefbeadde, as_bytes = { 0xde, 0xad, 0xbe, 0xef } }, e.formatted.value.u)
    assert.are.same({ as_u32 = 0xefbeadde, as_bytes = { 0xde, 0xad, 0xbe, 0xef } },
      m:lookup({ pid = 10, comm = "u" }).u)
    assert.is_true(m:update({ pid = 11, comm = "u" }, { u = { as_u32 = 0x01020304 } }))
    e = entry(dump(ref), key_bytes(11, "u"))
    assert.are.equal("\4\3\2\1", e.value:sub(73, 76))
    assert.are.same({ as_u32 = 0x01020304, as_bytes = { 4, 3, 2, 1 } },
      m:lookup({ pid = 11, comm = "u" }).u)
  end)

  it("reads and writes the anonymous struct's members as fields of the parent table", function()
    local m = S.open("shapes")
    assert.is_true(m:update({ pid = 12, comm = "anon" }, { anon_a = 0x1234, anon_b = 0xfedc }))
    local e = entry(dump(S.ref("shapes")), key_bytes(12, "anon"))
    assert.are.equal("\52\18\220\254", e.value:sub(77, 80))
    assert.are.same({ anon_a = 0x1234, anon_b = 0xfedc }, e.formatted.value[""])
    local v = m:lookup({ pid = 12, comm = "anon" })
    assert.are.equal(0x1234, v.anon_a)
    assert.are.equal(0xfedc, v.anon_b)
    assert.is_nil(v[""])
  end)

  it("writes an enum by name and by number; a number with no enumerator reads as itself", function()
    local m = S.open("shapes")
    local ref = S.ref("shapes")
    local cases = { { "GREEN", 1, "GREEN" }, { 7, 7, "BLUE" }, { 0, 0, "RED" }, { 5, 5, 5 } }
    for i, c in ipairs(cases) do
      local k = { pid = 100 + i, comm = "enum" }
      assert.is_true(m:update(k, { color = c[1] }))
      local e = entry(dump(ref), key_bytes(100 + i, "enum"))
      assert.are.equal(le(c[2], 4), e.value:sub(81, 84))
      assert.are.equal(c[3], e.formatted.value.color)
      assert.are.equal(c[3], m:lookup(k).color)
    end
  end)

  it("writes each bitfield at its limits without touching its neighbours", function()
    local m = S.open("shapes")
    local ref = S.ref("shapes")
    local all = { bf_lo = 7, bf_mid = 4095, bf_hi = 131071 }
    local pid = 200
    for name, b in pairs(BITS) do
      for _, x in ipairs({ 0, 2 ^ b[1] - 1, 1 }) do
        pid = pid + 1
        local k = { pid = pid, comm = "bits" }
        local t = { bf_lo = 0, bf_mid = 0, bf_hi = 0 }
        t[name] = int(x)
        assert.is_true(m:update(k, t))
        local e = entry(dump(ref), key_bytes(pid, "bits"))
        assert.are.equal(le(x * 2 ^ b[2], 4), e.value:sub(89, 92), name .. " = " .. x)
        local v = m:lookup(k)
        for other in pairs(BITS) do
          local want = other == name and x or 0
          assert.are.equal(want, v[other], other)
          assert.are.equal(want, tonumber(e.formatted.value[other]), other .. " (bpftool)")
        end
      end
    end
    -- all three at their maximum fill the 32 bits
    assert.is_true(m:update({ pid = 300, comm = "bits" }, all))
    assert.are.equal("\255\255\255\255", entry(dump(ref), key_bytes(300, "bits")).value:sub(89, 92))
  end)

  it("stores negative values of the signed bitfield, sign-extended on read", function()
    local m = S.open("shapes")
    local ref = S.ref("shapes")
    local cases = { { -16, 0x10 }, { -1, 0x1f }, { 15, 0x0f }, { 0, 0 }, { -5, 0x1b } }
    for i, c in ipairs(cases) do
      local k = { pid = 400 + i, comm = "sbits" }
      assert.is_true(m:update(k, { bf_signed = c[1], bf_hi = 131071 }))
      local e = entry(dump(ref), key_bytes(400 + i, "sbits"))
      assert.are.equal(c[2], e.value:byte(93))
      assert.are.equal(string.format("0x%x", c[2]), e.formatted.value.bf_signed)
      assert.are.equal(c[1], m:lookup(k).bf_signed)
      assert.are.equal(131071, m:lookup(k).bf_hi)
    end
  end)

  it("refuses an out-of-range unsigned bitfield, naming the field and its range", function()
    local m = S.open("shapes")
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { bf_lo = 8 }), { "bf_lo", "0..7", "8" })
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { bf_hi = 131072 }),
      { "bf_hi", "17-bit", "0..131071", "131072" })
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { bf_mid = -1 }),
      { "bf_mid", "0..4095", "-1" })
    assert.are.equal(0, #dump(S.ref("shapes"))) -- nothing was written
  end)

  it("refuses an out-of-range signed bitfield, naming the field and its range", function()
    local m = S.open("shapes")
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { bf_signed = -17 }),
      { "bf_signed", "signed", "-16..15", "-17" })
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { bf_signed = 16 }),
      { "bf_signed", "-16..15", "16" })
    assert.are.equal(0, #dump(S.ref("shapes")))
  end)

  it("refuses an unknown enum name, naming the enum and the name", function()
    local m = S.open("shapes")
    mentions(raised(m.update, m, { pid = 1, comm = "x" }, { color = "PURPLE" }),
      { "color", "enum color", "PURPLE" })
    assert.are.equal(0, #dump(S.ref("shapes")))
  end)

  it("refuses an unknown field, listing the fields (the anonymous struct's among them)", function()
    local m = S.open("shapes")
    local msg = tostring(raised(m.update, m, { pid = 1, comm = "x" }, { colour = 1 }))
    mentions(msg, { "unknown field 'colour'", "u8v", "bf_signed", "anon_a", "anon_b", "color" })
    msg = tostring(raised(m.update, m, { pid = 1, comm = "x" }, { ["in"] = { prt = 1 } }))
    mentions(msg, { "in", "unknown field 'prt'", "port", "delta", "bytes" })
    msg = tostring(raised(m.update, m, { pid = 1, comm = "x", uid = 0 }, {}))
    mentions(msg, { "unknown field 'uid'", "pid", "comm" })
    assert.are.equal(0, #dump(S.ref("shapes")))
  end)

  it("gives m:layout() offsets, sizes and bitfields equal to the C layout in bpftool's BTF dump", function()
    local m = S.open("shapes")
    local types = {}
    for _, t in ipairs(cjson.decode(H.run("bpftool -j btf dump id "
        .. string.format("%d", m:info().btf_id))).types) do
      types[t.id] = t
    end
    local function resolve(id)
      local t = types[id]
      while t.kind == "TYPEDEF" or t.kind == "CONST" or t.kind == "VOLATILE" do t = types[t.type_id] end
      return t
    end
    local function size_of(id)
      local t = resolve(id)
      if t.kind == "ARRAY" then return t.nr_elems * size_of(t.type_id) end
      return t.size
    end
    local function by_name(kind, name)
      for _, t in pairs(types) do if t.kind == kind and t.name == name then return t end end
    end
    local n_checked = 0
    -- compares layout fields with the members of a BTF struct or union at `base`
    local function compare(fields, st, base, where)
      local i = 0
      for _, mem in ipairs(st.members) do
        local t = resolve(mem.type_id)
        if not (t.kind == "STRUCT" and t.name == "bpf_spin_lock") then -- kernel-owned: left out
          i = i + 1
          local f = fields[i]
          local at = where .. "." .. mem.name
          assert.is_table(f, at)
          n_checked = n_checked + 1
          if mem.bitfield_size then
            assert.are.equal("bitfield", f.kind, at)
            assert.are.equal(base * 8 + mem.bits_offset, f.offset * 8 + f.bit_offset, at)
            assert.are.equal(mem.bitfield_size, f.bits, at)
            assert.are.equal(t.encoding == "SIGNED", f.signed, at)
            assert.are.equal(mem.name, f.name)
          else
            assert.are.equal(base + mem.bits_offset / 8, f.offset, at)
            assert.are.equal(size_of(mem.type_id), f.size, at)
            if mem.name == "(anon)" then assert.is_nil(f.name, at) else assert.are.equal(mem.name, f.name) end
            if t.kind == "STRUCT" or t.kind == "UNION" then
              -- README names no kind of its own for unions: "struct" or "union"
              assert.is_true(f.kind == "struct" or (t.kind == "UNION" and f.kind == "union"), at)
              if t.name ~= "(anon)" then assert.are.equal(t.kind:lower() .. " " .. t.name, f.type, at) end
              compare(f.fields, t, f.offset, at)
            elseif t.kind == "ENUM" then
              assert.are.equal("enum", f.kind, at)
              assert.are.equal("enum " .. t.name, f.type, at)
              local want = {}
              for _, ev in ipairs(t.values) do want[ev.name] = ev.val end
              assert.are.same(want, f.values, at)
            elseif t.kind == "INT" then
              local kind = t.encoding == "BOOL" and "bool"
                or (t.encoding == "SIGNED" and "i" or "u") .. string.format("%d", t.size * 8)
              assert.are.equal(kind, f.kind, at)
            elseif t.kind == "ARRAY" then
              local et = resolve(t.type_id)
              if et.kind == "INT" and et.name == "char" then
                assert.are.equal("char", f.kind, at)
              else
                assert.are.equal("array", f.kind, at)
                assert.are.equal(t.nr_elems, f.count, at)
                assert.are.equal(size_of(t.type_id), f.element.size, at)
              end
            end
          end
        end
      end
      assert.are.equal(i, #fields, where .. ": as many fields as BTF members")
    end
    local l = m:layout()
    local sv, sk = by_name("STRUCT", "shape_value"), by_name("STRUCT", "shape_key")
    assert.are.equal("struct", l.value.kind)
    assert.are.equal("struct shape_value", l.value.type)
    assert.are.equal(sv.size, l.value.size)
    compare(l.value.fields, sv, 0, "value")
    assert.are.equal("struct shape_key", l.key.type)
    assert.are.equal(sk.size, l.key.size)
    compare(l.key.fields, sk, 0, "key")
    -- the locked map: the lock is left out, a and b keep their offsets
    local lm = S.open("locked")
    local ll = lm:layout()
    compare(ll.value.fields, by_name("STRUCT", "locked_value"), 0, "locked")
    assert.are.equal(2, #ll.value.fields)
    assert.are.equal(24, ll.value.size)
    assert.are.equal(17 + 2 + 2 + 3 + 2 + 2, n_checked) -- every member was compared
  end)

  it("gives the C offsets of struct shape_value, as written in shapes.bpf.c", function()
    local l = S.open("shapes"):layout().value
    local at = {}
    for _, f in ipairs(l.fields) do at[f.name or "(anon)"] = f end
    local want = { u8v = 0, s16v = 2, s32v = 4, u64v = 8, s64v = 16, flag = 24, name = 25,
                   list = 40, ["in"] = 56, u = 72, ["(anon)"] = 76, color = 80, cv = 84 }
    for name, off in pairs(want) do assert.are.equal(off, at[name].offset, name) end
    assert.are.equal(64, at["in"].fields[3].offset) -- in.bytes, after 5 bytes of padding
    assert.are.equal(96, l.size)
  end)

  it("names the BTF types in info(), codec() and tostring() once the BTF is loaded", function()
    local m = S.open("shapes")
    local id = m:info().id
    -- before first use the codecs are only promised
    assert.are.same({ "btf", "btf" }, { m:codec() })
    assert.is_nil(m:info().key_type)
    assert.are.equal(string.format("luaebpf.Map: hash 'shapes' (id %d, btf -> btf, max_entries 64, access rw)", id),
      tostring(m))
    assert.is_nil(m:lookup({ pid = 1, comm = "none" })) -- the first use loads it
    local info = m:info()
    assert.are.equal("struct shape_key", info.key_type)
    assert.are.equal("struct shape_value", info.value_type)
    assert.are.equal("struct shape_key", info.key_codec)
    assert.are.equal("struct shape_value", info.value_codec)
    assert.is_true(info.btf_id > 0)
    assert.are.same({ "struct shape_key", "struct shape_value" }, { m:codec() })
    assert.are.equal(string.format("luaebpf.Map: hash 'shapes' (id %d, struct shape_key -> "
      .. "struct shape_value, max_entries 64, access rw)", id), tostring(m))
    local want = { colors = { "__u32", "enum color" }, locked = { "__u32", "struct locked_value" },
                   percpu_inner = { "__u64", "struct inner" } }
    for name, types in pairs(want) do
      local x = S.open(name):codec("btf")
      assert.are.equal(types[1], x:info().key_type, name)
      assert.are.equal(types[2], x:info().value_type, name)
      assert.are.same(types, { x:codec() }, name)
    end
  end)

  it("lets opts.key/opts.value, then m:codec{}, override the BTF", function()
    local ref = S.ref("shapes")
    local kb, vb = key_bytes(77, "raw"), readable(random_bytes(96))
    bpftool_update(ref, kb, vb)
    local m = S.open("shapes", { key = "raw", value = "raw" })
    assert.are.same({ "raw", "raw" }, { m:codec() })
    assert.are.equal(vb, m:lookup(kb))
    assert.is_nil(m:info().value_type)
    local only_key = S.open("shapes", { key = { { "pid", "u32" }, { "comm", "char[8]" } } })
    local v = only_key:lookup({ pid = 77, comm = "raw" })
    assert.are.equal("table", type(v)) -- the value is still from BTF
    assert.are.equal(uint(vb:sub(85, 88)), v.cv)
    m:codec{ value = "btf" }
    assert.are.same(v, m:lookup(kb))
    assert.are.equal("struct shape_value", m:info().value_type)
    m:codec{ value = "raw[96]" }
    assert.are.equal(vb, m:lookup(kb))
  end)

  it("reads the colors array's enum as names, and as an integer without one", function()
    local ref = S.ref("colors")
    bpftool_update(ref, le(0, 4), le(0, 4))
    bpftool_update(ref, le(1, 4), le(7, 4))
    bpftool_update(ref, le(2, 4), le(5, 4))
    bpftool_update(ref, le(3, 4), le(1, 4))
    local m = S.open("colors")
    local want = { [0] = "RED", [1] = "BLUE", [2] = 5, [3] = "GREEN" }
    local fmt = {}
    for _, e in ipairs(dump(ref)) do fmt[e.formatted.key] = e.formatted.value end
    for i = 0, 3 do
      assert.are.equal(want[i], m:lookup(i))
      assert.are.equal(want[i], fmt[i])
    end
    local seen = 0
    for k, v in m:pairs() do
      assert.are.equal(want[k], v)
      seen = seen + 1
    end
    assert.are.equal(4, seen)
  end)

  it("writes the colors array by name and by number", function()
    local m = S.open("colors")
    local ref = S.ref("colors")
    assert.is_true(m:update(0, "BLUE"))
    assert.is_true(m:update(1, "GREEN"))
    assert.is_true(m:update(2, 0))
    assert.is_true(m:update(3, 6))
    local got = {}
    for _, e in ipairs(dump(ref)) do got[uint(e.key)] = { e.value, e.formatted.value } end
    assert.are.same({ le(7, 4), "BLUE" }, got[0])
    assert.are.same({ le(1, 4), "GREEN" }, got[1])
    assert.are.same({ le(0, 4), "RED" }, got[2])
    assert.are.same({ le(6, 4), 6 }, got[3])
    mentions(raised(m.update, m, 0, "PURPLE"), { "enum color", "PURPLE" })
    mentions(raised(m.update, m, 0, -1), { "-1" }) -- an unsigned enum
    assert.are.equal("BLUE", m:lookup(0))
  end)

  it("decodes per-CPU struct values bpftool wrote (one value, stored for every CPU)", function()
    local ref = S.ref("percpu_inner")
    local vb = le(0xbeef, 2) .. le(-3, 1) .. string.rep("\0", 5) .. le(1099511627777, 8)
    bpftool_update(ref, le(5, 8), vb)
    local m = S.open("percpu_inner")
    local v = m:lookup(5)
    assert.are.equal(NCPUS, #v)
    local e = entry(dump(ref), le(5, 8))
    assert.are.equal(NCPUS, #e.formatted.values)
    for cpu = 1, NCPUS do
      assert.are.same({ port = 0xbeef, delta = -3, bytes = 1099511627777 }, v[cpu])
      assert.are.same(e.formatted.values[cpu].value, v[cpu])
    end
  end)

  it("writes distinct per-CPU struct values that bpftool's dump shows per CPU", function()
    local ref = S.ref("percpu_inner")
    local m = S.open("percpu_inner")
    local values = {}
    for cpu = 1, NCPUS do values[cpu] = { port = cpu, delta = -cpu, bytes = cpu * 2 ^ 40 } end
    for cpu = 1, NCPUS do values[cpu].bytes = int(values[cpu].bytes) end
    assert.is_true(m:update(6, values))
    local e = entry(dump(ref), le(6, 8))
    for cpu = 1, NCPUS do
      local f = e.formatted.values[cpu]
      assert.are.equal(cpu - 1, f.cpu)
      assert.are.same(values[cpu], f.value)
      assert.are.equal(le(cpu, 2) .. le(-cpu, 1) .. string.rep("\0", 5) .. le(cpu * 2 ^ 40, 8),
        e.values[cpu])
    end
    assert.are.same(values, m:lookup(6))
  end)

  it("leaves the spin lock out of the decoded value and never writes its bytes", function()
    local ref = S.ref("locked")
    -- bpftool writes lock bytes; the kernel never copies them in
    bpftool_update(ref, le(1, 4), "\17\34\51\68\0\0\0\0" .. le(5, 8) .. le(6, 8))
    local m = S.open("locked")
    assert.are.same({ a = 5, b = 6 }, m:lookup(1))
    assert.is_true(m:update(2, { a = 7, b = 1099511627776 }))
    local e = entry(dump(ref), le(2, 4))
    assert.are.equal(string.rep("\0", 8) .. le(7, 8) .. le(1099511627776, 8), e.value)
    assert.are.same({ a = 7, b = 1099511627776 }, m:lookup(2))
    mentions(raised(m.update, m, 3, { lock = 1, a = 1 }), { "unknown field 'lock'", "a", "b" })
  end)

  it("reads and writes the spin-locked value by default, and reads with lock = false", function()
    local m = S.open("locked")
    assert.is_true(m:update(4, { a = 40, b = 41 }))
    assert.are.same({ a = 40, b = 41 }, m:lookup(4))
    assert.are.same({ a = 40, b = 41 }, m:lookup(4, { lock = true }))
    -- Without BPF_F_LOCK the kernel copies the value (lock bytes excepted)
    -- without taking the lock: always allowed (the flag is what needs a
    -- spin lock in the value, not its absence), only not atomic against a
    -- BPF program writing it. So on this kernel lock = false reads fine.
    local v, err = m:lookup(4, { lock = false })
    assert.is_nil(err)
    assert.are.same({ a = 40, b = 41 }, v)
    local keys = {}
    for k, x in m:pairs() do keys[#keys + 1] = k; assert.is_nil(x.lock) end
    assert.is_true(#keys >= 1)
  end)
end)

end -- for each source

describe("the \"btf\" codec and BPF_F_LOCK", function()
  local S = pinned_source()
  setup(function() S.setup() end)
  teardown(function() S.teardown() end)
  after_each(close_tracked)

  it("sends BPF_F_LOCK on lookup (and lookup_fn), update and batch reads of a spin-locked value, not with lock = false", function()
    local has_strace = H.has("strace")
    if not has_strace then return pending("needs strace") end
    local code = string.format([[
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local ebpf = require "luaebpf"
local m = ebpf.open(%q, { access = "rw" })
assert(m:update(1, { a = 1, b = 2 }))
assert(m:lookup(1))
assert(m:lookup(1, { lock = false }))
assert(m:lookup(1, { lock = true }))
local fresh = ebpf.open(%q, { access = "rw" }) -- its BTF not loaded yet: lookup_fn loads it
assert(fresh:lookup_fn()(1))
assert(fresh:lookup_fn{ lock = false }(1))
fresh:close()
for k in m:pairs() do end
m:close()
]], S.path("locked"), S.path("locked"))
    assert.is_nil(code:find("'", 1, true))
    local out = H.run("strace -qq -e trace=bpf -e signal=none lua5.4 -e '" .. code .. "' 2>&1")
    local ops = {}
    for line in out:gmatch("[^\n]+") do
      local op = line:match("^bpf%((BPF_MAP_[A-Z_]+)")
      if op == "BPF_MAP_LOOKUP_ELEM" or op == "BPF_MAP_UPDATE_ELEM" then
        ops[#ops + 1] = op .. " " .. line:match("[^_]flags=([A-Z_|]+)")
      elseif op == "BPF_MAP_LOOKUP_BATCH" then
        ops[#ops + 1] = op .. " " .. line:match("elem_flags=([A-Z_|0-9x]+)")
      end
    end
    assert.are.same({
      "BPF_MAP_UPDATE_ELEM BPF_F_LOCK",
      "BPF_MAP_LOOKUP_ELEM BPF_F_LOCK",
      "BPF_MAP_LOOKUP_ELEM BPF_ANY", -- lock = false: no flag
      "BPF_MAP_LOOKUP_ELEM BPF_F_LOCK",
      "BPF_MAP_LOOKUP_ELEM BPF_F_LOCK", -- m:lookup_fn(): as m:lookup
      "BPF_MAP_LOOKUP_ELEM BPF_ANY", -- m:lookup_fn{ lock = false }
      "BPF_MAP_LOOKUP_BATCH BPF_F_LOCK",
    }, ops)
  end)

  it("refuses lookup with lock = true on a map without a spin lock: class \"invalid\" (EINVAL)", function()
    local m = track(ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 4,
                                 key = "u32", value = "u64" })
    assert.is_true(m:update(1, 10))
    local v, err = m:lookup(1, { lock = true })
    assert.is_nil(v)
    assert.are.equal("invalid", err.class)
    assert.are.equal("EINVAL", err.code)
    assert.are.equal("lookup", err.op)
    mentions(err, { "spin_lock" })
    assert.are.equal(10, m:lookup(1)) -- and without it, no flag is sent
  end)
end)

describe("m:codec(\"btf\")", function()
  after_each(close_tracked)

  it("raises a clear error on a map without BTF", function()
    local m = track(ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 4 })
    assert.are.equal(0, m:info().btf_id)
    local err = raised(m.codec, m, "btf")
    mentions(err, { "no BTF", "\"btf\"" })
    err = raised(m.codec, m, { value = "btf" })
    mentions(err, { "no BTF", "value" })
    assert.are.same({ "raw", "raw" }, { m:codec() }) -- nothing changed
  end)
end)

-- ---------------------------------------------------------- unprivileged

describe("the \"btf\" codec without privilege", function()
  local S = pinned_source()
  local KEY = key_bytes(4242, "nobody")
  local VALUE = random_bytes(96)

  --- runs Lua code as nobody (uid/gid 65534) in this directory; its output and success
  local function as_nobody(code)
    assert.is_nil(code:find("'", 1, true))
    local has_setpriv = H.has("setpriv")
    local cmd = has_setpriv
      and "setpriv --reuid=65534 --regid=65534 --clear-groups lua5.4 -e '" .. code .. "'"
      or "su nobody -s /bin/sh -c \"cd $(pwd) && lua5.4 -e '" .. code:gsub("[\"$\\`]", "\\%0") .. "'\""
    return H.sh(cmd)
  end

  --- the preamble of a child: paths, the module, cjson, and r.uid
  local function child(body)
    return [[
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local ebpf, cjson = require "luaebpf", require "cjson"
local r = {}
local f = io.popen("id -u"); r.uid = f:read("*l"); f:close()
]] .. body .. "\nprint(cjson.encode(r))\n"
  end

  --- the child's result: the JSON on its last line
  local function result(out)
    local last
    for line in out:gmatch("[^\n]+") do last = line end
    return cjson.decode(last)
  end

  setup(function()
    S.setup()
    bpftool_update(S.ref("shapes"), KEY, VALUE)
    H.run(string.format("chmod a+rx %s %s/m && chmod 0644 %s", S.fs.path, S.fs.path, S.path("shapes")))
  end)
  teardown(function() S.teardown() end)

  it("opens a BTF map with no codecs, and the first lookup raises 'permission' naming opts.key/opts.value", function()
    local out, ok = as_nobody(child(string.format([[
local ok, m = pcall(ebpf.open, %q)
r.open_ok = ok
r.open_err = not ok and tostring(m) or nil
if ok then
  r.access = m:info().access
  r.codecs = { m:codec() }
  local ok2, err = pcall(m.lookup, m, { pid = 4242, comm = "nobody" })
  r.lookup_ok = ok2
  r.class = type(err) == "table" and err.class or nil
  r.code = type(err) == "table" and err.code or nil
  r.message = tostring(err)
  m:close()
end
]], S.path("shapes"))))
    assert.is_true(ok, out)
    local r = result(out)
    assert.are.equal("65534", r.uid)
    assert.is_true(r.open_ok, r.open_err)
    assert.are.equal("r", r.access)
    assert.are.same({ "btf", "btf" }, r.codecs)
    assert.is_false(r.lookup_ok)
    assert.are.equal("permission", r.class, r.message)
    assert.are.equal("EPERM", r.code)
    mentions(r.message, { "opts.key", "opts.value", "CAP_SYS_ADMIN" })
  end)

  it("reads the map with no privilege when opts.key and opts.value are given", function()
    local out, ok = as_nobody(child(string.format([[
local m = ebpf.open(%q, { key = { { "pid", "u32" }, { "comm", "char[8]" } }, value = "raw" })
local v = m:lookup({ pid = 4242, comm = "nobody" })
r.hex = v and (v:gsub(".", function(c) return string.format("%%02x", c:byte()) end))
r.n = 0
for k, x in m:pairs() do r.n = r.n + 1; r.pid = k.pid; r.comm = k.comm end
m:close()
]], S.path("shapes"))))
    assert.is_true(ok, out)
    local r = result(out)
    assert.are.equal("65534", r.uid)
    assert.are.equal((VALUE:gsub(".", function(c) return string.format("%02x", c:byte()) end)), r.hex)
    assert.are.equal(1, r.n)
    assert.are.equal(4242, r.pid)
    assert.are.equal("nobody", r.comm)
  end)
end)

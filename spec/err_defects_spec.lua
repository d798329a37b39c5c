-- spec/err_defects_spec.lua: strings C reads from a caller's table stay alive
-- while C uses them (issue 10 item 2), one rule for integers on every Lua
-- (item 12) and unsigned numbers printed as unsigned (item 13). Cases that
-- may crash or corrupt memory run in a child process. 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

-- a child process (helpers.child) where computed(k) is a computed field: a
-- full collection first frees any string C popped and kept, then a long
-- string of one fixed size likely takes its memory
local function child(body)
  return helpers.child("local function computed(k)\n" ..
    "  collectgarbage()\n" ..
    "  return (k .. string.rep('-', 100)):sub(1, 100)\n" ..
    "end\n" .. body)
end

local function computed(k) return (k .. string.rep("-", 100)):sub(1, 100) end

describe("strings read through a caller's __index", function()
  it("ebpf.error keeps each computed field alive until the error object holds it", function()
    local out, ok = child([[
local bad = 0
for i = 1, 200 do
  local spec = setmetatable({}, { __index = function(_, k)
    if k == "op" or k == "class" or k == "map" or k == "detail" then return computed(k) end
  end })
  local e = ebpf.error(spec)
  for _, k in ipairs{ "op", "class", "map", "detail" } do
    if e[k] ~= computed(k) then bad = bad + 1 end
  end
end
print("bad", bad)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("bad\t0", 1, true), out)
  end)

  it("tostring of an error keeps fields computed by the Error metatable's __index alive", function()
    local out, ok = child([[
local e = ebpf.error{ op = "check", class = "invalid" }
local mt = getmetatable(e)
mt.__index = function(_, k)
  if k == "map" or k == "detail" then return computed(k) end
end
local want = "luaebpf: check on map '" .. computed("map") .. "': " .. computed("detail") ..
             " (invalid)"
local bad = 0
for i = 1, 200 do
  if tostring(e) ~= want then bad = bad + 1 end
end
mt.__index = nil
print("bad", bad)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("bad\t0", 1, true), out)
  end)

  it("refuses an option whose name is a known one followed by NUL and more bytes", function()
    local _, msg = helpers.raised(ebpf.error, { ["op\0junk"] = "x" })
    helpers.mentions(msg, { "unknown field 'op\\0junk'", "expected one of:" })
    _, msg = helpers.raised(ebpf.create, { type = "hash", key = "u32", value = "u32",
      max_entries = 1, ["max_entries\0x"] = 2 })
    helpers.mentions(msg, { "unknown field 'max_entries\\0x' in create spec" })
  end)

  it("still accepts the known option names themselves", function()
    local e = ebpf.error{ op = "x", class = "invalid", detail = "d" }
    assert.are.equal("x", e.op)
    assert.are.equal("luaebpf: x: d (invalid)", tostring(e))
  end)
end)

describe("integers given as floats with an integral value (what JSON decoders give)", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("are taken by create for the type, sizes, max_entries and flags", function()
    local m = track(ebpf.create{ type = 1.0, key_size = 4.0, value_size = 8.0,
      max_entries = 4.0, flags = 1.0 })
    local info = m:info()
    assert.are.equal("hash", info.type)
    assert.are.equal(4, info.key_size)
    assert.are.equal(8, info.value_size)
    assert.are.equal(4, info.max_entries)
    assert.are.same({ "no_prealloc" }, info.flags)
  end)

  it("are taken by view:get", function()
    local a = track(ebpf.create{ type = "array", max_entries = 4, key = "u32", value = "u64",
      flags = { "mmapable" } })
    assert.is_true(a:update(1, 42))
    local v = track(a:mmap())
    assert.are.equal(42, v:get(1.0))
    assert.are.equal(42, v:get(1))
  end)

  it("are taken by read_batch and by the n option of dump", function()
    local m = track(ebpf.create{ type = "hash", max_entries = 16, key = "u32", value = "u32" })
    for i = 1, 5 do m:update(i, i * 10) end
    -- a slice may hold more than n entries (a hash bucket larger than n grows the batch)
    local seen, cursor, slices = {}, nil, 0
    repeat
      local keys
      keys, _, cursor = m:read_batch(cursor, 2.0)
      for _, k in ipairs(keys) do seen[#seen + 1] = k end
      slices = slices + 1
    until not cursor or slices > 10
    table.sort(seen)
    assert.are.same({ 1, 2, 3, 4, 5 }, seen)
    local all, values = m:dump{ n = 2.0 }
    table.sort(all)
    assert.are.same({ 1, 2, 3, 4, 5 }, all)
    assert.are.equal(5, #values)
  end)

  it("are taken as an array codec's count", function()
    assert.are.equal(8, ebpf.sizeof{ "u32", 2.0 })
    local bytes = ebpf.encode({ "u32", 2.0 }, { 7, 9 })
    assert.are.same({ 7, 9 }, ebpf.decode({ "u32", 2.0 }, bytes))
  end)

  it("are taken as an error's id and errno", function()
    local e = ebpf.error{ id = 7.0, errno = 2.0, op = "open" }
    assert.are.equal(7, e.id)
    assert.are.equal("ENOENT", e.code)
  end)

  it("are refused when not integral, NaN or out of range, naming what was given", function()
    local a = track(ebpf.create{ type = "array", max_entries = 4, key = "u32", value = "u64",
      flags = { "mmapable" } })
    local v = track(a:mmap())
    for _, bad in ipairs{ 1.5, 0 / 0, 4, -1, 1e300 } do
      local _, msg = helpers.raised(v.get, v, bad)
      helpers.mentions(msg, { "an index in 0..3 expected" })
    end
    for _, bad in ipairs{ 0 / 0, 1.5, 1e300, -math.huge, 0 } do
      local _, msg = helpers.raised(ebpf.open_id, bad)
      helpers.mentions(msg, { "a map id (integer >= 1) expected" })
    end
    local _, msg = helpers.raised(ebpf.create, { type = "hash", key = "u32", value = "u32",
      max_entries = 2.5 })
    helpers.mentions(msg, { "field 'max_entries'", "2.5" })
    _, msg = helpers.raised(a.dump, a, { n = 0 / 0 })
    helpers.mentions(msg, { "bad option 'n'" })
    _, msg = helpers.raised(ebpf.sizeof, { "u32", 2.5 })
    helpers.mentions(msg, { "the count must be an integer", "2.5" })
    _, msg = helpers.raised(ebpf.error, { id = "7" })
    helpers.mentions(msg, { "field 'id'", "got string" })
  end)
end)

describe("unsigned values in text", function()
  local track, close_all = helpers.tracker()
  after_each(close_all)

  it("tostring(m) shows max_entries 4294967295 as the kernel reports it", function()
    -- an LPM trie allocates per entry, so the kernel takes any max_entries
    local m = track(ebpf.create{ type = "lpm_trie", key_size = 8, value_size = 4,
      max_entries = 4294967295, flags = { "no_prealloc" } })
    assert.are.equal(4294967295, m:info().max_entries)
    helpers.mentions(tostring(m), { "max_entries 4294967295" })
  end)

  it("messages print sizes, ids and flag bits beyond 2^31 as given", function()
    local _, msg = helpers.raised(ebpf.create, { type = "hash", key = "u32",
      key_size = 4294967295, value = "u32", max_entries = 1 })
    helpers.mentions(msg, { "key_size is 4294967295" })
    assert.is_truthy(tostring(ebpf.error{ id = 4294967295, detail = "x" })
      :find("id 4294967295", 1, true))
    _, msg = helpers.raised(ebpf.create, { type = "hash", key = "u32", value = "u32",
      max_entries = 1, flags = 4294967296 })
    helpers.mentions(msg, { "flag bits", "got 4294967296" })
  end)
end)

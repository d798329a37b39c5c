-- spec/errors_spec.lua: the error model. Kernel failures are error objects
-- (op, errno, code, class, map, id and a one-line __tostring), returned as
-- nil, err by element operations and raised by constructors; programming
-- errors raise a message naming the argument, what was expected and what was
-- given. One `it` per bad input of DESIGN.md. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local int = H.int

--- true when `s` holds the number n as a whole word (not part of another number)
local function has_number(s, n)
  return s:find("%f[%d%-]" .. string.format("%d", n):gsub("%-", "%%-") .. "%f[%D]") ~= nil
end

local raised = H.raised

describe("error objects", function()
  local fs, path, id
  setup(function()
    fs = H.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, name = "counts", fill = { [1] = 1 } }
    id = int(H.show(path).id)
  end)
  teardown(function() fs:unmount() end)

  it("carry op, errno, code, class, map and id for a kernel failure", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local v, err = m:update(1, 2)
    m:close()
    assert.is_nil(v)
    assert.are.equal("update", err.op)
    assert.are.equal(1, err.errno) -- EPERM on Linux
    assert.are.equal("EPERM", err.code)
    assert.are.equal("permission", err.class)
    assert.are.equal("counts", err.map)
    assert.are.equal(id, err.id)
  end)

  it("read as one line: op, map, id, strerror, code, class and the reason", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local _, err = m:update(1, 2)
    m:close()
    local s = tostring(err)
    local prefix = "luaebpf: update on map 'counts' (id " .. string.format("%d", id)
      .. "): Operation not permitted (EPERM, permission): opened read-only"
    assert.are.equal(prefix, s:sub(1, #prefix))
    assert.is_nil(s:find("\n", 1, true))
  end)

  it("are returned as nil, err by element operations, not raised", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local ok, v, err = pcall(m.delete, m, 1)
    m:close()
    assert.is_true(ok)
    assert.is_nil(v)
    assert.are.equal("permission", err.class)
  end)

  it("are raised as objects by assert(m:update(...))", function()
    if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
      return pending("needs an assert that raises non-string messages (5.2+, LuaJIT)")
    end
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local ok, err = pcall(function() _G.assert(m:update(1, 2)) end)
    m:close()
    assert.is_false(ok)
    assert.are.equal("table", type(err))
    assert.are.equal("EPERM", err.code)
    assert.are.equal("update", err.op)
  end)

  it("are raised by constructors that cannot return a map", function()
    local err = raised(ebpf.open, fs.path .. "/absent")
    assert.are.equal("table", type(err))
    assert.are.equal("open", err.op)
    assert.are.equal("ENOENT", err.code)
    assert.truthy(tostring(err):find(fs.path .. "/absent", 1, true))
  end)

  it("are not made for an absent key: lookup returns nil alone", function()
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    local n = select("#", m:lookup(42))
    local v, err = m:lookup(42)
    m:close()
    assert.are.equal(1, n)
    assert.is_nil(v)
    assert.is_nil(err)
  end)
end)

describe("bad input", function()
  local fs, path, m
  setup(function()
    fs = H.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, name = "counts", fill = { [1] = 1 } }
  end)
  teardown(function() fs:unmount() end)
  after_each(function() if m then m:close(); m = nil end end)

  it("raises on a raw key of the wrong size, naming the argument, the size wanted and given", function()
    m = ebpf.open(path)
    local _, msg = raised(function() return m:lookup("abc") end)
    assert.matches("key", msg)
    assert.is_true(has_number(msg, 4), msg)
    assert.is_true(has_number(msg, 3), msg)
  end)

  it("raises on a raw value of the wrong size", function()
    m = ebpf.open(path, { access = "rw" })
    local _, msg = raised(function() return m:update(H.le(1, 4), "12345") end)
    assert.matches("value", msg)
    assert.is_true(has_number(msg, 8), msg)
    assert.is_true(has_number(msg, 5), msg)
  end)

  it("raises on a key of the wrong Lua type, naming the codec and the type given", function()
    m = ebpf.open(path, { key = "u32", value = "u64" })
    local _, msg = raised(function() return m:lookup({}) end)
    assert.matches("key", msg)
    assert.matches("u32", msg)
    assert.matches("table", msg)
  end)

  it("raises on a value of the wrong Lua type", function()
    m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    local _, msg = raised(function() return m:update(1, "ten") end)
    assert.matches("value", msg)
    assert.matches("u64", msg)
    assert.matches("string", msg)
  end)

  it("raises on a non-integral number for an integer codec", function()
    m = ebpf.open(path, { key = "u32", value = "u64" })
    local _, msg = raised(function() return m:lookup(1.5) end)
    assert.matches("u32", msg)
    assert.matches("1%.5", msg)
  end)

  describe("out of range", function()
    local small
    before_each(function()
      small = ebpf.create{ type = "hash", key = "u8", value = "i8", max_entries = 4 }
    end)
    after_each(function() small:close() end)

    it("raises on u8 256, naming the range and the value", function()
      local _, msg = raised(function() return small:update(256, 0) end)
      assert.matches("u8", msg)
      assert.matches("255", msg)
      assert.is_true(has_number(msg, 256), msg)
    end)

    it("raises on i8 -129, naming the range and the value", function()
      local _, msg = raised(function() return small:update(1, -129) end)
      assert.matches("i8", msg)
      assert.matches("%-128", msg)
      assert.is_true(has_number(msg, -129), msg)
    end)

    it("raises on u32 -1, naming the range and the value", function()
      m = ebpf.open(path, { key = "u32", value = "u64" })
      local _, msg = raised(function() return m:lookup(-1) end)
      assert.matches("u32", msg)
      assert.matches("4294967295", msg)
      assert.is_true(has_number(msg, -1), msg)
    end)

    it("writes nothing when a value is out of range", function()
      assert.is_false(pcall(small.update, small, 1, 128))
      assert.is_nil(small:lookup(1))
    end)
  end)

  it("raises on an unknown codec name, naming it and the known ones", function()
    local _, msg = raised(ebpf.open, path, { key = "u33" })
    assert.truthy(msg:find("u33", 1, true), msg)
    assert.truthy(msg:find("u8", 1, true) and msg:find("u64", 1, true), msg)
  end)

  it("raises on an unknown codec name given to m:codec", function()
    m = ebpf.open(path)
    local _, msg = raised(function() return m:codec{ value = "uint64" } end)
    assert.truthy(msg:find("uint64", 1, true), msg)
    assert.truthy(msg:find("u64", 1, true), msg)
  end)

  it("raises when a codec's size differs from the map's, with both sizes", function()
    local _, msg = raised(ebpf.open, path, { key = "u16" })
    local words = msg:gsub("id %d+", "")
    assert.matches("key", msg)
    assert.is_true(has_number(words, 2), msg)
    assert.is_true(has_number(words, 4), msg)
  end)

  it("raises when m:codec sets a value codec of another size, with both sizes", function()
    m = ebpf.open(path, { key = "u32", value = "u64" })
    local _, msg = raised(function() return m:codec{ value = { { "a", "u32" }, { "b", "u32" },
      { "c", "u32" } } } end)
    local words = msg:gsub("id %d+", "")
    assert.matches("value", msg)
    assert.is_true(has_number(words, 12), msg)
    assert.is_true(has_number(words, 8), msg)
    assert.are.equal(1, m:lookup(1)) -- the old codec still works
  end)

  it("raises on an unknown struct field, naming it and the fields the struct has", function()
    m = ebpf.open(path, { access = "rw", key = "u32",
      value = { { "packets", "u32" }, { "bytes", "u32" } } })
    local _, msg = raised(function() return m:update(1, { packets = 1, byts = 2 }) end)
    assert.truthy(msg:find("byts", 1, true), msg)
    assert.truthy(msg:find("packets", 1, true) and msg:find("bytes", 1, true), msg)
  end)

  it("raises a 'missing' error for a pinned path that does not exist", function()
    local err, msg = raised(ebpf.open, fs.path .. "/nothing_here")
    assert.are.equal("missing", err.class)
    assert.are.equal("ENOENT", err.code)
    assert.truthy(msg:find(fs.path .. "/nothing_here", 1, true), msg)
  end)

  it("raises for a path that is not on a bpffs, naming the path and bpffs", function()
    local file = H.run("mktemp /tmp/luaebpfnotbpfXXXXXX"):gsub("%s+$", "")
    local err, msg = raised(ebpf.open, file)
    os.remove(file)
    assert.are.equal("table", type(err))
    assert.truthy(msg:find(file, 1, true), msg)
    assert.truthy(msg:find("bpffs", 1, true), msg)
  end)

  it("returns a 'permission' error for a write through a read-only handle", function()
    m = ebpf.open(path, { key = "u32", value = "u64" })
    local v, err = m:update(1, 5)
    assert.is_nil(v)
    assert.are.equal("permission", err.class)
    assert.are.equal("EPERM", err.code)
    assert.matches("read%-only", tostring(err))
    assert.matches("access = \"rw\"", tostring(err)) -- the way out
  end)

  it("raises an 'invalid' error for a wrong expect, naming field, expected and given", function()
    local err, msg = raised(ebpf.open, path, { expect = { max_entries = 1024 } })
    assert.are.equal("invalid", err.class)
    assert.are.equal("open", err.op)
    assert.matches("max_entries", msg)
    assert.is_true(has_number(msg, 1024), msg)
    assert.is_true(has_number(msg, 64), msg)
  end)

  it("raises on an unknown field of opts.expect, naming it and the known fields", function()
    local _, msg = raised(ebpf.open, path, { expect = { size = 8 } })
    assert.truthy(msg:find("size", 1, true), msg)
    assert.truthy(msg:find("value_size", 1, true), msg)
  end)

  it("raises on an unknown open option, naming it and every valid option", function()
    local _, msg = raised(ebpf.open, path, { acess = "rw" })
    assert.truthy(msg:find("acess", 1, true), msg)
    for _, opt in ipairs{ "access", "key", "value", "expect" } do
      assert.truthy(msg:find("%f[%w_]" .. opt .. "%f[^%w_]"), "'" .. opt .. "' missing from: " .. msg)
    end
  end)

  it("raises on a bad access value, naming the choices and the value", function()
    local _, msg = raised(ebpf.open, path, { access = "read" })
    assert.matches("access", msg)
    assert.truthy(msg:find("\"rw\"", 1, true), msg)
    assert.truthy(msg:find("read", 1, true), msg)
  end)

  it("points a bad-option error at the caller's line, not into the library", function()
    local _, msg = raised(function()
      local h = ebpf.open(path, { access = "read" })
      return h
    end)
    assert.matches("^spec/errors_spec%.lua:%d+:", msg)
  end)

  it("raises on a bad update flag, naming the choices and the flag", function()
    m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    local _, msg = raised(function() return m:update(1, 2, "overwrite") end)
    assert.truthy(msg:find("noexist", 1, true), msg)
    assert.truthy(msg:find("overwrite", 1, true), msg)
    assert.are.equal(1, m:lookup(1))
  end)

  it("raises on a map id that is not a positive integer, naming open_id and the id", function()
    -- called from Lua code, as users do: LuaJIT names only functions called so
    local _, msg = raised(function() local h = ebpf.open_id(-3); return h end)
    assert.truthy(msg:find("open_id", 1, true), msg)
    assert.is_true(has_number(msg, -3), msg)
  end)
end)

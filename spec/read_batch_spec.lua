-- spec/read_batch_spec.lua: m:read_batch(cursor, n), a whole map read in
-- slices a caller paces (every key once, arrays, types without batches, empty
-- maps, the refusals of bad n and foreign or finished cursors), and
-- m:last_read(), what the last walk did (entries, batch calls, grows,
-- fallback). Shared by every Lua version: 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local raised = helpers.raised

describe("Map:read_batch", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  local m
  before_each(function()
    m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 4096,
      key = "u32", value = "u64" }
    for k = 0, 2999 do assert(m:update(k, k * 2)) end
  end)
  after_each(function() m:close() end)

  it("covers every key exactly once in slices of at most n, ending with a nil cursor", function()
    local seen, total, slices = {}, 0, 0
    local cursor, keys, values
    repeat
      keys, values, cursor = m:read_batch(cursor, 100)
      slices = slices + 1
      local lr = m:last_read()
      assert.are.equal(#keys, lr.entries)
      assert.is_true(#keys <= 100 or lr.grows > 0,
        "a slice of " .. #keys .. " entries for n = 100 without a grow")
      assert.are.equal(#keys, #values)
      for i, k in ipairs(keys) do
        assert(seen[k] == nil, "key " .. k .. " in two slices")
        assert.are.equal(k * 2, values[i])
        seen[k] = true
        total = total + 1
      end
      assert.is_true(slices < 10000, "read_batch does not end")
    until cursor == nil
    assert.are.equal(3000, total)
    assert.is_true(slices > 1)
    for k = 0, 2999 do assert(seen[k], "key " .. k .. " never read") end
  end)

  it("covers every key with n = 1, slices growing only for crowded buckets", function()
    local seen, total = {}, 0
    local cursor, keys, _
    repeat
      keys, _, cursor = m:read_batch(cursor, 1)
      local lr = m:last_read()
      assert.is_true(#keys <= 1 or lr.grows > 0)
      for _, k in ipairs(keys) do
        assert(seen[k] == nil, "key " .. k .. " in two slices")
        seen[k] = true
        total = total + 1
      end
    until cursor == nil
    assert.are.equal(3000, total)
  end)

  it("reads an array in slices covering every index once", function()
    local a = ebpf.create{ type = "array", key_size = 4, value_size = 4, max_entries = 250,
      key = "u32", value = "u32" }
    finally(function() a:close() end)
    for k = 0, 249 do assert(a:update(k, k + 1)) end
    local seen, total, cursor, keys, values = {}, 0, nil, nil, nil
    repeat
      keys, values, cursor = a:read_batch(cursor, 64)
      assert.is_true(#keys <= 64)
      for i, k in ipairs(keys) do
        assert(seen[k] == nil, "index " .. k .. " twice")
        assert.are.equal(k + 1, values[i])
        seen[k], total = true, total + 1
      end
    until cursor == nil
    assert.are.equal(250, total)
  end)

  it("reads a type without batches (devmap) in slices through get_next_key", function()
    local d = ebpf.create{ type = "devmap", key_size = 4, value_size = 4, max_entries = 16,
      key = "u32", value = "u32" }
    finally(function() d:close() end)
    for _, k in ipairs{ 1, 4, 9, 15 } do assert(d:update(k, 1)) end
    local got, cursor, keys, values = {}, nil, nil, nil
    repeat
      keys, values, cursor = d:read_batch(cursor, 2)
      assert.is_true(#keys <= 2)
      assert.is_true(d:last_read().fallback)
      for i, k in ipairs(keys) do
        assert.is_nil(got[k])
        got[k] = values[i]
      end
    until cursor == nil
    assert.are.same({ [1] = 1, [4] = 1, [9] = 1, [15] = 1 }, got)
  end)

  it("returns the whole of an empty map as one empty slice with a nil cursor", function()
    local e = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 16 }
    finally(function() e:close() end)
    local keys, values, cursor = e:read_batch(nil, 10)
    assert.are.same({}, keys)
    assert.are.same({}, values)
    assert.is_nil(cursor)
  end)

  it("sets last_read: entries equal to the slice, batches >= 1, fallback false", function()
    local keys = m:read_batch(nil, 500)
    local lr = m:last_read()
    assert.are.equal(#keys, lr.entries)
    assert.is_true(lr.batches >= 1)
    assert.is_false(lr.fallback)
  end)

  it("raises an argument error for n = 0", function()
    local err = raised(m.read_batch, m, nil, 0)
    assert.are.equal("string", type(err))
    assert.matches("bad argument", err, 1, true)
    assert.matches("integer >= 1", err, 1, true)
    assert.matches("got 0", err, 1, true)
  end)

  it("raises an argument error for n = -1", function()
    local err = raised(m.read_batch, m, nil, -1)
    assert.are.equal("string", type(err))
    assert.matches("integer >= 1", err, 1, true)
    assert.matches("got -1", err, 1, true)
  end)

  it("raises an argument error for n = 1.5", function()
    local err = raised(m.read_batch, m, nil, 1.5)
    assert.are.equal("string", type(err))
    assert.matches("integer >= 1", err, 1, true)
    assert.matches("got 1.5", err, 1, true)
  end)

  it("raises an argument error for n = \"10\" (a string)", function()
    local err = raised(m.read_batch, m, nil, "10")
    assert.are.equal("string", type(err))
    assert.matches("integer >= 1", err, 1, true)
    assert.matches("got string", err, 1, true)
  end)

  it("raises an argument error for a table as cursor", function()
    local err = raised(m.read_batch, m, {}, 10)
    assert.are.equal("string", type(err))
    assert.matches("bad argument", err, 1, true)
    assert.matches("cursor from read_batch expected", err, 1, true)
    assert.matches("got table", err, 1, true)
  end)

  it("raises an argument error for a cursor of another map", function()
    local other = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 64,
      key = "u32", value = "u64" }
    finally(function() other:close() end)
    for k = 1, 40 do assert(other:update(k, k)) end
    local _, _, foreign = other:read_batch(nil, 5)
    assert.is_not_nil(foreign)
    local err = raised(m.read_batch, m, foreign, 5)
    assert.are.equal("string", type(err))
    assert.matches("another map", err, 1, true)
    -- the foreign cursor still works on its own map
    local keys = other:read_batch(foreign, 5)
    assert.is_true(#keys > 0)
  end)

  it("raises an argument error for a cursor of another handle of the same map", function()
    local p = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 64 }
    local a = ebpf.open(p, { access = "rw", key = "u32", value = "u64" })
    local b = ebpf.open(p, { key = "u32", value = "u64" })
    finally(function() a:close(); b:close() end)
    for k = 1, 40 do assert(a:update(k, k)) end
    local _, _, c = a:read_batch(nil, 5)
    assert.is_not_nil(c)
    local err = raised(b.read_batch, b, c, 5)
    assert.matches("another map", err, 1, true)
  end)

  it("raises an argument error when a cursor whose walk is over is passed again", function()
    local cursor, prev, keys, _, total = nil, nil, nil, nil, 0
    repeat
      prev = cursor
      keys, _, cursor = m:read_batch(cursor, 700)
      total = total + #keys
    until cursor == nil
    assert.are.equal(3000, total)
    assert.is_not_nil(prev) -- the cursor passed to the call that ended the walk
    local err = raised(m.read_batch, m, prev, 700)
    assert.are.equal("string", type(err))
    assert.matches("walk is over", err, 1, true)
    -- and a fresh walk after it is complete again
    local again, c = 0, nil
    repeat
      keys, _, c = m:read_batch(c, 700)
      again = again + #keys
    until c == nil
    assert.are.equal(3000, again)
  end)

  it("raises class 'unsupported' on a queue", function()
    local q = ebpf.create{ type = "queue", key_size = 0, value_size = 8, max_entries = 4 }
    finally(function() q:close() end)
    local err = raised(q.read_batch, q, nil, 10)
    assert.are.equal("table", type(err))
    assert.are.equal("unsupported", err.class)
  end)
end)

describe("Map:last_read", function()
  it("counts the entries yielded, the batch calls, and says the batch path was used", function()
    local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 1024,
      key = "u32", value = "u64" }
    finally(function() m:close() end)
    for k = 1, 777 do assert(m:update(k, k)) end
    local n = 0
    for _ in m:pairs{ n = 100 } do n = n + 1 end
    local lr = m:last_read()
    assert.are.equal(777, n)
    assert.are.equal(777, lr.entries)
    assert.is_true(lr.batches >= 8, "777 entries in batches of 100: " .. lr.batches .. " calls")
    assert.is_false(lr.fallback)
    assert.are.equal(0, lr.restarts)
    assert.are.equal(0, lr.repeats)
    assert.are.equal(0, lr.vanished)
  end)

  it("counts what an early break yielded", function()
    local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 1024,
      key = "u32", value = "u64" }
    finally(function() m:close() end)
    for k = 1, 300 do assert(m:update(k, k)) end
    local n = 0
    for _ in m:pairs() do
      n = n + 1
      if n == 10 then break end
    end
    assert.are.equal(10, m:last_read().entries)
  end)
end)

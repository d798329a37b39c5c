-- spec/reentry_spec.lua: Lua code that runs in the middle of a method (a
-- finalizer started by an allocation, a metatable on a caller's table) and
-- closes or reuses the handle must not crash luaebpf or corrupt what it
-- writes. Crash-prone cases run in a child process, so a crash fails one test.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

-- a child process (helpers.child): paths, ebpf and garbage(fn) defined
local child = helpers.child

describe("re-entrant use of a handle", function()
  it("survives a finalizer that closes the map while a lookup decodes", function()
    local out, ok = child([[
local fields = {}
for i = 1, 64 do fields[i] = { "f" .. i, "u64" } end
local m = ebpf.create{ type = "array", max_entries = 4, key = "u32", value = fields }
local closed_at
for round = 1, 5000 do
  if not closed_at then
    garbage(function() if not closed_at then closed_at = round; m:close() end end)
  end
  local ok, v = pcall(m.lookup, m, 0)
  if ok and v then assert(v.f1 == 0 and v.f64 == 0) end
  if closed_at then break end
end
print("done", closed_at ~= nil)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("done\ttrue", 1, true), out)
  end)

  it("survives a finalizer that closes a view while view:get decodes", function()
    local out, ok = child([[
local fields = {}
for i = 1, 64 do fields[i] = { "f" .. i, "u64" } end
local a = ebpf.create{ type = "array", max_entries = 8, key = "u32", value = fields,
                       flags = { "mmapable" } }
local v = a:mmap()
local closed
for round = 1, 5000 do
  if not closed then
    garbage(function() if not closed then closed = true; v:close() end end)
  end
  local ok = pcall(v.get, v, 1)
  if closed then break end
end
print("done", closed)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("done\ttrue", 1, true), out)
  end)

  it("reads a struct key's fields raw: a caller's __index never runs while encoding", function()
    local m = ebpf.create{ type = "hash", max_entries = 8,
      key = { { "a", "u32" }, { "b", "u32" } }, value = "u32" }
    local calls = 0
    local key = setmetatable({ a = 7 }, { __index = function() calls = calls + 1; m:close() end })
    assert.is_true(m:update(key, 1))
    assert.are.equal(0, calls)
    assert.are.equal(1, m:lookup({ a = 7, b = 0 }))
    m:close()
  end)

  it("bounds each get_next_key walk by its own restarts, even with a walk nested inside", function()
    local m = ebpf.create{ type = "hash", max_entries = 64, key = "u32", value = "u64" }
    for i = 1, 64 do m:update(i, i) end
    local n, prev, seen = 0, nil, {}
    for k in m:keys{ batch = false } do
      n = n + 1
      assert.is_nil(seen[k], "key yielded twice")
      seen[k] = true
      if prev then m:update(prev, 0) end -- the previous key comes back
      m:delete(k)                         -- the current one goes: the kernel restarts
      prev = k
      for _ in m:keys{ batch = false } do end -- a nested walk on the same handle
    end
    assert.is_true(n >= 64)
    m:close()
  end)
end)

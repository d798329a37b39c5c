-- spec/leak_spec.lua: fd leaks. Thousands of opens closed by hand, dropped
-- to the garbage collector, or failing halfway must leave this process's fd
-- count (/proc/<pid>/fd, spec.helpers.fd_count) where it was. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

-- the smallest of a few samples: a single count races with popen's pipe
local fd_count = H.fd_count_min

local function open_and_close(path, n) H.open_and_close(ebpf, path, n) end
local function open_and_drop(path, n) H.open_and_drop(ebpf, path, n) end

--- n failing calls of f(...); returns how many raised
local function fail_n(n, f, ...)
  local failed = 0
  for _ = 1, n do
    if not pcall(f, ...) then failed = failed + 1 end
  end
  return failed
end

describe("fd leaks", function()
  local fs, path, before
  setup(function()
    fs = H.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [1] = 1 } }
  end)
  teardown(function() fs:unmount() end)
  before_each(function()
    collectgarbage("collect")
    collectgarbage("collect")
    before = fd_count()
  end)
  after_each(function() collectgarbage("restart") end)

  it("leaves the fd count unchanged after 5,000 open/close cycles", function()
    collectgarbage("stop") -- close alone must release each fd
    open_and_close(path, 5000)
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 5,000 handles are dropped to the GC", function()
    collectgarbage("stop")
    open_and_drop(path, 5000)
    assert.are.equal(before + 5000, fd_count()) -- still held: only the GC closes them
    collectgarbage("restart")
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 opens of a missing path", function()
    collectgarbage("stop") -- a failed open must not wait for the GC
    assert.are.equal(1000, fail_n(1000, ebpf.open, fs.path .. "/absent"))
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 opens refused for codec size", function()
    collectgarbage("stop")
    -- the fd is obtained, then the 2-byte key codec is refused for the 4-byte keys
    assert.are.equal(1000, fail_n(1000, ebpf.open, path, { key = "u16", value = "u64" }))
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 opens refused by expect", function()
    collectgarbage("stop")
    assert.are.equal(1000, fail_n(1000, ebpf.open, path, { expect = { type = "array" } }))
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 opens whose codec fails after expect", function()
    collectgarbage("stop")
    assert.are.equal(1000, fail_n(1000, ebpf.open, path,
      { expect = { type = "hash" }, value = "u32" }))
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 open_id calls refused by expect", function()
    local id = H.show(path).id
    id = math.tointeger and math.tointeger(id) or id
    collectgarbage("stop")
    assert.are.equal(1000, fail_n(1000, ebpf.open_id, id, { expect = { key_size = 8 } }))
    assert.are.equal(before, fd_count())
  end)

  it("leaves the fd count unchanged after 1,000 created maps are closed", function()
    collectgarbage("stop")
    for _ = 1, 1000 do
      ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 1 }:close()
    end
    assert.are.equal(before, fd_count())
  end)
end)

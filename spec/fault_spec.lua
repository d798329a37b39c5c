-- spec/fault_spec.lua: interrupted and refused bpf() calls. A child process
-- runs with spec/fixtures/libfault.so preloaded, which fails the next N bpf()
-- calls of one command with EINTR or EAGAIN: luaebpf retries a bounded number
-- of times (4), so a few faults are invisible and many are a clear error.
local helpers = require "spec.helpers"

local CMD = { lookup = 1, update = 2, delete = 3, get_next_key = 4, lookup_batch = 24 }
local EINTR, EAGAIN = 4, 11

-- runs `body` (Lua source using `ebpf` and a map `m` of 20 entries k -> k*10)
-- with faults injected; returns what it printed
local function with_faults(cmd, errno, times, body)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = ]], string.format("%q", package.cpath), [[ .. ";" .. package.cpath
local ebpf = require "luaebpf"
local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 64 }
for k = 1, 20 do assert(m:update(k, k * 10)) end
]], body, "\nm:close()\n")
  f:close()
  local out = helpers.run(string.format(
    "LUAEBPF_FAULT=%d:%d:%d LD_PRELOAD=\"${LD_PRELOAD:+$LD_PRELOAD }$PWD/spec/fixtures/libfault.so\" %s %s",
    cmd, errno, times, helpers.lua_bin(), script))
  os.remove(script)
  return out
end

describe("bounded retries of bpf() calls", function()
  it("retries a lookup interrupted twice (EINTR) and returns the value", function()
    local out = with_faults(CMD.lookup, EINTR, 2, "print(m:lookup(7))")
    assert.are.equal("70\n", out)
  end)

  it("gives up on a lookup interrupted more times than it retries, with class 'transient'", function()
    local out = with_faults(CMD.lookup, EINTR, 50, [[
local v, err = m:lookup(7)
print(v, err.code, err.class)]])
    assert.are.equal("nil\tEINTR\ttransient\n", out)
  end)

  it("retries an update told to try again (EAGAIN) and stores the value once", function()
    local out = with_faults(CMD.update, EAGAIN, 3, [[
print(m:update(99, 5, "noexist"), m:lookup(99))]])
    assert.are.equal("true\t5\n", out)
  end)

  it("retries a delete and reports it as done", function()
    local out = with_faults(CMD.delete, EINTR, 4, "print(m:delete(3), m:lookup(3))")
    assert.are.equal("true\tnil\n", out)
  end)

  it("finishes a batch walk whose batch calls are interrupted", function()
    local out = with_faults(CMD.lookup_batch, EINTR, 3, [[
local n = 0
for k, v in m:pairs() do assert(v == k * 10); n = n + 1 end
print(n, m:last_read().fallback)]])
    assert.are.equal("20\tfalse\n", out)
  end)

  it("finishes a get_next_key walk whose steps are told to try again", function()
    local out = with_faults(CMD.get_next_key, EAGAIN, 4, [[
local n = 0
for k in m:keys{ batch = false } do n = n + 1 end
print(n)]])
    assert.are.equal("20\n", out)
  end)

  it("raises from an iterator when the faults outlast the retries, never a silent end", function()
    local out = with_faults(CMD.lookup_batch, EINTR, 50, [[
local ok, err = pcall(function() for _ in m:pairs() do end end)
print(ok, err.op, err.code, err.class)]])
    assert.are.equal("false\titerate\tEINTR\ttransient\n", out)
  end)
end)

-- spec/concurrency_spec.lua: reading a map while another process changes it.
-- spec/churn (a C helper) inserts and deletes keys 1000..2999 of a pinned
-- hash map at full speed; keys 0..999 stay put. Every read must finish
-- without error, never yield a key twice, and see every stable key.
local ebpf = require "luaebpf"
local helpers = require "spec.helpers"

local STABLE, LO, HI = 1000, 1000, 3000

describe("reading under concurrent change", function()
  local fs, path, m

  setup(function()
    fs = helpers.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 4096, name = "churned" }
    -- churn writes 0x5a5a...: beyond 2^53, so LuaJIT reads it as a decimal string
    m = ebpf.open(path, { access = "rw", key = "u32", value = "u64", int64 = "string" })
    for k = 0, STABLE - 1 do assert(m:update(k, k)) end
  end)

  teardown(function()
    m:close()
    fs:unmount()
  end)

  -- runs read() over and over while churn runs for `seconds`; read returns
  -- an array of keys; checks each result and returns the number of reads
  local function under_churn(seconds, read)
    local churn = assert(io.popen(string.format("spec/churn %s %d %d %g", path, LO, HI, seconds)))
    local deadline = os.time() + seconds
    local reads = 0
    repeat
      local keys = read()
      local seen = {}
      for _, k in ipairs(keys) do
        assert.is_nil(seen[k], "key " .. tostring(k) .. " yielded twice")
        seen[k] = true
        assert.is_true(k >= 0 and k < HI, "unexpected key " .. tostring(k))
      end
      for k = 0, STABLE - 1 do
        assert.is_true(seen[k], "stable key " .. k .. " missing")
      end
      reads = reads + 1
    until os.time() > deadline
    local out = churn:read("*a")
    assert.is_true(churn:close() ~= nil)
    local inserts, deletes = out:match("(%d+) inserts, (%d+) deletes")
    assert.is_truthy(inserts, "churn did not report: " .. out)
    assert.is_true(tonumber(inserts) > 0 and tonumber(deletes) > 0, "churn changed nothing")
    return reads
  end

  local function collect_pairs(opts)
    return function()
      local keys = {}
      for k in m:pairs(opts) do keys[#keys + 1] = k end
      return keys
    end
  end

  it("pairs() with batches completes every time, once per key", function()
    assert.is_true(under_churn(2, collect_pairs()) > 1)
    assert.is_false(m:last_read().fallback)
  end)

  it("pairs() with small batches that must grow completes every time, once per key", function()
    assert.is_true(under_churn(2, collect_pairs{ n = 1 }) > 1)
  end)

  it("pairs() on get_next_key completes every time, once per key, despite restarts", function()
    local restarts = 0
    assert.is_true(under_churn(2, function()
      local keys = collect_pairs{ batch = false }()
      restarts = restarts + m:last_read().restarts
      assert.is_true(m:last_read().fallback)
      return keys
    end) > 1)
    -- a restart happens only when churn deletes the very key the walk stands on
    print(string.format("\n    get_next_key restarts seen under churn: %d", restarts))
  end)

  it("keys() and dump() complete every time, once per key", function()
    under_churn(1, function()
      local keys = {}
      for k in m:keys() do keys[#keys + 1] = k end
      return keys
    end)
    under_churn(1, function()
      local keys, values = m:dump()
      assert.are.equal(#keys, #values)
      for i, k in ipairs(keys) do
        if k < STABLE then assert.are.equal(k, values[i]) end
      end
      return keys
    end)
  end)

  it("read_batch slices together cover every stable key exactly once", function()
    under_churn(2, function()
      local all, cursor = {}, nil
      repeat
        local keys, values
        keys, values, cursor = m:read_batch(cursor, 100)
        assert.are.equal(#keys, #values)
        for _, k in ipairs(keys) do all[#all + 1] = k end
      until cursor == nil
      return all
    end)
  end)
end)

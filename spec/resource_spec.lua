-- spec/resource_spec.lua: long runs leave nothing behind. 100,000 opens
-- closed by hand or dropped to the garbage collector, 10,000 pairs() loops
-- left after their first entry (batch and get_next_key walks) and 10,000
-- read_batch walks abandoned after their first slice must leave this
-- process's fd count (/proc/<pid>/fd) where it was and its resident memory
-- (VmRSS) within 8 MiB of where it stood after a warm-up round of a tenth of
-- the count. Each test prints its figures. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local OPENS, LOOPS = 100000, 10000
local RSS_BOUND_KIB = 8 * 1024

-- this process: the parent of the shell io.popen starts
local PID
do
  local f = assert(io.popen("echo $PPID"))
  PID = assert(tonumber(f:read("*l")))
  f:close()
end

--- VmRSS of this process, in KiB, after two full collections
local function rss_kib()
  collectgarbage("collect")
  collectgarbage("collect")
  local f = assert(io.open("/proc/" .. PID .. "/status"))
  local kib = tonumber(f:read("*a"):match("VmRSS:%s*(%d+) kB"))
  f:close()
  return kib
end

--- this process's fds after two full collections (the smallest of a few
-- samples: a single count races with popen's pipe)
local function fd_count()
  collectgarbage("collect")
  collectgarbage("collect")
  return H.fd_count_min()
end

--- ASan keeps freed memory in its quarantine: RSS says nothing there
local function under_asan()
  local f = io.open("/proc/" .. PID .. "/maps")
  if not f then return false end
  local maps = f:read("*a")
  f:close()
  return maps:find("libasan", 1, true) ~= nil
end

--- runs work(n / 100) a hundred times, with a full collection after each:
-- first for a warm-up round of n / 10, then for n; checks and prints the fd
-- count and RSS around the second. The collections bound the garbage: left to
-- itself, the collector lets closed handles (three finalizers each, and C
-- memory it cannot see) or abandoned walks (whose batch buffers are C memory)
-- pile up to tens of MiB before a cycle ends, how far depending on the heap
-- around them, so RSS would measure the collector's pace rather than a leak.
-- A leak grows with every step.
local function steps(work, n, step)
  for _ = 1, n / step do
    work(step)
    collectgarbage("collect")
  end
end

local function flat(label, n, work)
  local step = n / 100
  steps(work, n / 10, step)
  local fds0, rss0 = fd_count(), rss_kib()
  local t0 = os.clock()
  steps(work, n, step)
  local secs = os.clock() - t0
  local fds1, rss1 = fd_count(), rss_kib()
  print(string.format("\n    %s: fds %d -> %d, RSS %d -> %d KiB (%+d KiB), %.1f s CPU",
    label, fds0, fds1, rss0, rss1, rss1 - rss0, secs))
  assert.are.equal(fds0, fds1, label .. ": fds")
  if under_asan() then
    return pending("RSS not bounded under ASan: its quarantine keeps freed memory")
  end
  assert.is_true(rss1 - rss0 < RSS_BOUND_KIB, string.format("%s: RSS grew by %d KiB (%d -> %d)",
    label, rss1 - rss0, rss0, rss1))
end

local function open_and_close(path, n) H.open_and_close(ebpf, path, n) end
local function open_and_drop(path, n) H.open_and_drop(ebpf, path, n) end

describe("resources over long runs", function()
  local fs, path, m
  setup(function()
    fs = H.mount_bpffs()
    path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 2048, name = "resource" }
    m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    for k = 0, 999 do assert(m:update(k, k * 3)) end
  end)
  teardown(function()
    m:close()
    fs:unmount()
  end)

  it("leaves fds and RSS flat after 100,000 open/close cycles", function()
    flat("100,000 open/close", OPENS, function(n) open_and_close(path, n) end)
  end)

  it("leaves fds and RSS flat after 100,000 handles dropped to the garbage collector", function()
    flat("100,000 dropped to the GC", OPENS, function(n) open_and_drop(path, n) end)
  end)

  for _, walk in ipairs{ { "batch", {} }, { "get_next_key", { batch = false } } } do
    local name, opts = walk[1], walk[2]
    it("leaves fds and RSS flat after 10,000 pairs() loops (" .. name .. ") broken after the first entry", function()
      local seen = 0
      flat("10,000 pairs() broken early, " .. name, LOOPS, function(n)
        for _ = 1, n do
          for k, v in m:pairs(opts) do
            assert(v == k * 3)
            seen = seen + 1
            break
          end
        end
      end)
      assert.are.equal(LOOPS + LOOPS / 10, seen)
      assert.are.equal(name == "get_next_key", m:last_read().fallback)
    end)
  end

  it("leaves fds and RSS flat after 10,000 read_batch walks abandoned after their first slice", function()
    local seen = 0
    flat("10,000 read_batch walks abandoned", LOOPS, function(n)
      for _ = 1, n do
        local keys, values, cursor = m:read_batch(nil, 100)
        -- about 100: a hash batch ends on a bucket boundary
        if not (#keys > 50 and #values == #keys and cursor ~= nil) then
          error(string.format("first slice: %d keys, %d values, cursor %s; last_read %s", #keys,
            #values, tostring(cursor), require("cjson").encode(m:last_read())))
        end
        seen = seen + 1
      end
    end)
    assert.are.equal(LOOPS + LOOPS / 10, seen)
    -- a whole walk still reads every entry
    local all, cursor = 0, nil
    repeat
      local keys, values
      keys, values, cursor = m:read_batch(cursor, 100)
      assert.are.equal(#keys, #values)
      all = all + #keys
    until cursor == nil
    assert.are.equal(1000, all)
  end)
end)

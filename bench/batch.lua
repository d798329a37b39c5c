-- bench/batch.lua: m:update_batch against a C loop of the same
-- BPF_MAP_UPDATE_BATCH call, and against single m:update calls from Lua, on
-- the same map in the same process. Run from the repo root (make bench):
--   lua5.4 bench/batch.lua [entries_per_batch [rounds]]
-- A hash u32 -> u64 of 10,000 entries is written whole by each side in turn
-- (keys 0..n-1, values k * 2654435761 + 7, the same on every side: each
-- round overwrites what the previous wrote); an untimed pass checks that
-- every value reads back. Reported per entry written, in thread CPU time.
package.path = "lua/?.lua;lua/?/init.lua;./bench/?.lua;" .. package.path
local B = require "benchlib" -- points package.cpath at this interpreter's build

local ebpf = require "luaebpf"
local cbench = B.cbench

local N = tonumber(arg and arg[1]) or 10000
local ROUNDS = tonumber(arg and arg[2]) or 9
local CALLS = math.max(1, math.floor(200000 / N)) -- batches per side per round
local TARGET = 1.3

local expected = B.expected
local function fail(msg) B.fail("bench/batch.lua", msg) end

local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = N }
local keys, values = {}, {}
for i = 1, N do keys[i], values[i] = i - 1, expected(i - 1) end

local function check(who)
  for k = 0, N - 1 do
    local v = m:lookup(k)
    if v ~= expected(k) then
      fail(string.format("after %s, key %d reads %s, expected %s", who, k, tostring(v),
        tostring(expected(k))))
    end
  end
end

-- untimed: each side writes the whole map correctly
local n, err = m:update_batch(keys, values)
if n ~= N then fail("update_batch wrote " .. tostring(n) .. ": " .. tostring(err)) end
check("m:update_batch")
m:delete_batch(keys)
cbench.update_batch_loop(m:fd(), N, 1)
check("the C loop")

-- thread CPU time, system time included (the syscalls are most of it): other
-- work on the machine then shifts the figures less than wall time would
local now = cbench.cputime
local sides = {
  { name = "lua_batch", run = function()
    local t0 = now()
    for _ = 1, CALLS do m:update_batch(keys, values) end
    return (now() - t0) * 1e9 / (CALLS * N)
  end },
  { name = "c_batch", run = function()
    local t0 = now()
    cbench.update_batch_loop(m:fd(), N, CALLS)
    return (now() - t0) * 1e9 / (CALLS * N)
  end },
  { name = "lua_single", run = function()
    local t0 = now()
    for _ = 1, CALLS do
      for i = 1, N do m:update(keys[i], values[i]) end
    end
    return (now() - t0) * 1e9 / (CALLS * N)
  end },
}

for _, s in ipairs(sides) do s.run() end -- warm-up
print(string.format("batch: hash u32 -> u64, %d entries per batch, %d batches per side, %d rounds",
  N, CALLS, ROUNDS))
local med = B.rounds(ROUNDS, sides, "entry", { "lua_batch", "c_batch" })
check("the rounds")
m:close()
local ratio = med.lua_batch / med.c_batch
B.target(string.format("m:update_batch / C update_batch <= %.2f (the same syscall; encoding "
  .. "10,000 keys and values in Lua is the difference)", TARGET))
print(string.format("batch: lua_batch %.1f ns/entry, c_batch %.1f ns/entry, ratio %.3f (%s); "
  .. "single m:update %.1f ns/entry, %.1f x slower than m:update_batch",
  med.lua_batch, med.c_batch, ratio, B.verdict(ratio <= TARGET), med.lua_single,
  med.lua_single / med.lua_batch))

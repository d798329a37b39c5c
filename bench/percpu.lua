-- bench/percpu.lua: m:lookup(k) on a per-CPU hash (u32 -> u64; each lookup
-- returns an array of ebpf.ncpus() values) against a raw C libbpf loop with
-- a value buffer of round_up(8, 8) * ncpus bytes, same map, same process.
-- Run from the repo root (make bench):
--   lua5.4 bench/percpu.lua [lookups_per_round [rounds]]
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local NKEYS = 10000
local ITERS = tonumber(arg and arg[1]) or 500000
local ROUNDS = tonumber(arg and arg[2]) or 7
local TARGET = 1.10
local SCRIPT = "bench/percpu.lua"
local cbench, now = B.cbench, B.now
local function fail(msg) B.fail(SCRIPT, msg) end

local ncpus = ebpf.ncpus()
local VALUE_BYTES = B.round_up(8, 8) * ncpus

-- each CPU's value differs, so a value read from the wrong slot shows
local function expected(k, cpu) return B.expected(k) + cpu end

local m = ebpf.create{ type = "percpu_hash", key = "u32", value = "u64", max_entries = NKEYS }
for k = 0, NKEYS - 1 do
  local vals = {}
  for c = 1, ncpus do vals[c] = expected(k, c - 1) end
  local ok, err = m:update(k, vals)
  if not ok then fail("update " .. k .. ": " .. tostring(err)) end
end

-- untimed correctness pass: every key reads back all its per-CPU values
for k = 0, NKEYS - 1 do
  local v, err = m:lookup(k)
  if type(v) ~= "table" or #v ~= ncpus then
    fail(string.format("lookup(%d) returned %s (%s), expected %d values", k, tostring(v),
      tostring(err), ncpus))
  end
  for c = 1, ncpus do
    if v[c] ~= expected(k, c - 1) then
      fail(string.format("lookup(%d)[%d] is %s, expected %d", k, c, tostring(v[c]),
        expected(k, c - 1)))
    end
  end
end
if m:lookup(NKEYS) ~= nil then fail("lookup of an absent key did not return nil") end
local _, cmiss = cbench.lookup_loop(m:fd(), NKEYS, NKEYS, VALUE_BYTES)
if cmiss ~= 0 then fail("the C loop missed " .. cmiss .. " of " .. NKEYS .. " keys") end

local function lua_round(n)
  local k = 0
  local t0 = now()
  for _ = 1, n do
    m:lookup(k)
    k = k + 1
    if k == NKEYS then k = 0 end
  end
  return (now() - t0) * 1e9 / n
end

local function c_round(n)
  local ns, misses = cbench.lookup_loop(m:fd(), NKEYS, n, VALUE_BYTES)
  if misses ~= 0 then fail("the C loop missed " .. misses .. " lookups") end
  return ns / n
end

local warm = math.max(1, math.floor(ITERS / 5))
lua_round(warm)
c_round(warm)

print(string.format("percpu: percpu_hash u32 -> u64, %d entries, %d CPUs (%d-byte values), "
  .. "%d rounds of %d lookups per side", NKEYS, ncpus, VALUE_BYTES, ROUNDS, ITERS))
local med = B.rounds(ROUNDS, {
  { name = "lua", run = function() return lua_round(ITERS) end },
  { name = "c", run = function() return c_round(ITERS) end },
}, "op", { "lua", "c" })
m:close()

local ratio = med.lua / med.c
B.target(string.format("lua/C <= %.2f: the same syscall; building the %d-value array per "
  .. "lookup may add at most 10%%", TARGET, ncpus))
print(string.format("percpu: lua %.1f ns/op, c %.1f ns/op, ratio %.3f (target <= %.2f %s)",
  med.lua, med.c, ratio, TARGET, B.verdict(ratio <= TARGET)))

-- bench/lookup.lua: m:lookup(k) against a raw C libbpf loop, same map, same
-- process. Run from the repo root (make bench):
--   lua5.4 bench/lookup.lua [lookups_per_round [rounds]]
-- A 10,000-entry hash (u32 -> u64) is filled and checked in an untimed pass;
-- then Lua and C take turns, each doing the same number of hits with keys
-- cycling 0..nkeys-1, and the median round of each side is compared.
package.path = "lua/?.lua;lua/?/init.lua;./bench/?.lua;" .. package.path
local B = require "benchlib" -- points package.cpath at this interpreter's build

local ebpf = require "luaebpf"
local cbench = B.cbench

local NKEYS = 10000
local ITERS = tonumber(arg and arg[1]) or 1000000
local ROUNDS = tonumber(arg and arg[2]) or 9
local TARGET = 1.10

local expected = B.expected
local function fail(msg) B.fail("bench/lookup.lua", msg) end

local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = NKEYS }
for k = 0, NKEYS - 1 do
  local ok, err = m:update(k, expected(k))
  if not ok then fail("update " .. k .. ": " .. tostring(err)) end
end

-- untimed correctness pass: every key reads back its value, a missing key is nil
for k = 0, NKEYS - 1 do
  local v, err = m:lookup(k)
  if v ~= expected(k) then
    fail(string.format("lookup(%d) returned %s (%s), expected %d", k, tostring(v),
      tostring(err), expected(k)))
  end
end
if m:lookup(NKEYS) ~= nil then fail("lookup of an absent key did not return nil") end
local _, cmiss = cbench.lookup_loop(m:fd(), NKEYS, NKEYS)
if cmiss ~= 0 then fail("the C loop missed " .. cmiss .. " of " .. NKEYS .. " keys") end

local now = B.now

local function lua_round(n)
  local k = 0
  local t0 = now()
  for _ = 1, n do
    m:lookup(k)
    k = k + 1
    if k == NKEYS then k = 0 end
  end
  return (now() - t0) * 1e9
end

local function c_round(n)
  local ns, misses = cbench.lookup_loop(m:fd(), NKEYS, n)
  if misses ~= 0 then fail("the C loop missed " .. misses .. " lookups") end
  return ns
end

local median = B.median

-- warm up both paths (page cache, branch predictors, CPU frequency)
local warm = math.max(1, math.floor(ITERS / 5))
lua_round(warm)
c_round(warm)

print(string.format("lookup: hash u32 -> u64, %d entries, %d rounds of %d lookups per side",
  NKEYS, ROUNDS, ITERS))
local lua_ns, c_ns = {}, {}
for r = 1, ROUNDS do
  if r % 2 == 1 then -- alternate who goes first, so drift hits both sides alike
    lua_ns[r] = lua_round(ITERS) / ITERS
    c_ns[r] = c_round(ITERS) / ITERS
  else
    c_ns[r] = c_round(ITERS) / ITERS
    lua_ns[r] = lua_round(ITERS) / ITERS
  end
  print(string.format("  round %d: lua %.1f ns/op, c %.1f ns/op, ratio %.3f",
    r, lua_ns[r], c_ns[r], lua_ns[r] / c_ns[r]))
end

local lua_med, c_med = median(lua_ns), median(c_ns)
m:close()
print(string.format("  target: lua/C <= %.2f: the same syscall; encoding the key and "
  .. "decoding the value in Lua may add at most 10%%", TARGET))
print(string.format("lookup: lua %.1f ns/op, c %.1f ns/op, ratio %.3f (target <= %.2f)",
  lua_med, c_med, lua_med / c_med, TARGET))

-- bench/mmap.lua: view:get(i) on a memory-mapped array (no syscall) against
-- m:lookup(i) on the same array (one syscall each), both in a Lua loop, and a
-- raw C libbpf lookup loop for reference. Run from the repo root (make bench):
--   lua5.4 bench/mmap.lua [reads_per_round [rounds]]
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local NKEYS = 10000
local ITERS = tonumber(arg and arg[1]) or 300000
local ROUNDS = tonumber(arg and arg[2]) or 7
local TARGET = 10
local SCRIPT = "bench/mmap.lua"
local cbench, now = B.cbench, B.cpu
local function fail(msg) B.fail(SCRIPT, msg) end

local m = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = NKEYS,
                       flags = { "mmapable" } }
for i = 0, NKEYS - 1 do
  local ok, err = m:update(i, B.expected(i))
  if not ok then fail("update " .. i .. ": " .. tostring(err)) end
end
local view = m:mmap()

-- untimed correctness pass: the view and lookup agree with what was written
if #view ~= NKEYS then fail("#view is " .. #view .. ", expected " .. NKEYS) end
for i = 0, NKEYS - 1 do
  local a, b = view:get(i), m:lookup(i)
  if a ~= B.expected(i) or b ~= B.expected(i) then
    fail(string.format("element %d: view %s, lookup %s, expected %d", i, tostring(a),
      tostring(b), B.expected(i)))
  end
end
assert(m:update(7, 42))
if view:get(7) ~= 42 then fail("the view did not see an update at once") end
assert(m:update(7, B.expected(7)))
local _, cmiss = cbench.lookup_loop(m:fd(), NKEYS, NKEYS)
if cmiss ~= 0 then fail("the C loop missed " .. cmiss .. " of " .. NKEYS .. " keys") end

local function view_round(n)
  local i = 0
  local t0 = now()
  for _ = 1, n do
    view:get(i)
    i = i + 1
    if i == NKEYS then i = 0 end
  end
  return (now() - t0) * 1e9 / n
end

local function lookup_round(n)
  local i = 0
  local t0 = now()
  for _ = 1, n do
    m:lookup(i)
    i = i + 1
    if i == NKEYS then i = 0 end
  end
  return (now() - t0) * 1e9 / n
end

local function c_round(n)
  local ns, misses = cbench.lookup_loop(m:fd(), NKEYS, n)
  if misses ~= 0 then fail("the C loop missed " .. misses .. " lookups") end
  return ns / n
end

local warm = math.max(1, math.floor(ITERS / 5))
view_round(warm)
lookup_round(warm)
c_round(warm)

print(string.format("mmap: mmapable array of %d u64, %d rounds of %d reads per side",
  NKEYS, ROUNDS, ITERS))
local med = B.rounds(ROUNDS, {
  { name = "view_get", run = function() return view_round(ITERS) end },
  { name = "lookup", run = function() return lookup_round(ITERS) end },
  { name = "c_lookup", run = function() return c_round(ITERS) end },
}, "op", { "lookup", "view_get" })
view:close()
m:close()

local speedup = med.lookup / med.view_get
B.target(string.format("lookup/view:get >= %d: a view read is a load from shared memory, a "
  .. "lookup a syscall; the view must be at least %dx faster", TARGET, TARGET))
print(string.format("mmap: view:get %.1f ns/op, m:lookup %.1f ns/op, speedup %.1fx "
  .. "(target >= %d %s); C lookup %.1f ns/op", med.view_get, med.lookup, speedup, TARGET,
  B.verdict(speedup >= TARGET), med.c_lookup))

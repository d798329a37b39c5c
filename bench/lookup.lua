-- bench/lookup.lua: m:lookup(k) against a raw C libbpf loop, same map, same
-- process. Run from the repo root (make bench):
--   lua5.4 bench/lookup.lua [lookups_per_round [rounds]]
-- A 10,000-entry hash (u32 -> u64) is filled and checked in an untimed pass;
-- then Lua (m:lookup(k), and get(k) with get = m:lookup_fn()), the floor
-- (cbench.lookup_floor, a Lua C function doing the same lookup with u32/u64
-- hard-coded), the method floor (the same as a C method: fm:lookup(k), fm =
-- cbench.floor_map(fd)) and C take turns, each doing the same number of hits
-- with keys cycling 0..nkeys-1, timed in CPU time, and the median round of
-- each side is compared.
-- With LUAEBPF_THEN_SO set to an older build's core.so, a side "then" times
-- that build's m:lookup on the same map (bench/lookup_then.sh builds one).
package.path = "lua/?.lua;lua/?/init.lua;./bench/?.lua;" .. package.path
local B = require "benchlib" -- points package.cpath at this interpreter's build

local ebpf = require "luaebpf"
local cbench = B.cbench

local NKEYS = 10000
local ITERS = tonumber(arg and arg[1]) or 1000000
local ROUNDS = tonumber(arg and arg[2]) or 9
local TARGET, FLOOR_TARGET = 1.10, 1.03

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
local get = m:lookup_fn()
for k = 0, NKEYS - 1 do
  if get(k) ~= expected(k) then fail("lookup_fn's get misread key " .. k) end
end
if m:lookup(NKEYS) ~= nil or get(NKEYS) ~= nil then
  fail("lookup of an absent key did not return nil")
end
local _, cmiss = cbench.lookup_loop(m:fd(), NKEYS, NKEYS)
if cmiss ~= 0 then fail("the C loop missed " .. cmiss .. " of " .. NKEYS .. " keys") end
local fm = cbench.floor_map(m:fd())
for k = 0, NKEYS - 1 do
  if cbench.lookup_floor(m:fd(), k) ~= expected(k) or fm:lookup(k) ~= expected(k) then
    fail("a floor misread key " .. k)
  end
end

local THEN_SO = os.getenv("LUAEBPF_THEN_SO")
local then_m
if THEN_SO then
  then_m = B.then_map(THEN_SO, m:info().id, { key = "u32", value = "u64" })
  for k = 0, NKEYS - 1 do
    if then_m:lookup(k) ~= expected(k) then fail("the older build misread key " .. k) end
  end
end

local now = B.cpu
local floor = cbench.lookup_floor
local fd = m:fd()

-- round(call, ...): a function timing n runs of the statement `call` (a
-- lookup of key k; the other arguments are its values x, y) with k cycling
-- over the keys. Each side's loop is compiled with its call written in,
-- unlike percpu.lua's side(f): a call through a wrapper would add a Lua call
-- to every lookup, which is most of what the floor ratio measures here.
local function round(call, x, y)
  local src = [[
local now, NKEYS, x, y = ...
return function(n)
  local k = 0
  local t0 = now()
  for _ = 1, n do
    ]] .. call .. [[

    k = k + 1
    if k == NKEYS then k = 0 end
  end
  return (now() - t0) * 1e9 / n
end]]
  return assert((loadstring or load)(src, "=round " .. call))(now, NKEYS, x, y)
end

local lua_round = round("x:lookup(k)", m)
local fn_round = round("x(k)", get) -- get = m:lookup_fn()
-- the floor: a Lua C function that does the same lookup with a u32 key and
-- a u64 value hard-coded (bench/cbench.c)
local floor_round = round("x(y, k)", floor, fd)
-- the method floor: the same as a C method, so what every method call costs
-- (the method's lookup through __index, a self check) is on both sides
local method_round = round("x:lookup(k)", fm)
local then_round = then_m and round("x:lookup(k)", then_m)

local function c_round(n)
  local ns, misses = cbench.lookup_loop(fd, NKEYS, n)
  if misses ~= 0 then fail("the C loop missed " .. misses .. " lookups") end
  return ns / n
end

-- warm up every side (page cache, branch predictors, CPU frequency)
local warm = math.max(1, math.floor(ITERS / 5))
lua_round(warm)
fn_round(warm)
floor_round(warm)
method_round(warm)
c_round(warm)
if then_round then then_round(warm) end

print(string.format("lookup: hash u32 -> u64, %d entries, %d rounds of %d lookups per side",
  NKEYS, ROUNDS, ITERS))
local sides = {
  { name = "lua", run = function() return lua_round(ITERS) end },
  { name = "fn", run = function() return fn_round(ITERS) end },
  { name = "floor", run = function() return floor_round(ITERS) end },
  { name = "method", run = function() return method_round(ITERS) end },
  { name = "c", run = function() return c_round(ITERS) end },
}
if then_round then
  sides[#sides + 1] = { name = "then", run = function() return then_round(ITERS) end }
end
local med = B.rounds(ROUNDS, sides, "op", { "lua", "c" })
m:close()
print(string.format("  target: lua/C <= %.2f: the same syscall; encoding the key and "
  .. "decoding the value in Lua may add at most 10%%", TARGET))
print(string.format("  target: lua/floor <= %.2f: against a Lua C function doing the same "
  .. "lookup, what luaebpf's own code adds", FLOOR_TARGET))
print("  fn: get(k), get = m:lookup_fn() (reported: no method call); method: the floor as a "
  .. "C method, fm:lookup(k) (reported: lua/method is what luaebpf adds to a method call)")
print(string.format("lookup: lua %.1f, fn %.1f, floor %.1f, method %.1f, c %.1f ns/op (CPU); "
  .. "%s, %s, %s, %s, %s, %s, %s", med.lua, med.fn, med.floor, med.method, med.c,
  (B.ratio_text(med, "lua", "c", TARGET)), (B.ratio_text(med, "lua", "floor", FLOOR_TARGET)),
  (B.ratio_text(med, "lua", "method")), (B.ratio_text(med, "fn", "c")),
  (B.ratio_text(med, "fn", "floor")), (B.ratio_text(med, "method", "floor")),
  (B.ratio_text(med, "floor", "c"))))
if then_m then
  print(string.format("lookup then: %s: then %.1f ns/op; %s, %s, %s", THEN_SO, med["then"],
    (B.ratio_text(med, "lua", "then")), (B.ratio_text(med, "then", "floor")),
    (B.ratio_text(med, "then", "c"))))
  io.stdout:flush()
  os.exit(0) -- not lua_close: see B.then_map
end

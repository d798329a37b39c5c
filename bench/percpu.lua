-- bench/percpu.lua: reading one per-CPU value (percpu_hash u32 -> u64) three
-- ways against a raw C libbpf loop (value buffer round_up(8, 8) * ncpus bytes)
-- and against floors, Lua C functions that do the same work with u32/u64
-- hard-coded (bench/cbench.c), all in the same process:
--   table: m:lookup(k)                         a new array of ncpus values per call
--   sum:   m:lookup(k, SUM)                    SUM = { percpu = "sum" }: reduced in C
--   into:  m:lookup(k, INTO)                   INTO = { into = t }: fills the caller's t
--   sum_fn, into_fn: the same through get = m:lookup_fn(SUM) / (INTO), get(k):
--          options read once, no method call
-- Timed in CPU time; medians of rounds whose order rotates. Run from the repo
-- root (make bench):
--   lua5.4 bench/percpu.lua [lookups_per_round [rounds]]
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local NKEYS = 10000
local ITERS = tonumber(arg and arg[1]) or 300000
local ROUNDS = tonumber(arg and arg[2]) or 7
local TARGET_TABLE, TARGET = 1.25, 1.15
local SCRIPT = "bench/percpu.lua"
local cbench, now = B.cbench, B.cpu
local function fail(msg) B.fail(SCRIPT, msg) end

local ncpus = ebpf.ncpus()
local VALUE_BYTES = B.round_up(8, 8) * ncpus

-- each CPU's value differs, so a value read from the wrong slot shows
local function expected(k, cpu) return B.expected(k) + cpu end
local function expected_sum(k)
  local s = 0
  for c = 0, ncpus - 1 do s = s + expected(k, c) end
  return s
end

local m = ebpf.create{ type = "percpu_hash", key = "u32", value = "u64", max_entries = NKEYS }
local fd = m:fd()
for k = 0, NKEYS - 1 do
  local vals = {}
  for c = 1, ncpus do vals[c] = expected(k, c - 1) end
  local ok, err = m:update(k, vals)
  if not ok then fail("update " .. k .. ": " .. tostring(err)) end
end

local SUM, T = { percpu = "sum" }, {}
local INTO = { into = T }
local sum_fn, into_fn = m:lookup_fn(SUM), m:lookup_fn(INTO)

-- untimed correctness pass: every key reads back all its per-CPU values, each way
for k = 0, NKEYS - 1 do
  local v, err = m:lookup(k)
  if type(v) ~= "table" or #v ~= ncpus then
    fail(string.format("lookup(%d) returned %s (%s), expected %d values", k, tostring(v),
      tostring(err), ncpus))
  end
  local t = m:lookup(k, INTO)
  local f = cbench.percpu_into_floor(fd, k, {})
  for c = 1, ncpus do
    if v[c] ~= expected(k, c - 1) or t[c] ~= v[c] or f[c] ~= v[c] then
      fail(string.format("lookup(%d)[%d] is %s (into: %s, floor: %s), expected %d", k, c,
        tostring(v[c]), tostring(t[c]), tostring(f[c]), expected(k, c - 1)))
    end
  end
  local t2 = into_fn(k)
  for c = 1, ncpus do
    if t2 ~= T or t2[c] ~= v[c] then
      fail(string.format("into_fn(%d)[%d] is %s, expected %d", k, c, tostring(t2[c]), v[c]))
    end
  end
  local s, fs = m:lookup(k, SUM), cbench.percpu_sum_floor(fd, k)
  if not B.same_sum(s, expected_sum(k)) or s ~= fs or sum_fn(k) ~= s then
    fail(string.format("lookup(%d, sum) is %s (floor %s), expected %s", k, tostring(s),
      tostring(fs), tostring(expected_sum(k))))
  end
end
if m:lookup(NKEYS) ~= nil or m:lookup(NKEYS, SUM) ~= nil or sum_fn(NKEYS) ~= nil then
  fail("lookup of an absent key did not return nil")
end
local _, cmiss = cbench.lookup_loop(fd, NKEYS, NKEYS, VALUE_BYTES)
if cmiss ~= 0 then fail("the C loop missed " .. cmiss .. " of " .. NKEYS .. " keys") end

-- one side: n calls of f(k) with k cycling over the keys
local function side(f)
  return function()
    local k = 0
    local t0 = now()
    for _ = 1, ITERS do
      f(k)
      k = k + 1
      if k == NKEYS then k = 0 end
    end
    return (now() - t0) * 1e9 / ITERS
  end
end
local floor_table, floor_sum, floor_into = cbench.percpu_table_floor, cbench.percpu_sum_floor,
  cbench.percpu_into_floor
local sides = {
  { name = "table", run = side(function(k) return m:lookup(k) end) },
  { name = "sum", run = side(function(k) return m:lookup(k, SUM) end) },
  { name = "into", run = side(function(k) return m:lookup(k, INTO) end) },
  { name = "sum_fn", run = side(function(k) return sum_fn(k) end) },
  { name = "into_fn", run = side(function(k) return into_fn(k) end) },
  { name = "floor_table", run = side(function(k) return floor_table(fd, k) end) },
  { name = "floor_sum", run = side(function(k) return floor_sum(fd, k) end) },
  { name = "floor_into", run = side(function(k) return floor_into(fd, k, T) end) },
  { name = "c", run = function()
      local ns, misses = cbench.lookup_loop(fd, NKEYS, ITERS, VALUE_BYTES)
      if misses ~= 0 then fail("the C loop missed " .. misses .. " lookups") end
      return ns / ITERS
    end },
}
for _, s in ipairs(sides) do s.run() end -- warm up

print(string.format("percpu: percpu_hash u32 -> u64, %d entries, %d CPUs (%d-byte values), "
  .. "%d rounds of %d lookups per side", NKEYS, ncpus, VALUE_BYTES, ROUNDS, ITERS))
local med = B.rounds(ROUNDS, sides, "op")
m:close()

B.target(string.format("table/c <= %.2f: a plain per-CPU lookup builds an array of %d values "
  .. "per call", TARGET_TABLE, ncpus))
B.target(string.format("sum/c, into/c <= %.2f: the same syscall, reduced in C or written into "
  .. "the caller's table, no allocation per call; sum_fn, into_fn: the same options bound "
  .. "once by m:lookup_fn", TARGET))
B.target("x/floor_x: against a Lua C function doing the same (reported: what luaebpf's own "
  .. "code adds to the least a Lua call can do)")
local parts = {}
for _, r in ipairs{ { "table", "c", TARGET_TABLE }, { "sum", "c", TARGET }, { "into", "c", TARGET },
                    { "sum_fn", "c", TARGET }, { "into_fn", "c", TARGET },
                    { "table", "floor_table" }, { "sum", "floor_sum" }, { "into", "floor_into" },
                    { "sum_fn", "floor_sum" }, { "into_fn", "floor_into" },
                    { "floor_sum", "c" } } do
  parts[#parts + 1] = (B.ratio_text(med, r[1], r[2], r[3]))
end
print(string.format("percpu: table %.1f, sum %.1f, into %.1f, sum_fn %.1f, into_fn %.1f, "
  .. "c %.1f ns/op (CPU); %s", med.table, med.sum, med.into, med.sum_fn, med.into_fn, med.c,
  table.concat(parts, ", ")))

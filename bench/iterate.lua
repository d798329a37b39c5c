-- bench/iterate.lua: walking a whole 1,000,000-entry hash (u32 -> u64) with
-- m:pairs() and m:dump() against raw C libbpf walks in the same process:
-- BPF_MAP_LOOKUP_BATCH with the batch size luaebpf uses, and the naive
-- get_next_key + lookup loop; and against their floors, Lua C functions that
-- do the same batch reads with u32/u64 hard-coded (cbench.dump_floor, whose
-- arrays are made max_entries large up front, and cbench.pairs_floor). All
-- timed in CPU time, medians of rounds whose order rotates. Then the peak
-- memory of a process that walks
-- the map with pairs() (and, for context, with dump()). Run from the repo root:
--   lua5.4 bench/iterate.lua [rounds]
--   lua5.4 bench/iterate.lua --child-pairs ID | --child-dump ID   (the memory probe)
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local NKEYS = 1000000
local SCRIPT = "bench/iterate.lua"

-- peak resident set of this whole process, in KiB
local function vm_hwm()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)%s*kB"))
end

-- child: open the map by id, walk it once, print entries, sum, peak KiB before and after
if arg[1] == "--child-pairs" or arg[1] == "--child-dump" then
  local m = ebpf.open_id(assert(tonumber(arg[2]), "a map id expected"),
                         { key = "u32", value = "u64" })
  local before = vm_hwm()
  local n, s = 0, 0
  if arg[1] == "--child-pairs" then
    for k, v in m:pairs() do
      n = n + 1
      s = s + k + v
    end
  else
    local ks, vs = m:dump()
    n = #ks
    for i = 1, n do s = s + ks[i] + vs[i] end
  end
  local after = vm_hwm()
  m:close()
  print(n, string.format(math.type and "%d" or "%.17g", s), before, after)
  os.exit(0)
end

local ROUNDS = tonumber(arg and arg[1]) or 5
local cbench = B.cbench
local now = B.cpu
local function fail(msg) B.fail(SCRIPT, msg) end

local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = NKEYS }
local fd = m:fd()
cbench.fill(fd, NKEYS)

local esum = 0
for k = 0, NKEYS - 1 do esum = esum + k + B.expected(k) end

-- untimed correctness pass: each walk sees every key once with its value
local function check_entries(what, ks, vs)
  if #ks ~= NKEYS or #vs ~= NKEYS then
    fail(string.format("%s: %d keys and %d values, expected %d", what, #ks, #vs, NKEYS))
  end
  local seen = {}
  for i = 1, NKEYS do
    local k, v = ks[i], vs[i]
    if type(k) ~= "number" or k < 0 or k >= NKEYS or seen[k] then
      fail(string.format("%s: key %s out of range or repeated", what, tostring(k)))
    end
    seen[k] = true
    if v ~= B.expected(k) then
      fail(string.format("%s: key %d read %s, expected %d", what, k, tostring(v), B.expected(k)))
    end
  end
end
do
  local ks, vs = {}, {}
  for k, v in m:pairs() do
    ks[#ks + 1] = k
    vs[#vs + 1] = v
  end
  check_entries("pairs", ks, vs)
end
local last = m:last_read()
if last.fallback or last.entries ~= NKEYS then
  fail("pairs did not walk the map in batches: " .. tostring(last.entries) .. " entries")
end
local BATCH = last.batch_size -- luaebpf's default: 1 MiB / (4 + 8) capped at 4096
check_entries("dump", m:dump())
collectgarbage("collect")
local _, cn, cs = cbench.batch_loop(fd, 4, 8, BATCH)
if cn ~= NKEYS or not B.same_sum(cs, esum) then
  fail(string.format("the C batch walk read %d entries, sum %s; expected %d, %s", cn,
    tostring(cs), NKEYS, tostring(esum)))
end
_, cn, cs = cbench.next_key_loop(fd, 4, 8)
if cn ~= NKEYS or not B.same_sum(cs, esum) then
  fail(string.format("the C next_key walk read %d entries, sum %s; expected %d, %s", cn,
    tostring(cs), NKEYS, tostring(esum)))
end

-- timed rounds: ns per entry of each whole walk
local sides = {
  { name = "pairs", run = function()
      local s = 0
      local t0 = now()
      for k, v in m:pairs() do s = s + k + v end -- touch both
      local t = now() - t0
      if not B.same_sum(s, esum) then fail("pairs: wrong sum " .. tostring(s)) end
      return t * 1e9 / NKEYS
    end },
  { name = "dump", run = function()
      local t0 = now()
      local ks, vs = m:dump()
      local t = now() - t0
      if #ks ~= NKEYS or #vs ~= NKEYS then fail("dump: " .. #ks .. " entries") end
      return t * 1e9 / NKEYS
    end },
  { name = "dump_floor", run = function()
      local t0 = now()
      local ks, vs = cbench.dump_floor(fd, BATCH, NKEYS)
      local t = now() - t0
      if #ks ~= NKEYS or #vs ~= NKEYS then fail("dump floor: " .. #ks .. " entries") end
      return t * 1e9 / NKEYS
    end },
  { name = "pairs_floor", run = function()
      local s = 0
      local t0 = now()
      for k, v in cbench.pairs_floor(fd, BATCH) do s = s + k + v end
      local t = now() - t0
      if not B.same_sum(s, esum) then fail("pairs floor: wrong sum " .. tostring(s)) end
      return t * 1e9 / NKEYS
    end },
  { name = "c_batch", run = function()
      local ns, n, s = cbench.batch_loop(fd, 4, 8, BATCH)
      if n ~= NKEYS or not B.same_sum(s, esum) then fail("C batch: wrong walk") end
      return ns / NKEYS
    end },
  { name = "c_next_key", run = function()
      local ns, n, s = cbench.next_key_loop(fd, 4, 8)
      if n ~= NKEYS or not B.same_sum(s, esum) then fail("C next_key: wrong walk") end
      return ns / NKEYS
    end },
}
print(string.format("iterate: hash u32 -> u64, %d entries, batch %d, %d rounds of each walk",
  NKEYS, BATCH, ROUNDS))
sides[1].run() -- warm up (page cache, allocator, CPU frequency)
sides[3].run()
local med = B.rounds(ROUNDS, sides, "entry")

-- peak memory: a fresh process per walk, so the figure is that walk's alone
local function child(mode)
  local cmd = string.format("%s %s --child-%s %d", B.interpreter(), SCRIPT, mode, m:info().id)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local n, s, before, after = out:match("^(%d+)%s+(%-?[%d.e+]+)%s+(%d+)%s+(%d+)")
  if not n or tonumber(n) ~= NKEYS or not B.same_sum(tonumber(s), esum) then
    fail(string.format("the %s child read a wrong map: %q", mode, out))
  end
  return tonumber(before) / 1024, tonumber(after) / 1024
end
local pairs_base, pairs_peak = child("pairs")
local _, dump_peak = child("dump")
m:close()

local r_dump, r_pairs = med.dump / med.c_batch, med.pairs / med.c_batch
local f_dump, f_pairs = med.dump / med.dump_floor, med.pairs / med.pairs_floor
local s_dump, s_pairs = med.c_next_key / med.dump, med.c_next_key / med.pairs
B.target("dump/C-batch <= 1.25: dump reads the same batches; decoding and building the "
  .. "two result arrays (made their final size at once) may add at most 25% to the syscalls")
B.target("pairs/C-batch <= 1.10: pairs adds a Lua call per entry to the batch read; at most 10%")
B.target("dump/floor, pairs/floor: against a Lua C function doing the same reads with no "
  .. "codec (reported, no target: what luaebpf's own code costs above the least a Lua call can do)")
B.target("C-next_key/dump and /pairs >= 4: two syscalls per entry cost far more than a "
  .. "batch; luaebpf's walks must beat a naive C walk at least 4x")
B.target(string.format("pairs peak RSS < 64 MiB: pairs holds one batch (%d entries), never "
  .. "the map; the whole process, interpreter included (%.1f MiB before the walk)",
  BATCH, pairs_base))
print(string.format("iterate: pairs %.1f, dump %.1f, pairs floor %.1f, dump floor %.1f, "
  .. "C batch %.1f, C next_key %.1f ns/entry (CPU); "
  .. "dump/C-batch %.3f (<= 1.25 %s), pairs/C-batch %.3f (<= 1.10 %s), "
  .. "dump/floor %.3f, pairs/floor %.3f, "
  .. "C-next_key/dump %.1fx, /pairs %.1fx (>= 4 %s); peak RSS pairs %.1f MiB (< 64 %s), "
  .. "dump %.1f MiB",
  med.pairs, med.dump, med.pairs_floor, med.dump_floor, med.c_batch, med.c_next_key,
  r_dump, B.verdict(r_dump <= 1.25), r_pairs, B.verdict(r_pairs <= 1.10),
  f_dump, f_pairs,
  s_dump, s_pairs, B.verdict(s_dump >= 4 and s_pairs >= 4),
  pairs_peak, B.verdict(pairs_peak < 64), dump_peak))

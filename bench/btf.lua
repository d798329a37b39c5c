-- bench/btf.lua: m:dump() of a 100,000-entry hash whose value is a struct
-- (integers, a char array, a nested struct), decoded by the map's own BTF
-- (the "btf" codec) against the same layout written by hand as a struct
-- codec, same map, same process; a raw C batch walk for reference. Needs
-- bpf/bench_btf.bpf.o (make). Run from the repo root (make bench):
--   lua5.4 bench/btf.lua [rounds]
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"

local NKEYS = 100000
local ROUNDS = tonumber(arg and arg[1]) or 7
local TARGET = 1.5
local SCRIPT = "bench/btf.lua"
local cbench, now = B.cbench, B.cpu
local function fail(msg) B.fail(SCRIPT, msg) end

-- struct flow_value of bpf/bench_btf.bpf.c, by hand
local HAND = {
  { "pid", "u32" },
  { "tgid", "u32" },
  { "comm", "char[16]" },
  { "io", { { "bytes", "u64" }, { "packets", "u64" } } },
  { "ts", "u64" },
}

local obj = ebpf.load("bpf/bench_btf.bpf.o")
local mb = obj:map("bench_flows")                         -- the "btf" codec (the default)
local mh = obj:map("bench_flows"):codec{ value = HAND }   -- the same map, by hand
obj:close()                                               -- the maps stay usable
mb:codec("btf")
if mb:info().value_type ~= "struct flow_value" then
  fail("the map's value is not BTF-typed: " .. tostring(mb:info().value_type))
end
local VALUE_SIZE = mb:info().value_size

local function value_of(k)
  return { pid = k, tgid = k + 1, comm = "worker-" .. (k % 1000),
           io = { bytes = k * 1500, packets = k }, ts = B.expected(k) }
end
for k = 0, NKEYS - 1 do
  local ok, err = mb:update(k, value_of(k))
  if not ok then fail("update " .. k .. ": " .. tostring(err)) end
end

-- untimed correctness pass: both codecs decode every entry to the same table
local bk, bv = mb:dump()
local hk, hv = mh:dump()
if #bk ~= NKEYS or #hk ~= NKEYS then
  fail(string.format("dump read %d (btf) and %d (hand) entries, expected %d", #bk, #hk, NKEYS))
end
local by_key = {}
for i = 1, NKEYS do by_key[hk[i]] = hv[i] end
for i = 1, NKEYS do
  local k = bk[i]
  if not B.deep_equal(bv[i], value_of(k)) then
    fail("btf decode of key " .. tostring(k) .. " differs from what was written")
  end
  if not B.deep_equal(bv[i], by_key[k]) then
    fail("btf and hand decodes of key " .. tostring(k) .. " differ")
  end
end
local BATCH = mb:last_read().batch_size
bk, bv, hk, hv, by_key = nil, nil, nil, nil, nil
local _, cn = cbench.batch_loop(mb:fd(), 4, VALUE_SIZE, BATCH)
if cn ~= NKEYS then fail("the C batch walk read " .. cn .. " entries") end

local function dump_round(m)
  local t0 = now()
  local ks = m:dump()
  local t = now() - t0
  if #ks ~= NKEYS then fail("dump read " .. #ks .. " entries") end
  return t * 1e9 / NKEYS
end

print(string.format("btf: hash u32 -> struct flow_value (%d bytes: 5 fields, char[16], a "
  .. "nested struct), %d entries, %d rounds of each dump", VALUE_SIZE, NKEYS, ROUNDS))
dump_round(mb) -- warm up
dump_round(mh)
local med = B.rounds(ROUNDS, {
  { name = "btf", run = function() return dump_round(mb) end },
  { name = "hand", run = function() return dump_round(mh) end },
  { name = "c_batch", run = function()
      local ns, n = cbench.batch_loop(mb:fd(), 4, VALUE_SIZE, BATCH)
      if n ~= NKEYS then fail("the C batch walk read " .. n .. " entries") end
      return ns / NKEYS
    end },
}, "entry", { "btf", "hand" })
mb:close()
mh:close()

local ratio = med.btf / med.hand
B.target(string.format("btf/hand <= %.1f: both compile to the same codec nodes; the BTF one "
  .. "may cost at most 50%% more per entry", TARGET))
print(string.format("btf: dump with btf codec %.1f ns/entry, hand codec %.1f ns/entry, ratio %.3f "
  .. "(target <= %.1f %s); C batch %.1f ns/entry", med.btf, med.hand, ratio, TARGET,
  B.verdict(ratio <= TARGET), med.c_batch))

-- bench/callgrind_lookup.lua: instructions per lookup, load-independent. Run
-- under valgrind --tool=callgrind twice, with N and with 0 lookups; the
-- difference / N is what one call costs (syscall entry excluded: callgrind
-- counts user-space instructions only). make bench-callgrind runs it.
--   lua5.4 bench/callgrind_lookup.lua MODE N
-- MODE: plain (hash u32 -> u64), plain_fn (through m:lookup_fn()), floor
--       (cbench.lookup_floor on it), method_floor (the same as a C method),
--       table | sum | into (percpu_hash u32 -> u64: m:lookup(k), with
--       { percpu = "sum" }, with { into = t }), sum_fn | into_fn (the same
--       through m:lookup_fn), floor_sum, floor_into;
--       walks of an N-entry hash u32 -> u64 (per entry): pairs, pairs_floor,
--       dump, dump_floor;
--       then: m:lookup(k) of an older build's core.so at $LUAEBPF_THEN_SO
--       (bench/lookup_then.sh), on the same hash as plain
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
local B = require "benchlib"
local ebpf = require "luaebpf"
local mode, N = arg[1], tonumber(arg[2])
local walks = { pairs = true, pairs_floor = true, dump = true, dump_floor = true }
if walks[mode] then
  local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 1000000 }
  B.cbench.fill(m:fd(), N)
  local fd, s = m:fd(), 0
  if mode == "pairs" then
    for k, v in m:pairs() do s = s + k + v end
  elseif mode == "pairs_floor" then
    for k, v in B.cbench.pairs_floor(fd, 4096) do s = s + k + v end
  elseif mode == "dump" then
    local ks = m:dump()
    s = #ks
  else
    local ks = B.cbench.dump_floor(fd, 4096, N)
    s = #ks
  end
  m:close()
  return
end
local NKEYS = 1000
local percpu = mode ~= "plain" and mode ~= "plain_fn" and mode ~= "floor" and mode ~= "method_floor"
  and mode ~= "then"
local m = ebpf.create{ type = percpu and "percpu_hash" or "hash", key = "u32", value = "u64",
                       max_entries = NKEYS }
for k = 0, NKEYS - 1 do assert(m:update(k, k)) end
local fd, cb = m:fd(), B.cbench
local fm = cb.floor_map(fd)
local SUM, T = { percpu = "sum" }, {}
local INTO = { into = T }
local sum_fn, into_fn, plain_fn
if not percpu then plain_fn = m:lookup_fn() end
if percpu then sum_fn, into_fn = m:lookup_fn(SUM), m:lookup_fn(INTO) end
local then_m = mode == "then"
  and B.then_map(assert(os.getenv("LUAEBPF_THEN_SO"), "then: LUAEBPF_THEN_SO unset"),
    m:info().id, { key = "u32", value = "u64" })
local f = ({
  plain = function(k) return m:lookup(k) end,
  table = function(k) return m:lookup(k) end,
  sum = function(k) return m:lookup(k, SUM) end,
  into = function(k) return m:lookup(k, INTO) end,
  plain_fn = function(k) return plain_fn(k) end,
  sum_fn = function(k) return sum_fn(k) end,
  into_fn = function(k) return into_fn(k) end,
  floor = function(k) return cb.lookup_floor(fd, k) end,
  method_floor = function(k) return fm:lookup(k) end,
  ["then"] = function(k) return then_m:lookup(k) end,
  floor_sum = function(k) return cb.percpu_sum_floor(fd, k) end,
  floor_into = function(k) return cb.percpu_into_floor(fd, k, T) end,
})[mode]
assert(f, "mode: plain, plain_fn, floor, method_floor, table, sum, into, sum_fn, into_fn, floor_sum, floor_into or then")
f(1)
local k = 0
for _ = 1, N do
  f(k)
  k = k + 1
  if k == NKEYS then k = 0 end
end
m:close()
if then_m then os.exit(0) end -- not lua_close: see B.then_map

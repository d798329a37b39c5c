-- examples/openresty/fixture.lua DIR [N]: pins and fills, through luaebpf, the
-- maps examples/openresty/test.sh and bench/http.sh serve, in DIR (a bpffs):
--   counts        hash u32 -> u64 (no BTF): small and huge values (2^53 + 1, 2^64 - 1)
--   shapes        hash, BTF struct key { pid, comm } -> struct (bpf/shapes.bpf.o)
--   percpu_inner  percpu_hash, BTF u64 -> struct inner, different values per CPU
--   big           hash u32 -> u64 with N entries (default 2500): several slices
--   queue         a queue (cannot be walked: the server answers 500)
--   lat           the main job's latency histogram: bpf/hist.bpf.o's map
--                 `latency` (per-CPU array of 32 log2 slots, BTF), loaded
--                 but not attached, filled with known counts; served with
--                 hist=log2 (its name does not say it is a histogram)
--   io_hist       array u32 -> u64 (no BTF) named lx_io_hist: a log2
--                 histogram by its name
--   edge_hist     array u32 -> u64 named lx_edge_hist: 2^53 + 1 in slot 1
--   conns         bpf/tcpconn.bpf.o's conns4 (BTF key { laddr, raddr, port, dir }
--                 with network-order addresses) -> u64, two connections
--   private/hidden  a hash that is not served (the server answers 403)
-- Runs under any Lua luaebpf builds for (5.1 syntax); needs root.
local root = (arg and arg[0] or ""):match("^(.*)/examples/openresty/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local dir, n = arg[1], tonumber(arg[2] or "2500")
assert(dir, "usage: fixture.lua DIR [N]")
local U64MAX = math.type and -1 or "18446744073709551615"
local BIG53 = math.type and 9007199254740993 or "9007199254740993"

local counts = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 16,
  name = "lx_counts", int64 = "string" }
assert(counts:update(1, 5))
assert(counts:update(2, BIG53))
assert(counts:update(3, U64MAX))
assert(counts:update(4, 0))
assert(counts:pin(dir .. "/counts"))

local obj = ebpf.load(root .. "/bpf/shapes.bpf.o")
local shapes = obj:map("shapes")
shapes:codec{ int64 = "string" }
assert(shapes:update({ pid = 1, comm = 'q"b\\s' }, { u8v = 1, s16v = -2, s32v = 3,
  u64v = U64MAX, s64v = -5, flag = true, name = "first", list = { 1, 2, 3 },
  ["in"] = { port = 80, delta = -1, bytes = BIG53 }, color = "BLUE" }))
assert(shapes:update({ pid = 4242, comm = "nginx" }, { u64v = 7, name = "second" }))
assert(shapes:pin(dir .. "/shapes"))

local per = obj:map("percpu_inner")
per:codec{ int64 = "string" }
local ncpus = ebpf.ncpus()
for _, key in ipairs({ 1, 77 }) do
  local values = {}
  for c = 1, ncpus do values[c] = { port = key + c, delta = c % 3 - 1, bytes = key * 1000 + c } end
  assert(per:update(key, values))
end
assert(per:pin(dir .. "/percpu_inner"))
obj:close()

local big = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = n,
  name = "lx_big" }
for i = 1, n do assert(big:update(i, i * 3)) end
assert(big:pin(dir .. "/big"))

local q = ebpf.create{ type = "queue", key_size = 0, value = "u32", max_entries = 4,
  name = "lx_queue" }
assert(q:update(nil, 9))
assert(q:pin(dir .. "/queue"))

-- the latency histogram: whole counts per slot, spread over the CPUs (the
-- last CPU gets the rest); the 99th percentile falls in slot 12
local LAT = { [3] = 100, [10] = 800, [12] = 95, [20] = 5 }
local hist = ebpf.load(root .. "/bpf/hist.bpf.o")
local lat = hist:map("latency")
for slot, total in pairs(LAT) do
  local per, left = {}, total
  for c = 1, ncpus - 1 do
    per[c] = math.floor(total / (ncpus + 1))
    left = left - per[c]
  end
  per[ncpus] = left
  assert(lat:update(slot, per))
end
assert(lat:pin(dir .. "/lat"))
hist:close()

local io_hist = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 16,
  name = "lx_io_hist" }
assert(io_hist:update(0, 2))
assert(io_hist:update(4, 7))
assert(io_hist:update(9, 1))
assert(io_hist:pin(dir .. "/io_hist"))

-- a histogram holding a count a double cannot: 2^53 + 1 in slot 1
local edge_hist = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 4,
  name = "lx_edge_hist" }
assert(edge_hist:update(1, math.type and 9007199254740993 or "9007199254740993"))
assert(edge_hist:update(2, 5))
assert(edge_hist:pin(dir .. "/edge_hist"))

-- TCP connections as bpf/tcpconn.bpf.o counts them: a BTF struct key whose
-- addresses are network-order u32s, served with decode=laddr:ipv4+raddr:ipv4
local tcp = ebpf.load(root .. "/bpf/tcpconn.bpf.o")
local conns = tcp:map("conns4")
conns:codec{ decode = { laddr = "ipv4", raddr = "ipv4" } }
assert(conns:update({ laddr = "10.0.0.1", raddr = "192.168.7.20", port = 443, dir = 0 }, 3))
assert(conns:update({ laddr = "127.0.0.1", raddr = "127.0.0.1", port = 8080, dir = 1 }, 5))
assert(conns:pin(dir .. "/conns"))
tcp:close()

os.execute("mkdir -p '" .. dir .. "/private'")
local hidden = ebpf.create{ type = "hash", key = "u32", value = "u32", max_entries = 4,
  name = "lx_hidden" }
assert(hidden:update(1, 1))
assert(hidden:pin(dir .. "/private/hidden"))

-- examples/tcpconn.lua: TCP connections this host opens and accepts, counted
-- by local address, remote address, service port and direction, printed as a
-- table at the end, like a small `ss -s` over time. Loads bpf/tcpconn.bpf.o,
-- attaches its program to the inet_sock_set_state tracepoint (tp_btf: no
-- kprobes, no tracefs) and after SECONDS (default 5) reads the two maps
-- (`conns4`, `conns6`) through their BTF with field decoders, so addresses
-- print as text ("10.0.0.1", "::1") rather than the integers the key holds.
--
--   lua5.4 examples/tcpconn.lua [SECONDS]     (also lua5.3, luajit)
--
-- Loading and attaching BPF programs needs root (CAP_BPF and CAP_PERFMON).
local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local seconds = tonumber(arg and arg[1] or 5)
if not (seconds and seconds > 0) then
  io.stderr:write("usage: tcpconn.lua [SECONDS]  (a number > 0, default 5)\n")
  os.exit(2)
end

local ok, obj = pcall(ebpf.load, root .. "/bpf/tcpconn.bpf.o")
if not ok then
  io.stderr:write(tostring(obj), "\n(loading BPF programs needs root; run `make` first)\n")
  os.exit(1)
end
local link = obj:attach("on_state")

-- sleeps without a busy loop: Lua has no sleep of its own
local function sleep(s)
  local f = io.popen("sleep " .. s)
  if f then f:close() end
end
io.stderr:write(("counting TCP connections for %s s...\n"):format(seconds))
sleep(seconds)
link:close()

-- the key's BTF struct (laddr, raddr, port, dir) with both addresses decoded
local rows = {}
for _, spec in ipairs{ { "conns4", "ipv4" }, { "conns6", "ipv6" } } do
  local m = obj:map(spec[1])
  m:codec{ key = "btf", decode = { laddr = spec[2], raddr = spec[2] } }
  local keys, counts = m:dump()
  for i, k in ipairs(keys) do
    rows[#rows + 1] = { dir = k.dir == 1 and "in" or "out", laddr = k.laddr, raddr = k.raddr,
                        port = k.port, count = counts[i] }
  end
  m:close()
end
obj:close()

table.sort(rows, function(a, b)
  if a.count ~= b.count then return a.count > b.count end
  if a.port ~= b.port then return a.port < b.port end
  return a.raddr < b.raddr
end)
local FORMAT = "%-3s  %-39s  %-39s  %5s  %7s\n"
io.write(FORMAT:format("DIR", "LOCAL", "REMOTE", "PORT", "COUNT"))
for _, r in ipairs(rows) do
  io.write(FORMAT:format(r.dir, r.laddr, r.raddr, r.port, tostring(r.count)))
end
io.stderr:write(("%d connection groups\n"):format(#rows))

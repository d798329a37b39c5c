-- examples/syscount.lua: the main job (make run). Loads bpf/syscount.bpf.o
-- and bpf/hist.bpf.o, attaches them to the sys_enter/sys_exit raw
-- tracepoints, and prints, once a second, the ten processes making the most
-- system calls (like a small `top`), then the latency histogram of every
-- system call seen; detaches and exits 0.
--
--   lua5.4 examples/syscount.lua [SECONDS]     (default 5; make run DURATION=N)
--
-- Loading and attaching BPF programs needs root (CAP_BPF and CAP_PERFMON).
local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"
local format = require "luaebpf.format"

local seconds = tonumber(arg and arg[1] or nil) or 5
if seconds < 1 or seconds ~= math.floor(seconds) then
  io.stderr:write("usage: syscount.lua [SECONDS]  (a whole number >= 1)\n")
  os.exit(2)
end

local function sleep(s)
  os.execute("sleep " .. s)
end

local function load(name)
  local ok, obj = pcall(ebpf.load, root .. "/bpf/" .. name .. ".bpf.o")
  if not ok then
    io.stderr:write(tostring(obj), "\n(loading BPF programs needs root; run `make` first)\n")
    os.exit(1)
  end
  return obj
end

local syscount, hist = load("syscount"), load("hist")
local counts = syscount:map("counts")   -- key struct { u32 pid; char comm[16]; }, value u64
local latency = hist:map("latency")     -- per-CPU array: slot log2(ns) -> count
local links = { syscount:attach("on_enter") }
for _, link in pairs(hist:attach_all()) do links[#links + 1] = link end

local prev = ebpf.snapshot(counts)
for second = 1, seconds do
  sleep(1)
  local cur = ebpf.snapshot(counts)
  local d = ebpf.delta(prev, cur)
  prev = cur
  local rows, total, procs = {}, 0, 0
  for _, e in ipairs(d.changed) do rows[#rows + 1] = e end
  for _, e in ipairs(d.new) do rows[#rows + 1] = e end
  for _, e in ipairs(rows) do total = total + e.delta end
  for _ in pairs(cur) do procs = procs + 1 end
  table.sort(rows, function(a, b) return a.delta > b.delta end)
  local top = {}
  for i = 1, math.min(10, #rows) do
    local e = rows[i]
    top[i] = { e.key.pid, e.key.comm, e.delta, e.value }
  end
  io.write(string.format("\n%s  %d/%d s  %d syscalls/s  %d processes seen\n",
    os.date("%H:%M:%S"), second, seconds, total, procs))
  io.write(format.table_rows({ ">PID", "COMM", ">SYSCALLS/s", ">TOTAL" }, top))
  io.flush()
end

for _, link in ipairs(links) do link:close() end

local slots = {}
for slot, per_cpu in latency:pairs() do slots[slot] = ebpf.sum(per_cpu) end
io.write("\nsystem call latency, all processes:\n")
io.write(format.log2_hist(slots, "nsecs"))

counts:close(); latency:close()
syscount:close(); hist:close()

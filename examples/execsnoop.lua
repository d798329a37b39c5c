-- examples/execsnoop.lua: new processes as they start, like BCC's execsnoop.
-- Loads bpf/execsnoop.bpf.o, attaches its program to the sched_process_exec
-- tracepoint (tp_btf: no kprobes, no tracefs) and prints one aligned line per
-- successful exec, system-wide: time, pid, parent pid, uid, command name and
-- the file exec'd. The records come through the program's ring buffer
-- (`events`), decoded by their type in the object's BTF ("struct event").
-- Runs for SECONDS, or until Ctrl-C without one; then prints on stderr how
-- many execs it saw and how many the ring had no room for, detaches, exits 0.
--
--   lua5.4 examples/execsnoop.lua [SECONDS]     (also lua5.3, luajit)
--
-- Loading and attaching BPF programs needs root (CAP_BPF and CAP_PERFMON).
local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local seconds = arg and arg[1] and tonumber(arg[1])
if arg and arg[1] and not (seconds and seconds > 0) then
  io.stderr:write("usage: execsnoop.lua [SECONDS]  (a number > 0; none: until Ctrl-C)\n")
  os.exit(2)
end

-- one line for any error: error objects print themselves; a Lua error string
-- loses its "file:line:" prefix
local function message(err)
  return (tostring(err):gsub("^[^%s:]+:%d+: ", ""))
end

-- seconds since boot, to 10 ms: os.time() counts whole seconds, os.clock() CPU time
local function uptime()
  local f = io.open("/proc/uptime")
  local s = f and f:read("*n")
  if f then f:close() end
  return s or os.time()
end

local ok, obj = pcall(ebpf.load, root .. "/bpf/execsnoop.bpf.o")
if not ok then
  io.stderr:write(message(obj), "\n(loading BPF programs needs root; run `make` first)\n")
  os.exit(1)
end
local link = obj:attach("on_exec")
local rb = obj:ringbuf("events", { record = "struct event" })
local drops = obj:map("drops")

local FORMAT = "%-8s %7s %7s %6s  %-16s %s\n"
io.stdout:setvbuf("line")
io.write(FORMAT:format("TIME", "PID", "PPID", "UID", "COMM", "FILENAME"))

local seen = 0
local function show(e)
  seen = seen + 1
  io.write(FORMAT:format(os.date("%H:%M:%S"), e.pid, e.ppid, e.uid, e.comm, e.filename))
end

-- polls in slices of at most a second until the deadline; Ctrl-C interrupts
-- the wait (EINTR) and then raises "interrupted!" from the interpreter's
-- hook, both of which end the loop the same way
local function run()
  local deadline = seconds and uptime() + seconds
  while true do
    local wait = 1000
    if deadline then
      wait = math.floor((deadline - uptime()) * 1000 + 0.5)
      if wait <= 0 then return end
      if wait > 1000 then wait = 1000 end
    end
    local n, err = rb:poll(wait, show)
    if not n then
      if err.code == "EINTR" then return end
      error(err, 0)
    end
  end
end

local done, err = pcall(run)
local interrupted = not done and tostring(err):find("interrupted!", 1, true)
link:close()
rb:consume(show) -- what arrived before the detach
io.stderr:write(("%d execs, %d lost (ring full)\n"):format(seen, drops:lookup(0) or 0))
rb:close(); drops:close(); obj:close()
if not done and not interrupted then
  io.stderr:write(message(err), "\n")
  os.exit(1)
end

-- spec/link_spec.lua: what a Link and a Program give beyond attaching:
-- link:read() of a bpf_iter link (bpf/task_iter.bpf.o prints "tgid pid comm"
-- for every task), link:info(), link:pin() and ebpf.open_link(), Programs
-- (obj:program, prog:info, prog:pin, ebpf.open_program). Oracles: /proc (our
-- pid, our threads, children's comms), the pinned iterator read by cat,
-- bpftool's link and prog show. Every pin is removed, every link closed.
-- 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local SYSCOUNT, ITER = "bpf/syscount.bpf.o", "bpf/task_iter.bpf.o"
local PID = tonumber((H.run("echo $PPID"):gsub("%s", "")))
local mentions, raised, int = H.mentions, H.raised, H.int
local track, close_tracked = H.tracker()

--- { [pid] = { tgid =, comm = } } from the task iterator's text
local function parse_tasks(text)
  local tasks, n = {}, 0
  for line in text:gmatch("[^\n]+") do
    local tgid, pid, comm = line:match("^(%d+) (%d+) (.*)$")
    assert(tgid, "a line not as the program prints it: " .. line)
    tasks[tonumber(pid)] = { tgid = tonumber(tgid), comm = comm }
    n = n + 1
  end
  return tasks, n
end

local function comm_of(pid)
  return (H.read_file("/proc/" .. pid .. "/comm"):gsub("\n$", ""))
end

--- starts `sleep 30` in the background; its pid once it runs sleep (between
-- fork and exec its comm is still the shell's)
local function spawn_sleep()
  local pid = tonumber((H.run("sleep 30 >/dev/null 2>&1 & echo $!"):gsub("%s", "")))
  for _ = 1, 100 do
    local f = io.open("/proc/" .. pid .. "/comm")
    local comm = f and f:read("*l")
    if f then f:close() end
    if comm == "sleep" then return pid end
    H.run("sleep 0.02")
  end
  error("sleep " .. pid .. " did not start")
end

--- bpftool's view of a link id: the decoded JSON, or nil when it is gone
local function bpftool_link(id)
  local out, ok = H.sh("bpftool -j link show id " .. string.format("%d", id))
  return ok and cjson.decode(out) or nil
end

--- true once no link has this id (the kernel frees it a moment after its last holder)
local function link_gone(id)
  for _ = 1, 50 do
    if not bpftool_link(id) then return true end
    H.run("sleep 0.1")
  end
  return false
end

-- runs fn with n more tasks on the machine (sleeping processes of our own):
-- list_tasks_8x prints 8 lines of about 20 bytes per task, and a quiet
-- machine (or one under valgrind) may have too few for many pages
local function with_tasks(n, fn)
  local pids = H.run("for i in $(seq " .. n .. "); do sleep 60 >/dev/null 2>&1 & echo $!; done")
  local ok, err = pcall(fn)
  H.run("kill " .. pids:gsub("%s+", " ") .. " 2>/dev/null; true")
  assert(ok, err)
end

describe("link:read", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("returns the task iterator's whole output: this process and its children with their comms", function()
    -- three children with a comm of their own, alive while the iterator runs
    local pids = {}
    for i = 1, 3 do
      pids[i] = spawn_sleep()
    end
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks"))
    local text = link:read()
    H.run("kill " .. table.concat(pids, " "))
    assert.is_string(text)
    local tasks, n = parse_tasks(text)
    assert.are.equal(PID, tasks[PID].tgid)
    assert.are.equal(comm_of(PID), tasks[PID].comm)
    for _, p in ipairs(pids) do
      assert.are.same({ tgid = p, comm = "sleep" }, tasks[p])
    end
    -- every thread of this process, by /proc's list
    for tid in H.run("ls /proc/" .. PID .. "/task"):gmatch("%d+") do
      assert.are.equal(PID, tasks[tonumber(tid)].tgid, "thread " .. tid)
    end
    assert.is_true(n > 20, "only " .. n .. " tasks")
  end)

  it("reads output of many pages whole", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks_8x"))
    local text
    with_tasks(150, function() text = link:read() end)
    assert.is_true(#text > 4 * 4096, #text .. " bytes")
    local seen = {}
    for line in text:gmatch("[^\n]+") do seen[line] = (seen[line] or 0) + 1 end
    local mine = PID .. " " .. PID .. " " .. comm_of(PID)
    assert.are.equal(8, seen[mine])
    for line, times in pairs(seen) do assert.are.equal(8, times, line) end
  end)

  it("runs the iterator afresh on each call", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks"))
    local before = parse_tasks(link:read())
    local pid = spawn_sleep()
    local during = parse_tasks(link:read())
    H.run("kill " .. pid .. "; while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.05; done")
    assert.is_nil(before[pid])
    assert.are.equal("sleep", during[pid].comm)
    local after = parse_tasks(link:read())
    assert.is_nil(after[pid]) -- reaped: gone from the next run
  end)

  it("gives what cat gives of the same iterator pinned (the kernel's own reader)", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks"))
    local path = fs.path .. "/tasks"
    assert.is_true(link:pin(path))
    local by_cat = parse_tasks(H.run("cat " .. path))
    local ours = parse_tasks(link:read())
    assert.is_true(os.remove(path))
    -- kernel threads 2..50 are there for the life of the machine; compare
    -- those whose comm stays (a kworker's names its current work)
    local same = 0
    for pid = 2, 50 do
      if by_cat[pid] and ours[pid] and not by_cat[pid].comm:find("^kworker") then
        assert.are.same(by_cat[pid], ours[pid])
        same = same + 1
      end
    end
    assert.is_true(same > 3, "kernel threads compared: " .. same)
    assert.are.same(by_cat[PID], ours[PID])
  end)

  it("link:chunks() reads one run in chunks of at most 16 KiB", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks_8x"))
    local parts = {}
    with_tasks(150, function()
      for chunk in link:chunks() do
        assert.is_true(#chunk > 0 and #chunk <= 16384, #chunk .. " bytes")
        parts[#parts + 1] = chunk
      end
    end)
    assert.is_true(#table.concat(parts) > 16384, #table.concat(parts) .. " bytes")
    assert.is_true(#parts > 1, #parts .. " chunks")
    local seen = {}
    for line in table.concat(parts):gmatch("[^\n]+") do seen[line] = (seen[line] or 0) + 1 end
    assert.are.equal(8, seen[PID .. " " .. PID .. " " .. comm_of(PID)])
    for line, times in pairs(seen) do assert.are.equal(8, times, line) end
  end)

  it("link:chunks() closes its iterator fd when the loop ends or breaks", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks_8x"))
    local function iter_fds() -- this process's fds of iterator runs
      return tonumber((H.run("ls -l /proc/" .. PID .. "/fd | grep -c 'anon_inode:bpf_iter' || true")
        :gsub("%s", "")))
    end
    for _ = 1, 20 do
      for _ in link:chunks() do end
    end
    assert.are.equal(0, iter_fds())
    local function broken()
      for _ in link:chunks() do break end
    end
    -- in a coroutine that ends: LuaJIT may keep a stale stack slot of a
    -- running frame (or a trace's) pointing at the last iterator, which no
    -- collection then frees; a finished coroutine's stack holds nothing
    coroutine.wrap(function() for _ = 1, 20 do broken() end end)()
    if _VERSION == "Lua 5.4" then
      assert.are.equal(0, iter_fds()) -- break closed each run at once
    end                               -- elsewhere the collector does
    -- the collector closes the rest. On LuaJIT a compiled trace may keep the
    -- iterator closure it was specialised on (and so its run) as a constant
    -- until the trace goes: flush the traces first
    if jit then jit.flush() end
    for _ = 1, 10 do
      collectgarbage()
      collectgarbage()
      if iter_fds() == 0 then break end
    end
    assert.are.equal(0, iter_fds())
  end)

  it("link:chunks() gives its run to close by hand, for Luas whose for loop closes nothing", function()
    local obj = track(ebpf.load(ITER))
    local link = track(obj:attach("list_tasks_8x"))
    local function iter_fds()
      return tonumber((H.run("ls -l /proc/" .. PID .. "/fd | grep -c 'anon_inode:bpf_iter' || true")
        :gsub("%s", "")))
    end
    -- hot enough for LuaJIT to compile the loop, which then keeps its iterator
    for _ = 1, 200 do
      local step, run = link:chunks()
      for chunk in step, run do
        assert.is_true(#chunk > 0)
        break
      end
      run:close()
    end
    assert.are.equal(0, iter_fds()) -- no collection, no trace flush
    -- a closed run ends its loop at once, and closes again quietly
    local step, run = link:chunks()
    assert.is_string(step(run))
    run:close()
    run:close()
    assert.is_nil(step(run))
    local n = 0
    for _ in step, run do n = n + 1 end
    assert.are.equal(0, n)
    -- a run read to the end is closed already
    step, run = link:chunks()
    for _ in step, run do end
    assert.are.equal(0, iter_fds())
    run:close()
  end)

  it("raises class \"invalid\" on a link that is not an iterator, naming its type", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local link = track(obj:attach("on_enter"))
    local err = raised(link.read, link)
    assert.are.equal("table", type(err))
    assert.are.equal("invalid", err.class)
    assert.are.equal("read", err.op)
    assert.are.equal("on_enter", err.program)
    mentions(err, { "not an iterator", "raw_tracepoint" })
    err = raised(link.chunks, link)
    assert.are.equal("invalid", err.class)
    mentions(err, { "chunks()", "raw_tracepoint" })
  end)

  it("raises class \"closed\" after close", function()
    local obj = track(ebpf.load(ITER))
    local link = obj:attach("list_tasks")
    link:close()
    for _, m in ipairs({ "read", "chunks", "info", "pin", "fd" }) do
      local err = raised(link[m], link, "/sys/fs/bpf/never")
      assert.are.equal("closed", err.class, m)
    end
  end)
end)

describe("link:info and link:pin", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("gives the link's id, type and program id as bpftool shows them", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local link = track(obj:attach("on_enter"))
    local info = link:info()
    local shown = bpftool_link(info.id)
    assert.are.equal(info.id, int(shown.id))
    assert.are.equal("raw_tracepoint", info.type)
    assert.are.equal(shown.type, info.type)
    assert.are.equal(int(shown.prog_id), info.prog_id)
    assert.are.equal(H.prog_id(obj:programs()[1].fd), info.prog_id)
    assert.are.equal(shown.tp_name, info.tp_name)
    assert.is_true(link:fd() > 2)
    -- the same table ebpf.links() gives for this link
    local listed
    for l in ebpf.links() do if l.id == info.id then listed = l end end
    assert.are.same(listed, info)
  end)

  it("keeps a pinned link attached after close, until the pin is removed", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local counts = track(obj:map("counts"))
    local link = track(obj:attach("on_enter"))
    local id = link:info().id
    local path = fs.path .. "/on_enter"
    assert.is_true(link:pin(path))
    local shown = cjson.decode(H.run("bpftool -j link show pinned " .. path))
    assert.are.equal(id, int(shown.id))
    link:close()
    obj:close()
    assert.is_truthy(bpftool_link(id)) -- the pin holds it
    local function mine()
      local n = 0
      for k, v in counts:pairs() do if k.pid == PID then n = n + v end end
      return n
    end
    local c1 = mine()
    H.syscalls(50)
    assert.is_true(mine() >= c1 + 100, "still counting")
    -- opened from the pin: the same link
    local opened = track(ebpf.open_link(path))
    assert.are.same(bpftool_link(id) and { id = id, type = "raw_tracepoint" },
      { id = opened:info().id, type = opened:info().type })
    assert.matches(path, tostring(opened), 1, true)
    opened:close() -- only this handle: the pin still holds the link
    assert.is_truthy(bpftool_link(id))
    assert.is_true(os.remove(path))
    assert.is_true(link_gone(id), "link " .. id .. " still attached")
  end)

  it("returns nil, err (EEXIST) for a taken path, and names the path off a bpffs", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local link = track(obj:attach("on_enter"))
    local path = fs.path .. "/taken"
    assert.is_true(link:pin(path))
    local ok, err = link:pin(path)
    assert.is_nil(ok)
    assert.are.equal("EEXIST", err.code)
    assert.are.equal("pin", err.op)
    assert.is_true(os.remove(path))
    ok, err = link:pin("/tmp/luaebpf-not-bpffs-link")
    assert.is_nil(ok)
    mentions(err, { "bpffs" })
  end)

  it("ebpf.open_link refuses a missing pin and a pin that is not a link", function()
    local err = raised(ebpf.open_link, fs.path .. "/nothing")
    assert.are.equal("missing", err.class)
    assert.are.equal("open", err.op)
    local mpath = fs:bpftool_map{ type = "array", key = 4, value = 4, entries = 1 }
    err = raised(ebpf.open_link, mpath)
    assert.are.equal("invalid", err.class)
    mentions(err, { mpath, "not a link" })
    os.remove(mpath)
  end)
end)

describe("Program", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("obj:program gives the program with bpftool's id, name, type and tag", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local prog = track(obj:program("on_enter"))
    local info = prog:info()
    local shown = cjson.decode(H.run("bpftool -j prog show id " .. string.format("%d", info.id)))
    assert.are.equal(int(shown.id), info.id)
    assert.are.equal(shown.name, info.name)
    assert.are.equal("on_enter", info.name)
    assert.are.equal(shown.type, info.type)
    assert.are.equal(shown.tag, info.tag)
    assert.are.equal(H.prog_id(prog:fd()), info.id)
    local want = {}
    for i, id in ipairs(shown.map_ids) do want[i] = int(id) end
    assert.are.same(want, info.map_ids)
    assert.are.same({ track(obj:map("counts")):info().id }, info.map_ids)
    assert.matches("on_enter", tostring(prog))
    -- the fields ebpf.progs() gives, with bpftool's values
    assert.are.equal(int(shown.bytes_xlated), info.bytes_xlated)
    assert.are.equal(int(shown.bytes_jited or 0), info.bytes_jited)
    assert.are.equal(int(shown.uid), info.uid)
    assert.are.equal(int(shown.bytes_memlock), info.memlock)
    assert.are.equal(shown.gpl_compatible, info.gpl_compatible)
    local listed
    for p in ebpf.progs() do if p.id == info.id then listed = p end end
    listed.run_time_ns, listed.run_cnt = info.run_time_ns, info.run_cnt -- counted as it runs
    assert.are.same(listed, info)
  end)

  it("pins a program that outlives its object and opens it from the pin", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local prog = track(obj:program("on_enter"))
    local id = prog:info().id
    local path = fs.path .. "/prog"
    assert.is_true(prog:pin(path))
    local shown = cjson.decode(H.run("bpftool -j prog show pinned " .. path))
    assert.are.equal(id, int(shown.id))
    prog:close()
    obj:close()
    local opened = track(ebpf.open_program(path))
    assert.are.equal(id, opened:info().id)
    assert.are.equal("on_enter", opened:info().name)
    opened:close()
    assert.is_false(H.prog_gone(id, 0.3)) -- the pin keeps it loaded
    assert.is_true(os.remove(path))
    assert.is_true(H.prog_gone(id), "program " .. id .. " still loaded")
  end)

  it("raises for an unknown program, listing the object's programs", function()
    local obj = track(ebpf.load("bpf/hist.bpf.o"))
    local err = raised(obj.program, obj, "on_entry")
    assert.are.equal("missing", err.class)
    mentions(err, { "'on_entry'", "on_enter", "on_exit" })
  end)

  it("ebpf.open refuses a pinned link or program: not a map", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local link = track(obj:attach("on_enter"))
    local lpath, ppath = fs.path .. "/alink", fs.path .. "/aprog"
    assert.is_true(link:pin(lpath))
    assert.is_true(obj:program("on_enter"):pin(ppath))
    collectgarbage()
    collectgarbage()
    local fds = H.fd_count_min()
    for _, path in ipairs{ lpath, ppath } do
      -- a link refuses "r" and "w" itself (EINVAL); a program opens, and is not a map
      for _, access in ipairs{ "r", "w", "rw" } do
        local err = raised(ebpf.open, path, { access = access })
        assert.are.equal("invalid", err.class)
        mentions(err, { path, "not a map (a program or a link?)" })
      end
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(fds, H.fd_count_min()) -- the fd opened to look is closed
    assert.is_true(os.remove(lpath))
    assert.is_true(os.remove(ppath))
  end)

  it("ebpf.open_program refuses a pin that is not a program", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local link = track(obj:attach("on_enter"))
    local path = fs.path .. "/alink"
    assert.is_true(link:pin(path))
    local err = raised(ebpf.open_program, path)
    assert.are.equal("invalid", err.class)
    mentions(err, { "not a program" })
    assert.is_true(os.remove(path))
    assert.are.equal("missing", raised(ebpf.open_program, path).class)
  end)

  it("raises class \"closed\" after close, which can be repeated", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local prog = obj:program("on_enter")
    prog:close()
    prog:close()
    assert.matches("closed", tostring(prog))
    for _, m in ipairs({ "info", "fd", "pin" }) do
      assert.are.equal("closed", raised(prog[m], prog, "/x").class, m)
    end
  end)
end)

-- spec/execsnoop_spec.lua: examples/execsnoop.lua against known processes.
-- The example runs in a child process of this Lua (as `make test` builds it)
-- while the spec starts programs of unique names (copies of /bin/true in a
-- fresh directory), some as root and some as nobody, one after the other;
-- each must appear in the output exactly once, with the pid, parent pid, uid
-- and path the launching shell saw. Other processes of the machine exec too:
-- only lines naming these files count. Needs root; 5.1 syntax.
local H = require "spec.helpers"

local NOBODY = 65534

-- the example's output lines that name `path` as FILENAME, parsed
local function lines_of(out, path)
  local found = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(-#path - 1) == " " .. path then
      local time, pid, ppid, uid, comm = line:match("^(%S+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%S+)%s")
      found[#found + 1] = { time = time, pid = tonumber(pid), ppid = tonumber(ppid),
        uid = tonumber(uid), comm = comm, line = line }
    end
  end
  return found
end

-- waits up to `seconds` for fn() to be true
local function wait_for(fn, seconds)
  for _ = 1, seconds * 10 do
    if fn() then return true end
    H.run("sleep 0.1")
  end
  return fn()
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- starts the example in the background with `args`; returns the pid of the
-- subshell that runs it and writes its exit status to dir/rc (through a
-- rename: a file that exists holds the status, never an empty one)
local function start(dir, args)
  local cmd = string.format("(%s examples/execsnoop.lua %s >%s/out 2>%s/err </dev/null; "
    .. "echo $? >%s/rc.tmp && mv %s/rc.tmp %s/rc) >/dev/null 2>&1 & echo $!",
    H.lua_bin(), args, dir, dir, dir, dir, dir)
  local pid = tonumber(H.run(cmd):match("%d+"))
  local ready = wait_for(function()
    return (exists(dir .. "/out") and H.read_file(dir .. "/out"):find("FILENAME", 1, true) ~= nil)
      or exists(dir .. "/rc")
  end, 15)
  assert(ready and not exists(dir .. "/rc"), "execsnoop did not start: "
    .. (exists(dir .. "/err") and H.read_file(dir .. "/err") or ""))
  return pid
end

describe("examples/execsnoop.lua", function()
  local dir

  before_each(function()
    dir = H.tmpdir("lxexec")
    H.run("chmod 755 " .. dir) -- nobody runs some of the programs
  end)
  after_each(function()
    H.run("rm -rf " .. dir)
  end)

  it("prints every process started while it runs exactly once, with its pid, ppid, uid and file",
    function()
      -- distinct names, the directory's random part in each: no other process has them
      local tag = dir:match("lxexec(%w+)$")
      local launches = {}
      local script = { "set -e" }
      for i = 1, 8 do
        local name = "lx" .. tag .. "_" .. i
        local path = dir .. "/" .. name
        H.run("cp /bin/true " .. path)
        local uid = i % 3 == 0 and NOBODY or 0
        local prefix = uid == NOBODY
          and string.format("setpriv --reuid=%d --regid=%d --clear-groups ", NOBODY, NOBODY) or ""
        -- $! is the child that execs `path` (setpriv execs it in place): its pid is kept
        script[#script + 1] = string.format('%s%s & echo "%s $! $$ %d"; wait $!', prefix, path, path, uid)
        launches[i] = { path = path, name = name }
      end
      H.write_file(dir .. "/launch.sh", table.concat(script, "\n") .. "\n")

      start(dir, "4")
      local seen = {}
      for line in H.run("sh " .. dir .. "/launch.sh"):gmatch("[^\n]+") do
        local path, pid, ppid, uid = line:match("^(%S+) (%d+) (%d+) (%d+)$")
        if path then
          seen[path] = { pid = tonumber(pid), ppid = tonumber(ppid), uid = tonumber(uid) }
        end
      end
      assert.is_true(wait_for(function() return exists(dir .. "/rc") end, 15),
        "execsnoop did not end after its 4 s")
      assert.are.equal("0", H.read_file(dir .. "/rc"):match("%d+"))
      local out = H.read_file(dir .. "/out")
      assert.truthy(out:match("^TIME%s+PID%s+PPID%s+UID%s+COMM%s+FILENAME\n"), out:sub(1, 200))
      assert.truthy(H.read_file(dir .. "/err"):match("^%d+ execs, 0 lost %(ring full%)\n$"))

      for _, l in ipairs(launches) do
        local want = assert(seen[l.path], "the launcher did not report " .. l.path)
        local got = lines_of(out, l.path)
        assert.are.equal(1, #got, l.path .. " appears " .. #got .. " times in:\n" .. out)
        assert.are.same({ pid = want.pid, ppid = want.ppid, uid = want.uid, comm = l.name },
          { pid = got[1].pid, ppid = got[1].ppid, uid = got[1].uid, comm = got[1].comm })
      end
    end)

  it("ends on SIGINT without a duration, detaches, and exits 0", function()
    local shell = start(dir, "")
    -- the interpreter is the subshell's child
    -- (from /proc, not pgrep: under make test-asan the children inherit LD_PRELOAD
    -- of ASan's runtime, and procps' pgrep deadlocks in it)
    local pid = tonumber(H.read_file("/proc/" .. shell .. "/task/" .. shell .. "/children")
      :match("%d+"))
    -- its program, by the prog_id its fds show (the machine may run others of that name)
    local prog = tonumber(H.run("cat /proc/" .. pid .. "/fdinfo/* 2>/dev/null | sed -n 's/^prog_id:\\s*//p' | head -1")
      :match("%d+"))
    assert.is_number(prog)
    H.run("kill -INT " .. pid)
    assert.is_true(wait_for(function() return exists(dir .. "/rc") end, 10), "SIGINT did not end it")
    assert.are.equal("0", H.read_file(dir .. "/rc"):match("%d+"))
    assert.truthy(H.read_file(dir .. "/err"):match("^%d+ execs, %d+ lost %(ring full%)\n$"),
      H.read_file(dir .. "/err"))
    -- its program is gone with its link
    assert.is_true(H.prog_gone(prog), "program " .. prog .. " is still loaded")
  end)
end)

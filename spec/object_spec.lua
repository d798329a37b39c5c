-- spec/object_spec.lua: BPF objects, programs and links. ebpf.load of
-- bpf/syscount.bpf.o (per-process syscall counts on the sys_enter raw
-- tracepoint) and bpf/hist.bpf.o (a log2 latency histogram in a per-CPU
-- array): programs, maps, attaching and detaching (close and GC) seen in the
-- counts and in bpftool's `link show`, maps that outlive their object,
-- pinning, and the errors of bad objects, spec/fixtures/unsafe.bpf.o among
-- them (the verifier's reason, libbpf's log). bpftool and /proc are the
-- oracles. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local SYSCOUNT, HIST, UNSAFE = "bpf/syscount.bpf.o", "bpf/hist.bpf.o", "spec/fixtures/unsafe.bpf.o"

-- this process: the parent of the shell that H.run starts
local PID = tonumber((H.run("echo $PPID"):gsub("%s", "")))

-- ------------------------------------------------------------ local helpers

local int = H.int

local syscalls, pause = H.syscalls, H.pause

--- the syscall count of this process in a syscount `counts` map (all comms)
local function mine(m)
  local n = 0
  for k, v in m:pairs() do
    if k.pid == PID then n = n + v end
  end
  return n
end

local prog_id = H.prog_id

local links_of = H.links_of

local map_exists = H.map_exists

local mentions = H.mentions

local raised = H.raised

-- every handle a test makes goes through track(); after_each closes them all
local track, close_tracked = H.tracker()

-- --------------------------------------------------------------- the specs

describe("ebpf.load", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("lists the object's programs with name, section, type and a program fd", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local progs = obj:programs()
    assert.are.equal(1, #progs)
    local p = progs[1]
    assert.are.equal("on_enter", p.name)
    assert.are.equal("raw_tracepoint/sys_enter", p.section)
    assert.are.equal("raw_tracepoint", p.type)
    assert.is_true(p.fd > 2)
    local shown = cjson.decode(H.run("bpftool -j prog show id " .. string.format("%d", prog_id(p.fd))))
    assert.are.equal("on_enter", shown.name)
    assert.are.equal("raw_tracepoint", shown.type)
    local hist = track(ebpf.load(HIST))
    local names = {}
    for _, q in ipairs(hist:programs()) do names[#names + 1] = q.name .. " " .. q.section end
    table.sort(names)
    assert.are.same({ "on_enter raw_tracepoint/sys_enter", "on_exit raw_tracepoint/sys_exit" }, names)
  end)

  it("gives obj:map(name) as a read-write Map typed by the map's BTF", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    assert.are.equal(ebpf.Map.lookup, m.lookup)
    assert.matches("^luaebpf%.Map: hash 'counts' %(id %d+, ", tostring(m))
    local info = m:info()
    local shown = cjson.decode(H.run("bpftool -j map show id " .. string.format("%d", info.id)))
    assert.are.equal("counts", shown.name)
    assert.are.equal("hash", info.type)
    assert.are.equal(20, info.key_size)
    assert.are.equal(8, info.value_size)
    assert.are.equal(10240, info.max_entries)
    assert.are.equal("rw", info.access)
    assert.is_true(info.btf_id > 0)
    assert.are.equal(int(shown.btf_id), info.btf_id)
    assert.is_true(m:update({ pid = 1, comm = "spec" }, 41))
    assert.are.equal(41, m:lookup({ pid = 1, comm = "spec" }))
    info = m:info()
    assert.are.equal("struct proc_key", info.key_type)
    assert.are.equal("__u64", info.value_type)
    local l = m:layout().key
    assert.are.same({ "pid", 0, 4 }, { l.fields[1].name, l.fields[1].offset, l.fields[1].size })
    assert.are.same({ "comm", 4, 16, "char" },
      { l.fields[2].name, l.fields[2].offset, l.fields[2].size, l.fields[2].kind })
  end)

  it("walks every map of the object with obj:maps()", function()
    local obj = track(ebpf.load(HIST))
    local seen = {}
    for name, m in obj:maps() do
      track(m)
      seen[#seen + 1] = name .. " " .. m:info().type
      assert.are.equal(name, m:info().name)
    end
    table.sort(seen)
    assert.are.same({ "latency percpu_array", "start hash" }, seen)
  end)

  it("counts this process's syscalls once on_enter is attached, growing between reads", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    assert.are.equal(0, mine(m))
    local link = track(obj:attach("on_enter"))
    assert.is_true(link:attached())
    assert.matches("on_enter", tostring(link))
    syscalls(50)
    local c1 = mine(m)
    assert.is_true(c1 >= 100, "count after 50 open/close: " .. c1)
    syscalls(50)
    local c2 = mine(m)
    assert.is_true(c2 >= c1 + 100, string.format("%d then %d", c1, c2))
    local comm
    for k in m:keys() do if k.pid == PID then comm = k.comm end end
    local f = assert(io.open("/proc/" .. PID .. "/comm"))
    assert.are.equal(f:read("*l"), comm)
    f:close()
  end)

  it("stops counting after link:close(), which detaches and can be repeated", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local id = prog_id(obj:programs()[1].fd)
    local link = track(obj:attach("on_enter"))
    assert.are.equal(1, (links_of(id)))
    syscalls(20)
    assert.is_true(mine(m) > 0)
    link:close()
    assert.is_false(link:attached())
    assert.matches("detached", tostring(link))
    link:close()
    assert.are.equal(0, (links_of(id)))
    pause()                       -- events in flight when it closed land here
    local c1 = mine(m)
    syscalls(50)
    pause()
    assert.are.equal(c1, mine(m)) -- nothing since
  end)

  it("detaches a link the garbage collector collects", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local id = prog_id(obj:programs()[1].fd)
    local link = obj:attach("on_enter")
    syscalls(20)
    assert.is_true(mine(m) > 0)
    assert.are.equal(1, (links_of(id)))
    link = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, (links_of(id)))
    pause()
    local c1 = mine(m)
    syscalls(50)
    pause()
    assert.are.equal(c1, mine(m))
  end)

  it("refuses to attach a program that is still attached: class \"invalid\", EEXIST", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local id = prog_id(obj:programs()[1].fd)
    local link = track(obj:attach("on_enter"))
    local err = raised(obj.attach, obj, "on_enter")
    assert.are.equal("table", type(err))
    assert.are.equal("invalid", err.class)
    assert.are.equal("EEXIST", err.code)
    assert.are.equal("attach", err.op)
    assert.are.equal("on_enter", err.program)
    assert.are.equal(1, (links_of(id))) -- still the one attachment
    assert.is_true(link:attached())
    link:close()
    local again = track(obj:attach("on_enter")) -- once closed, it attaches again
    assert.is_true(again:attached())
    assert.are.equal(1, (links_of(id)))
  end)

  it("attaches every program with attach_all and fills hist's per-CPU latency array", function()
    local obj = track(ebpf.load(HIST))
    local latency = track(obj:map("latency"))
    local links = obj:attach_all()
    local names = {}
    for name, link in pairs(links) do
      track(link)
      names[#names + 1] = name
      assert.is_true(link:attached(), name)
    end
    table.sort(names)
    assert.are.same({ "on_enter", "on_exit" }, names)
    local tps = {}
    for _, p in ipairs(obj:programs()) do
      local n, tp = links_of(prog_id(p.fd))
      assert.are.equal(1, n, p.name)
      tps[#tps + 1] = tp[1]
    end
    table.sort(tps)
    assert.are.same({ "sys_enter", "sys_exit" }, tps)
    syscalls(200)
    for _, link in pairs(links) do link:close() end
    pause()
    local total, path = 0, fs.path .. "/latency"
    assert.is_true(latency:pin(path))
    local dumped = H.dump(path)
    for i = 0, 31 do
      local per_cpu = latency:lookup(i)
      assert.are.equal(ebpf.ncpus(), #per_cpu)
      local slot = ebpf.sum(per_cpu)
      local want = 0
      for _, b in ipairs(dumped[H.le(i, 4)]) do
        local v = 0
        for j = 8, 1, -1 do v = v * 256 + b:byte(j) end
        want = want + v
      end
      assert.are.equal(want, slot, "slot " .. i)
      total = total + slot
    end
    os.remove(path)
    assert.is_true(total >= 200, "latency samples: " .. total)
  end)

  it("keeps maps taken from an object working after obj:close()", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local id = m:info().id
    local link = track(obj:attach("on_enter"))
    syscalls(20)
    link:close()
    obj:close()
    assert.is_true(mine(m) > 0)
    assert.is_true(m:update({ pid = 2, comm = "after" }, 7))
    assert.are.equal(7, m:lookup({ pid = 2, comm = "after" }))
    local shown = cjson.decode(H.run("bpftool -j map dump id " .. string.format("%d", id)))
    local found = false
    for _, e in ipairs(shown) do
      if e.formatted.key.pid == 2 and e.formatted.key.comm == "after" then found = e.formatted.value == 7 end
    end
    assert.is_true(found)
    m:close()
    -- the last fd is gone: the kernel frees the map once the program's RCU
    -- grace period has dropped the program's reference to it
    local gone = false
    for _ = 1, 50 do
      gone = not map_exists(id)
      if gone then break end
      H.run("sleep 0.1")
    end
    assert.is_true(gone, "map id " .. id .. " still exists")
  end)

  it("keeps a link attached after obj:close() until the link is closed", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local id = prog_id(obj:programs()[1].fd)
    local link = track(obj:attach("on_enter"))
    obj:close()
    assert.is_true(link:attached())
    assert.are.equal(1, (links_of(id)))
    local c1 = mine(m)
    syscalls(50)
    assert.is_true(mine(m) >= c1 + 100)
    link:close()
    assert.are.equal(0, (links_of(id)))
  end)

  it("closes an object repeatedly and raises class \"closed\" on any use after", function()
    local obj = track(ebpf.load(SYSCOUNT))
    obj:close()
    obj:close()
    assert.matches("closed", tostring(obj))
    local uses = {
      map = function() return obj:map("counts") end,
      maps = function() return obj:maps() end,
      programs = function() return obj:programs() end,
      attach = function() return obj:attach("on_enter") end,
      attach_all = function() return obj:attach_all() end,
    }
    for op, use in pairs(uses) do
      local err = raised(use)
      assert.are.equal("table", type(err), op)
      assert.are.equal("closed", err.class, op)
    end
  end)

  it("raises class \"missing\" naming the object for a missing file", function()
    -- a fresh name off the bpffs (which answers EPERM for any name with a dot)
    local path = os.tmpname()
    os.remove(path)
    local err = raised(ebpf.load, path)
    assert.are.equal("table", type(err))
    assert.are.equal("missing", err.class)
    assert.are.equal("ENOENT", err.code)
    assert.are.equal("load", err.op)
    assert.are.equal(path, err.object)
    mentions(err, { path })
  end)

  it("raises LIBBPF_FORMAT for a file that is not an ELF object", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("not an ELF object\n")
    f:close()
    local ok, err = pcall(ebpf.load, path)
    os.remove(path)
    assert.is_false(ok)
    assert.are.equal("table", type(err))
    assert.are.equal("LIBBPF_FORMAT", err.code)
    assert.are.equal(path, err.object)
    mentions(err, { path, "ELF" })
  end)

  it("raises class \"missing\" for an unknown map name, listing the object's maps", function()
    local obj = track(ebpf.load(HIST))
    local err = raised(obj.map, obj, "lat")
    assert.are.equal("table", type(err))
    assert.are.equal("missing", err.class)
    mentions(err, { "'lat'", "start", "latency" })
  end)

  it("raises class \"missing\" for an unknown program name, listing the object's programs", function()
    local obj = track(ebpf.load(HIST))
    local err = raised(obj.attach, obj, "on_entry")
    assert.are.equal("table", type(err))
    assert.are.equal("missing", err.class)
    assert.are.equal("on_entry", err.program)
    mentions(err, { "'on_entry'", "on_enter", "on_exit" })
  end)

  it("raises class \"invalid\" with the verifier's reason for a program it refuses", function()
    local err = raised(ebpf.load, UNSAFE)
    assert.are.equal("table", type(err))
    assert.are.equal("invalid", err.class)
    assert.are.equal("EACCES", err.code)
    assert.are.equal("load", err.op)
    assert.are.equal(UNSAFE, err.object)
    assert.is_string(err.detail)
    mentions(err.detail, { "map_value_or_null" })
    mentions(err, { "verifier", "map_value_or_null" })
    assert.is_nil(tostring(err):find("\n", 1, true)) -- one line
  end)

  it("hands libbpf's log of a failed load to opts.log, line by line", function()
    local lines = {}
    local ok = pcall(ebpf.load, UNSAFE, { log = function(line) lines[#lines + 1] = line end })
    assert.is_false(ok)
    assert.is_true(#lines > 3)
    local all = table.concat(lines, "\n")
    mentions(all, { "unchecked", "map_value_or_null", "failed to load" })
    for _, l in ipairs(lines) do assert.is_nil(l:find("\n", 1, true)) end
  end)

  it("keeps libbpf's log off stderr", function()
    local code = string.format([[
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local ebpf = require "luaebpf"
assert(not pcall(ebpf.load, %q))
assert(not pcall(ebpf.load, "/nonexistent/x.bpf.o"))
local obj = ebpf.load(%q)
obj:close()
]], UNSAFE, SYSCOUNT)
    assert.is_nil(code:find("'", 1, true))
    local out = H.run("lua5.4 -e '" .. code .. "' 2>&1 >/dev/null")
    assert.are.equal("", out)
  end)

  it("refuses a log option that is not a function, naming it", function()
    mentions(raised(ebpf.load, SYSCOUNT, { log = "yes" }), { "log", "function", "string" })
    mentions(raised(ebpf.load, SYSCOUNT, { logger = print }), { "logger" })
  end)
end)

describe("Map:pin", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)
  after_each(close_tracked)

  it("pins an object's map where ebpf.open reads the same entries", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local entries = { { 1, "one", 10 }, { 2, "two", 20 }, { 4294967295, "max", 1099511627776 } }
    for _, e in ipairs(entries) do assert.is_true(m:update({ pid = e[1], comm = e[2] }, e[3])) end
    local path = fs.path .. "/counts"
    assert.is_true(m:pin(path))
    local shown = cjson.decode(H.run("bpftool -j map show pinned " .. path))
    assert.are.equal(m:info().id, int(shown.id))
    local p = track(ebpf.open(path))
    assert.are.equal(m:info().id, p:info().id)
    local got, n = {}, 0
    for k, v in p:pairs() do
      got[k.pid .. " " .. k.comm] = v
      n = n + 1
    end
    assert.are.equal(#entries, n)
    for _, e in ipairs(entries) do
      assert.are.equal(e[3], got[string.format("%d", e[1]) .. " " .. e[2]])
      assert.are.equal(e[3], p:lookup({ pid = e[1], comm = e[2] }))
    end
    assert.is_true(m:update({ pid = 5, comm = "late" }, 5)) -- one map, two handles
    assert.are.equal(5, p:lookup({ pid = 5, comm = "late" }))
    assert.is_true(os.remove(path))
  end)

  it("returns nil, err (EEXIST) when the path exists already", function()
    local obj = track(ebpf.load(SYSCOUNT))
    local m = track(obj:map("counts"))
    local path = fs.path .. "/taken"
    assert.is_true(m:pin(path))
    local ok, err = m:pin(path)
    assert.is_nil(ok)
    assert.are.equal("table", type(err))
    assert.are.equal("EEXIST", err.code)
    assert.are.equal("pin", err.op)
    assert.are.equal("invalid", err.class)
    assert.is_true(os.remove(path))
  end)
end)

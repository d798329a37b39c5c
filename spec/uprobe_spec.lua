-- spec/uprobe_spec.lua: obj:attach(name, { binary =, func = | offset =,
-- pid =, retprobe = }) with bpf/uprobe.bpf.o (on_call counts the calls of
-- the probed function and sums its argument; on_return counts returns and
-- sums the results) on spec/fixtures/uprobe_target, which calls
-- luaebpf_probed(i) = 2 * i for i = 1..N once told to. Oracles: the target's
-- own printed sum, N itself, nm and readelf for the function's file offset,
-- bpftool's link show. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local UPROBE = "bpf/uprobe.bpf.o"
local TARGET = H.run("pwd"):gsub("%s+$", "") .. "/spec/fixtures/uprobe_target"
local FUNC = "luaebpf_probed"
local mentions, raised, int = H.mentions, H.raised, H.int
local track, close_tracked = H.tracker()

--- starts the target for n calls; it waits for go(), which lets it run and
-- returns the sum it printed (of 2 * i). t.pid: its pid
local function start_target(n)
  local out = os.tmpname()
  local pipe = assert(io.popen("exec " .. TARGET .. " " .. n .. " >" .. out, "w"))
  local t = {}
  for _ = 1, 200 do
    t.pid = tonumber((H.read_file(out):match("^(%d+)\n")))
    if t.pid then break end
    H.run("sleep 0.01")
  end
  assert(t.pid, "the target did not start")
  function t.go()
    pipe:write("\n")
    pipe:close() -- waits for it to exit
    local sum = tonumber(H.read_file(out):match("\n(%d+)\n"))
    os.remove(out)
    return sum
  end
  return t
end

--- runs the target for n calls from start to end; the sum it printed
local function run_target(n)
  return start_target(n).go()
end

--- the file offset of a function in an ELF executable: its address (nm)
-- less its section's address plus the section's file offset (readelf)
local function file_offset(path, func)
  local addr = tonumber(H.run("nm " .. path):match("(%x+) T " .. func .. "\n"), 16)
  for vma, off, size in H.run("readelf -SW " .. path):gmatch(
      "%] %.text%s+PROGBITS%s+(%x+) (%x+) (%x+)") do
    vma, off, size = tonumber(vma, 16), tonumber(off, 16), tonumber(size, 16)
    if addr >= vma and addr < vma + size then return addr - vma + off end
  end
  error("no .text holds " .. func)
end

--- what the kernel says of a uprobe link of ours (/proc fdinfo): name (the
-- binary), offset, event_type ("uprobe" or "uretprobe")
local function probe_of(link)
  local text = H.read_file("/proc/" .. H.run("echo $PPID"):gsub("%s", "") .. "/fdinfo/" ..
    string.format("%d", link:fd()))
  return { name = text:match("\nname:%s*(%S+)"), offset = tonumber(text:match("\noffset:%s*0x(%x+)"), 16),
           event_type = text:match("\nevent_type:%s*(%S+)") }
end

local function counters(obj)
  return { calls = obj:global("calls"), arg_sum = obj:global("arg_sum"),
           returns = obj:global("returns"), ret_sum = obj:global("ret_sum") }
end

describe("obj:attach with uprobe options", function()
  after_each(close_tracked)

  it("counts each call of a function found by name, and each return with uretprobe", function()
    local obj = track(ebpf.load(UPROBE))
    local call = track(obj:attach("on_call", { binary = TARGET, func = FUNC }))
    local ret = track(obj:attach("on_return", { binary = TARGET, func = FUNC }))
    local at = file_offset(TARGET, FUNC)
    assert.are.same({ name = TARGET, offset = at, event_type = "uprobe" }, probe_of(call))
    assert.are.same({ name = TARGET, offset = at, event_type = "uretprobe" }, probe_of(ret))
    local n = 25
    local printed = run_target(n)
    assert.are.equal(n * (n + 1), printed) -- the target did what it says
    assert.are.same({ calls = n, arg_sum = n * (n + 1) / 2, returns = n, ret_sum = printed },
      counters(obj))
  end)

  it("attaches at a file offset (nm's address less .text's load address plus its file offset)", function()
    local obj = track(ebpf.load(UPROBE))
    local at = file_offset(TARGET, FUNC)
    local link = track(obj:attach("on_call", { binary = TARGET, offset = at }))
    assert.are.same({ name = TARGET, offset = at, event_type = "uprobe" }, probe_of(link))
    run_target(7)
    assert.are.equal(7, obj:global("calls"))
    assert.are.equal(28, obj:global("arg_sum"))
    local info = link:info()
    assert.are.equal("perf_event", info.type)
    local shown = cjson.decode(H.run("bpftool -j link show id " .. string.format("%d", info.id)))
    assert.are.equal(info.prog_id, int(shown.prog_id))
    assert.are.equal(H.prog_id(obj:programs()[1].fd), info.prog_id)
  end)

  it("counts only the process given as pid", function()
    local obj = track(ebpf.load(UPROBE))
    local t = start_target(5)
    track(obj:attach("on_call", { binary = TARGET, func = FUNC, pid = t.pid }))
    run_target(3) -- another process: not counted
    assert.are.equal(0, obj:global("calls"))
    t.go()
    assert.are.equal(5, obj:global("calls"))
    assert.are.equal(15, obj:global("arg_sum"))
  end)

  it("takes retprobe from the options over the section", function()
    local obj = track(ebpf.load(UPROBE))
    local ret = track(obj:attach("on_return", { binary = TARGET, func = FUNC, retprobe = false }))
    local call = track(obj:attach("on_call", { binary = TARGET, func = FUNC, retprobe = true }))
    assert.are.equal("uprobe", probe_of(ret).event_type)
    assert.are.equal("uretprobe", probe_of(call).event_type)
    run_target(4)
    assert.are.equal(4, obj:global("returns"))
    assert.are.equal(4, obj:global("calls"))
  end)

  it("attaches one program to the same function twice, each link counting", function()
    local obj = track(ebpf.load(UPROBE))
    local a = track(obj:attach("on_call", { binary = TARGET, func = FUNC }))
    track(obj:attach("on_call", { binary = TARGET, func = FUNC }))
    run_target(3)
    assert.are.equal(6, obj:global("calls"))
    a:close()
    run_target(3)
    assert.are.equal(9, obj:global("calls"))
  end)

  it("stops counting when the link closes", function()
    local obj = track(ebpf.load(UPROBE))
    local link = obj:attach("on_call", { binary = TARGET, func = FUNC })
    run_target(2)
    link:close()
    run_target(2)
    assert.are.equal(2, obj:global("calls"))
  end)
end)

describe("obj:attach uprobe errors", function()
  after_each(close_tracked)

  it("raises class \"missing\" for a function the binary does not have, naming it", function()
    local obj = track(ebpf.load(UPROBE))
    local err = raised(obj.attach, obj, "on_call", { binary = TARGET, func = "no_such_func" })
    assert.are.equal("table", type(err))
    assert.are.equal("missing", err.class)
    assert.are.equal("attach", err.op)
    assert.are.equal("on_call", err.program)
    mentions(err, { "no_such_func" })
  end)

  it("raises class \"missing\" for a binary that does not exist", function()
    local obj = track(ebpf.load(UPROBE))
    local err = raised(obj.attach, obj, "on_call", { binary = "/nonexistent/bin", func = FUNC })
    assert.are.equal("missing", err.class)
    mentions(err, { "/nonexistent/bin" })
  end)

  it("refuses options on a program that is not a uprobe", function()
    local obj = track(ebpf.load("bpf/syscount.bpf.o"))
    local _, msg = raised(obj.attach, obj, "on_enter", { binary = TARGET, func = FUNC })
    mentions(msg, { "uprobe", "on_enter", "raw_tracepoint" })
  end)

  it("refuses bad options, naming each", function()
    local obj = track(ebpf.load(UPROBE))
    local cases = {
      { { func = FUNC }, "binary" },
      { { binary = TARGET }, "'func'" },
      { { binary = TARGET, func = 5 }, "func" },
      { { binary = TARGET, offset = -1 }, "offset" },
      { { binary = TARGET, offset = "16" }, "offset" },
      { { binary = TARGET, func = FUNC, pid = "me" }, "pid" },
      { { binary = TARGET, func = FUNC, pid = 1.5 }, "pid" },
      { { binary = TARGET, func = FUNC, retprobe = 1 }, "retprobe" },
      { { binary = TARGET, func = FUNC, function_name = "x" }, "function_name" },
      -- C strings: a NUL would cut the name short, an empty one means nothing
      { { binary = TARGET, func = FUNC .. "\0junk" }, "'func'", "NUL" },
      { { binary = TARGET, func = "" }, "'func'", "empty" },
      { { binary = TARGET .. "\0junk", func = FUNC }, "'binary'", "NUL" },
      { { binary = "", func = FUNC }, "'binary'", "empty" },
    }
    for _, c in ipairs(cases) do
      local _, msg = raised(obj.attach, obj, "on_call", c[1])
      mentions(msg, { c[2], c[3] })
    end
    mentions(select(2, raised(obj.attach, obj, "on_call", "opts")), { "table expected" })
    -- nothing was attached on the way
    run_target(2)
    assert.are.equal(0, obj:global("calls"))
  end)
end)

-- spec/stack_spec.lua: stack traces read as symbolised frames. A copy of
-- spec/fixtures/stackbin (main -> stack_level_one -> stack_level_two ->
-- stack_level_three, which makes getppid in a loop) runs while
-- spec/fixtures/stacks.bpf.o stores its kernel and user stacks at that call
-- in a stack_trace map, and its user stack again in a stack_build_id map.
-- Oracles: /proc/kallsyms for kernel frames; nm, addr2line and readelf on the
-- binary, and the process's /proc/PID/maps read here, for user frames.
-- 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"

local FIXTURE = "spec/fixtures/stacks.bpf.o"
local LEVELS = { "stack_level_three", "stack_level_two", "stack_level_one", "main" }

local raised = H.raised
local tmp, bin, proc, pid, obj, stacks, build_ids, ids
local kid, uid, bid -- the stack ids the program stored

-- --------------------------------------------------------------- oracles

--- an address as 16 lowercase hex digits (compares as the number does)
local function hex16(a)
  if type(a) == "string" then return (a:gsub("^0x", ""):lower()) end
  if a < 0 then return string.format("%016x", a) end -- 5.3+: kernel addresses
  local hi = math.floor(a / 2 ^ 32)
  return string.format("%08x%08x", hi, a - hi * 2 ^ 32)
end

--- low - sym of two hex16 addresses less than 2^32 apart
local function diff(a, s)
  return (tonumber(a:sub(9), 16) - tonumber(s:sub(9), 16)) % 2 ^ 32
end

local kallsyms -- sorted { addr = hex16, name =, module = } of text symbols
local function kallsyms_holding(a)
  if not kallsyms then
    kallsyms = {}
    for line in io.lines("/proc/kallsyms") do
      local addr, t, name, mod = line:match("^(%x+) (%a) (%S+)%s*(%S*)")
      if addr and t:match("[tTwW]") and addr ~= "0000000000000000" then
        kallsyms[#kallsyms + 1] = { addr = addr, name = name, module = mod }
      end
    end
    table.sort(kallsyms, function(x, y) return x.addr < y.addr end)
  end
  local lo, hi = 1, #kallsyms
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if kallsyms[mid].addr <= a then lo = mid + 1 else hi = mid - 1 end
  end
  local s = kallsyms[hi]
  if not s then return nil end
  local names = {}
  for i = hi, 1, -1 do -- every alias at that address
    if kallsyms[i].addr ~= s.addr then break end
    names[kallsyms[i].name] = true
  end
  return s, names
end

--- nm's function symbols of a file: sorted { value =, size =, name = }
local function nm_functions(path)
  local t = {}
  for line in H.run("nm -S " .. path):gmatch("[^\n]+") do
    local v, s, ty, name = line:match("^(%x+) (%x+) (%a) (%S+)$")
    if v and ty:match("[tTwW]") then
      t[#t + 1] = { value = tonumber(v, 16), size = tonumber(s, 16), name = name }
    end
  end
  return t
end

local function nm_holding(syms, vaddr)
  for _, s in ipairs(syms) do
    if vaddr >= s.value and vaddr < s.value + s.size then return s end
  end
end

--- the start of the process's mapping of path at file offset 0 (read here,
-- not through luaebpf's parser)
local function load_base(p, path)
  for line in io.lines("/proc/" .. p .. "/maps") do
    local s, off, file = line:match("^(%x+)%-%x+ %S+ (%x+) %S+ %d+%s+(%S+)$")
    if file == path and tonumber(off, 16) == 0 then return tonumber(s, 16) end
  end
end

local function build_id_of(path)
  return H.run("readelf -n " .. path):match("Build ID: (%x+)")
end

-- ------------------------------------------------------------- fixtures

--- starts a copy of stackbin at path; its pid and syscall number, and its pipe
local function start(path, rounds)
  local p = io.popen("exec env -u LD_PRELOAD " .. path .. " " .. (rounds or ""))
  local line = p:read("*l")
  local a, b = line:match("^(%d+) (%d+)$")
  return tonumber(a), tonumber(b), p
end

local function id_at(slot) return ids:lookup(slot) end

--- points the program at process p's system call nr until it has stored
-- one stack, then back at nothing; the id of the user stack
local function capture(p, nr)
  local config = obj:map("config")
  assert(ids:update(3, 0))
  assert(config:update(0, { pid = p, nr = nr }))
  local link = obj:attach("on_enter")
  for _ = 1, 50 do
    if id_at(3) >= 1 then break end
    H.run("sleep 0.1")
  end
  link:close()
  assert(config:update(0, { pid = 0, nr = 0 }))
  assert(id_at(3) >= 1, "the program saw no system call " .. nr .. " of process " .. p)
  assert(id_at(1) >= 0, "bpf_get_stackid failed: " .. id_at(1))
  return id_at(1)
end

setup(function()
  tmp = H.tmpdir("luaebpf-stack")
  bin = tmp .. "/stackbin"
  H.run("cp spec/fixtures/stackbin " .. bin)
  local nr
  pid, nr, proc = start(bin)
  obj = ebpf.load(FIXTURE)
  local config = obj:map("config")
  config:codec{ key = "u32", value = { { "pid", "u32" }, { "nr", "u32" } } }
  ids = obj:map("ids")
  ids:codec{ key = "u32", value = "i64" }
  assert(config:update(0, { pid = pid, nr = nr }))
  local link = obj:attach("on_enter")
  for _ = 1, 50 do
    if id_at(3) >= 3 then break end
    H.run("sleep 0.1")
  end
  link:close() -- the stacks stay in the maps
  kid, uid, bid = id_at(0), id_at(1), id_at(2)
  assert(id_at(3) >= 3, "the program saw no getppid of the fixture process")
  assert(kid >= 0 and uid >= 0 and bid >= 0, "bpf_get_stackid failed: " .. kid .. " " .. uid .. " " .. bid)
  stacks, build_ids = obj:map("stacks"), obj:map("build_ids")
end)

teardown(function()
  if pid then os.execute("kill " .. pid) end
  if proc then proc:close() end
  if obj then obj:close() end
  if tmp then H.run("rm -rf " .. tmp) end
end)

-- ----------------------------------------------------------------- tests

describe("m:stack on kernel stacks", function()
  it("names every frame as /proc/kallsyms does", function()
    local frames = stacks:stack(kid)
    assert.is_true(#frames >= 3, "a stack of " .. #frames .. " frames")
    local named = 0
    for i, fr in ipairs(frames) do
      assert.is_true(fr.kernel, "frame " .. i)
      local a = hex16(fr.addr)
      local sym, names = kallsyms_holding(a)
      assert(sym, "no kallsyms symbol below " .. a)
      if sym.module == "[bpf]" then
        -- a BPF program (this fixture's own is the first frame): kallsyms
        -- is read once a process, so one loaded after that first read is
        -- unknown, or its address may even fall near a program since gone
        assert.is_string(fr.text)
      elseif fr.name then
        assert(names[fr.name], "frame " .. i .. " " .. a .. ": " .. fr.name .. ", kallsyms says "
          .. sym.name)
        assert.are.equal(diff(a, sym.addr), fr.offset)
        assert.are.equal(string.format("%s+0x%x", fr.name, fr.offset), fr.text)
        named = named + 1
      else
        error("frame " .. i .. " " .. a .. " unnamed (" .. tostring(fr.error) .. "), kallsyms: "
          .. sym.name)
      end
    end
    assert.is_true(named >= #frames - 1)
  end)

  it("names a caller's frame by the byte before its return address, as the kernel's %pB does",
    function()
      -- two kernel functions back to back (kallsyms' order); a return address
      -- exactly at the second's start belongs to a call ending the first
      kallsyms_holding("ffffffffffffffff")
      local prev, nxt
      for i = 2, #kallsyms do
        local a, b = kallsyms[i - 1], kallsyms[i]
        if b.module == "" and a.module == "" and a.addr ~= b.addr and a.name:match("^[%a_][%w_]*$")
           and not a.name:match("^__pfx_") and not b.name:match("^__pfx_")
           and diff(b.addr, a.addr) > 16 and select(2, kallsyms_holding(a.addr))[a.name] then
          local _, names = kallsyms_holding(b.addr)
          if names[b.name] then prev, nxt = a, b; break end
        end
      end
      assert(prev, "no two plain neighbouring functions in kallsyms")
      local addr = jit and ("0x" .. nxt.addr) or math.tointeger(tonumber(nxt.addr:sub(1, 8), 16) * 2 ^ 32 - 2 ^ 64
        + tonumber(nxt.addr:sub(9), 16))
      local core = require "luaebpf.core"
      local real = core.stack_read
      core.stack_read = function() return { addr, addr } end
      local ok, frames = pcall(stacks.stack, stacks, kid)
      core.stack_read = real
      assert(ok, frames)
      local _, inner = kallsyms_holding(nxt.addr)
      assert(inner[frames[1].name], frames[1].text) -- the innermost frame: where it is
      assert.are.equal(0, frames[1].offset)
      local _, outer = kallsyms_holding(prev.addr)
      assert(outer[frames[2].name], frames[2].text .. ", expected " .. prev.name)
      assert.are.equal(diff(nxt.addr, prev.addr), frames[2].offset)
      assert.are.equal(hex16(addr), hex16(frames[2].addr))
    end)

  it("gives the same frames through ebpf.symbolize", function()
    local frames = stacks:stack(kid)
    local addrs = {}
    for i, fr in ipairs(frames) do addrs[i] = fr.addr end
    local again = ebpf.symbolize(addrs)
    for i, fr in ipairs(frames) do
      assert.are.equal(fr.text, again[i].text)
      assert.is_true(again[i].kernel)
    end
    -- a kernel address as a string, the form LuaJIT needs
    local a = hex16(frames[#frames].addr)
    local s = ebpf.symbolize({ "0x" .. a })
    assert.are.equal(frames[#frames].text, s[1].text)
    -- an address in no symbol (kallsyms' last one lies far below) keeps its hex
    local top = ebpf.symbolize({ "0xFFFFFFFFFFFFFF00" })[1]
    assert.is_true(top.kernel)
    assert.is_nil(top.name)
    H.mentions(top.error, { "no kernel symbol" })
    assert.are.equal("0xffffffffffffff00", top.text)
    -- and in decimal, what int64 = "string" reads (printf converts)
    s = ebpf.symbolize({ (H.run("printf %u 0x" .. a)) })
    assert.is_true(s[1].kernel)
    assert.are.equal(frames[#frames].text, s[1].text)
  end)
end)

describe("m:stack on user stacks", function()
  local function check_user(frames, p, path)
    local syms = nm_functions(path)
    local base = assert(load_base(p, path))
    assert.is_true(#frames >= #LEVELS)
    for i, want in ipairs(LEVELS) do
      local fr = frames[i]
      assert.is_false(fr.kernel)
      local vaddr = fr.addr - base
      local s = assert(nm_holding(syms, vaddr), "nm has no function at " .. vaddr)
      assert.are.equal(want, s.name) -- the fixture's chain, innermost first
      assert.are.equal(s.name, fr.name)
      assert.are.equal(vaddr - s.value, fr.offset)
      assert.are.equal(path, fr.file)
      assert.are.equal(fr.addr - base, fr.file_offset) -- a PIE maps offset 0 at base
      assert.are.equal(string.format("%s+0x%x", fr.name, fr.offset), fr.text)
      local a2l = H.run(string.format("addr2line -f -e %s 0x%x", path, vaddr))
      assert.are.equal(fr.name, a2l:match("^(%S+)"))
    end
  end

  it("names the test binary's functions as nm and addr2line do", function()
    check_user(stacks:stack(uid, { pid = pid }), pid, bin)
  end)

  it("says why when no pid is given, and keeps the address", function()
    local frames = stacks:stack(uid)
    for _, fr in ipairs(frames) do
      assert.is_nil(fr.name)
      H.mentions(fr.error, { "pid" })
      assert.are.equal(string.format("0x%x", fr.addr), fr.text)
    end
  end)

  it("symbolize names the same addresses", function()
    local frames = stacks:stack(uid, { pid = pid })
    local addrs = {}
    for i, fr in ipairs(frames) do addrs[i] = fr.addr end
    local again = ebpf.symbolize(addrs, { pid = pid })
    for i, fr in ipairs(frames) do assert.are.equal(fr.text, again[i].text) end
    -- kernel = true: the same addresses as kernel ones name nothing
    for _, fr in ipairs(ebpf.symbolize(addrs, { kernel = true })) do
      assert.is_true(fr.kernel)
      assert.is_nil(fr.name)
    end
  end)

  it("marks frames of a process that exited, kernel frames still named", function()
    local gone, _, p = start(bin, 1)
    p:close() -- waits for it
    local frames = stacks:stack(uid, { pid = gone })
    for _, fr in ipairs(frames) do
      assert.is_nil(fr.name)
      H.mentions(fr.error, { "process " .. gone })
      assert.is_number(fr.addr)
    end
    assert.is_string(stacks:stack(kid, { pid = gone })[2].name)
  end)

  it("names frames from saved maps after the process exited", function()
    local path = tmp .. "/saved"
    H.run("cp " .. bin .. " " .. path)
    local p2, _, p = start(path)
    local maps = require("luaebpf.stack").maps(p2)
    local base = assert(load_base(p2, path))
    os.execute("kill " .. p2)
    p:close()
    local syms, addrs = nm_functions(path), {}
    for _, s in ipairs(syms) do
      if s.name:match("^stack_level") then addrs[#addrs + 1] = base + s.value + 2 end
    end
    assert.are.equal(3, #addrs)
    local frames = ebpf.symbolize(addrs, { maps = maps })
    for i, fr in ipairs(frames) do
      assert.are.equal(nm_holding(syms, addrs[i] - base).name, fr.name)
      assert.are.equal(2, fr.offset)
    end
    local fr = ebpf.symbolize({ 4096 }, { maps = maps })[1]
    H.mentions(fr.error, { "in no file mapped by the maps given" })
    H.mentions(select(2, raised(ebpf.symbolize, addrs, { maps = "x" })), { "maps", "got string" })
    H.mentions(select(2, raised(require("luaebpf.stack").maps, "1")), { "'maps'", "process id", "got string" })
    local none, why = require("luaebpf.stack").maps(p2) -- exited
    assert.is_nil(none)
    H.mentions(why, { "process " .. p2, "No such file" })
  end)

  it("translates file offsets through the segments of a non-PIE binary", function()
    -- loaded at its link address: nm's values are the running addresses,
    -- while file offsets are 0x400000 lower
    local path = tmp .. "/nopie"
    H.run("cp spec/fixtures/stackbin-nopie " .. path)
    local p2, _, p = start(path)
    local syms, addrs, want = nm_functions(path), {}, {}
    for _, s in ipairs(syms) do
      if s.name:match("^stack_") or s.name == "main" then
        addrs[#addrs + 1] = s.value + 3
        want[#want + 1] = s.name
      end
    end
    local frames = ebpf.symbolize(addrs, { pid = p2 })
    os.execute("kill " .. p2)
    p:close()
    assert.are.equal(7, #addrs) -- main and the six stack_ functions of stackbin.c
    for i, fr in ipairs(frames) do
      assert.are.equal(want[i], fr.name)
      assert.are.equal(3, fr.offset)
      assert.are.equal(path, fr.file)
      assert.is_true(fr.file_offset < fr.addr)
    end
    -- its separate debug file gives the same names for the same file offsets
    local dbg = tmp .. "/nopie.debug"
    H.run("objcopy --only-keep-debug " .. path .. " " .. dbg)
    local offs = {}
    for i, fr in ipairs(frames) do offs[i] = fr.file_offset end
    assert.are.same(ebpf.elf_symbolize(path, offs), ebpf.elf_symbolize(dbg, offs))
    assert.are.same(want, (ebpf.elf_symbolize(dbg, offs)))
  end)

  it("names a caller by its call, not by the bytes after it", function()
    -- stack_tail_caller ends with its call to stack_forever, which never
    -- returns: its return address lies past its end (nm), yet it is the caller
    local path = tmp .. "/noreturn"
    H.run("cp " .. bin .. " " .. path)
    local p2, nr, p = start(path, "-1 noreturn")
    local ok, frames = pcall(function() return stacks:stack(capture(p2, nr), { pid = p2 }) end)
    local base = load_base(p2, path)
    -- symbolize takes addresses as they are (not known to be return addresses)
    local again = ok and ebpf.symbolize({ frames[3].addr }, { pid = p2 })[1]
    os.execute("kill " .. p2)
    p:close()
    assert(ok, frames)
    local syms = nm_functions(path)
    local want = { "stack_level_three", "stack_forever", "stack_tail_caller", "main" }
    local tail
    for i, name in ipairs(want) do
      local fr = frames[i]
      local vaddr = fr.addr - base
      -- the innermost frame is where the process is; the others return addresses
      local s = assert(nm_holding(syms, i == 1 and vaddr or vaddr - 1), "nm: no function at " .. vaddr)
      assert.are.equal(name, s.name)
      assert.are.equal(name, fr.name, "frame " .. i .. ": " .. tostring(fr.error))
      assert.are.equal(vaddr - s.value, fr.offset)
      if name == "stack_tail_caller" then tail = { vaddr = vaddr, s = s } end
    end
    -- the case at hand: the return address is stack_tail_caller's end
    assert.are.equal(tail.s.value + tail.s.size, tail.vaddr)
    assert.are.equal(string.format("stack_tail_caller+0x%x", tail.s.size), frames[3].text)
    assert.are.equal(path, again.file)
    assert.are_not.equal("stack_tail_caller", again.name)
  end)

  it("reads a file as the process sees it, in its own mount namespace", function()
    -- in a mount namespace of its own the process runs stackbin at a path
    -- where this namespace has another ELF file (the nopie build): symbols
    -- must come from the file the process maps, not from ours
    local path, real = tmp .. "/in-ns", tmp .. "/real"
    H.run("cp spec/fixtures/stackbin-nopie " .. path)
    H.run("cp " .. bin .. " " .. real)
    local p = io.popen("exec env -u LD_PRELOAD unshare -m --propagation private sh -c 'mount --bind "
      .. real .. " " .. path .. " && exec " .. path .. "'")
    local p2 = tonumber(p:read("*l"):match("^(%d+)"))
    local base = load_base(p2, path)
    local addrs, want = {}, {}
    for _, s in ipairs(nm_functions(real)) do
      if s.name:match("^stack_level") then
        addrs[#addrs + 1] = base + s.value + 1
        want[#want + 1] = s.name
      end
    end
    local frames = ebpf.symbolize(addrs, { pid = p2 })
    os.execute("kill " .. p2)
    p:close()
    assert.are.equal(3, #want)
    for i, fr in ipairs(frames) do
      assert.are.equal(path, fr.file) -- the path as the process's maps say
      assert.are.equal(want[i], fr.name, tostring(fr.error))
      assert.are.equal(1, fr.offset)
    end
  end)

  it("names frames of a file deleted since it was mapped, while the process lives", function()
    -- what a package upgrade does to a running daemon's libraries: the file
    -- is gone from its path, the process still maps it (the maps say
    -- "(deleted)"); /proc/PID/map_files still opens it
    local path = tmp .. "/deleted"
    H.run("cp " .. bin .. " " .. path)
    local p2, _, p = start(path)
    local base = assert(load_base(p2, path))
    local two
    for _, s in ipairs(nm_functions(path)) do
      if s.name == "stack_level_two" then two = s end
    end
    local id = build_id_of(path)
    os.remove(path)
    local maps = require("luaebpf.stack").maps(p2)
    local fr = ebpf.symbolize({ base + two.value + 1 }, { pid = p2 })[1]
    local bframes = build_ids:stack(bid, { pid = p2, debug_dir = tmp .. "/nothing" })
    os.execute("kill " .. p2)
    p:close()
    assert.are.equal("stack_level_two", fr.name, tostring(fr.error))
    assert.are.equal(1, fr.offset)
    assert.are.equal(path, fr.file)
    assert.are.equal(two.value + 1, fr.file_offset)
    -- the build id of the deleted file is found among the process's files
    -- (the stack is stackbin's, and the deleted copy has its build id)
    assert.are.equal(id, bframes[1].build_id)
    assert.are.equal(path, bframes[1].file)
    assert.are.equal(LEVELS[1], bframes[1].name)
    -- without a live process (saved maps), nothing opens it: marked
    local deleted
    for _, m in ipairs(maps) do if m.path == path then deleted = m.deleted end end
    assert.is_true(deleted)
    fr = ebpf.symbolize({ base + two.value + 1 }, { maps = maps })[1]
    assert.is_nil(fr.name)
    assert.are.equal(path, fr.file)
    H.mentions(fr.error, { path, "deleted" })
    assert.are.equal(string.format("%s+0x%x", path, two.value + 1), fr.text)
  end)
end)

describe("m:stack on frames in a shared library", function()
  --- the C library the fixture process maps (its path in /proc/PID/maps)
  local function libc_of(p)
    for line in io.lines("/proc/" .. p .. "/maps") do
      local file = line:match("%s(/%S*/libc%.so%.%d+)$") or line:match("%s(/%S*/libc%-[%d.]+%.so)$")
      if file then return file end
    end
  end

  --- readelf's PT_LOAD segments: file offset -> the address symbols use
  local function vaddr_of(path, off)
    for line in H.run("readelf -lW " .. path):gmatch("[^\n]+") do
      local o, v, fsz = line:match("^%s*LOAD%s+0x(%x+)%s+0x(%x+)%s+0x%x+%s+0x(%x+)")
      if o then
        o, v, fsz = tonumber(o, 16), tonumber(v, 16), tonumber(fsz, 16)
        if off >= o and off < o + fsz then return off - o + v end
      end
    end
  end

  --- and back: the file offset of vaddr
  local function offset_of(path, vaddr)
    for line in H.run("readelf -lW " .. path):gmatch("[^\n]+") do
      local o, v, fsz = line:match("^%s*LOAD%s+0x(%x+)%s+0x(%x+)%s+0x%x+%s+0x(%x+)")
      if o then
        o, v, fsz = tonumber(o, 16), tonumber(v, 16), tonumber(fsz, 16)
        if vaddr >= v and vaddr < v + fsz then return vaddr - v + o end
      end
    end
  end

  --- nm -D's functions holding vaddr: { name = value }
  local function nm_dynamic_holding(path, vaddr)
    local t = {}
    for line in H.run("nm -D -S " .. path):gmatch("[^\n]+") do
      local v, s, ty, name = line:match("^(%x+) (%x+) (%a) ([^@%s]+)")
      if v and ty:match("[tTwWi]") then
        v, s = tonumber(v, 16), tonumber(s, 16)
        if vaddr >= v and vaddr < v + s then t[name] = v end
      end
    end
    return t
  end

  it("names a frame inside libc as nm -D does", function()
    -- the same process's clock_nanosleep calls (usleep), whose innermost
    -- frame lies in the C library
    local nr = tonumber((H.run("printf '#include <sys/syscall.h>\\nSYS_clock_nanosleep\\n' | cc -E -P -")
      :match("(%d+)%s*$")))
    local frames = stacks:stack(capture(pid, nr), { pid = pid })
    local libc = assert(libc_of(pid))
    local named = 0
    for i, fr in ipairs(frames) do
      if fr.file == libc then
        local vaddr = assert(vaddr_of(libc, fr.file_offset))
        local holding = nm_dynamic_holding(libc, vaddr)
        if next(holding) then
          assert(fr.name and holding[fr.name], "frame " .. i .. ": " .. tostring(fr.name)
            .. " (" .. tostring(fr.error) .. ")")
          assert.are.equal(vaddr - holding[fr.name], fr.offset)
          named = named + 1
        else
          -- an internal function (stripped from .dynsym): unnamed, kept as file+offset
          assert.is_nil(fr.name)
          H.mentions(fr.error, { "in no function of " .. libc })
          assert.are.equal(string.format("%s+0x%x", libc, fr.file_offset), fr.text)
        end
      end
    end
    assert.are.equal(libc, frames[1].file)
    assert.are.equal("clock_nanosleep", frames[1].name)
    assert.is_true(named >= 1)
  end)

  it("names an exported function by the alias without leading underscores", function()
    -- nm -D lists write and __write (and nanosleep, __nanosleep) at one
    -- address; either is right, the plain name is the one a reader knows
    local libc = assert(libc_of(pid))
    local base = assert(load_base(pid, libc))
    local want, addrs = {}, {}
    for line in H.run("nm -D -S " .. libc):gmatch("[^\n]+") do
      local v, ty, name = line:match("^(%x+) %x+ (%a) ([^@%s]+)")
      if v and ty:match("[tTwW]") and (name == "write" or name == "nanosleep") and not want[name] then
        want[name] = true
        addrs[#addrs + 1] = { base + offset_of(libc, tonumber(v, 16)) + 1, name }
      end
    end
    assert.are.equal(2, #addrs)
    for _, a in ipairs(addrs) do
      local fr = ebpf.symbolize({ a[1] }, { pid = pid })[1]
      assert.are.equal(a[2], fr.name)
      assert.are.equal(1, fr.offset)
    end
  end)
end)

describe("m:stack on build-id stacks", function()
  it("finds the binary among the process's files and names the frames", function()
    local plain = stacks:stack(uid, { pid = pid })
    local frames = build_ids:stack(bid, { pid = pid })
    local want_id = build_id_of(bin)
    assert.is_string(want_id)
    for i = 1, #LEVELS do
      local fr = frames[i]
      assert.are.equal(want_id, fr.build_id)
      assert.are.equal(bin, fr.file)
      assert.are.equal(plain[i].file_offset, fr.file_offset)
      assert.are.equal(LEVELS[i], fr.name)
      assert.are.equal(plain[i].offset, fr.offset)
      assert.are.equal(plain[i].text, fr.text)
    end
  end)

  it("finds a separate debug file by build id, without a pid", function()
    local plain = stacks:stack(uid, { pid = pid })
    local id = build_id_of(bin)
    local dir = tmp .. "/debug"
    H.run("mkdir -p " .. dir .. "/.build-id/" .. id:sub(1, 2))
    H.run("objcopy --only-keep-debug " .. bin .. " " .. dir .. "/.build-id/" .. id:sub(1, 2) .. "/"
      .. id:sub(3) .. ".debug")
    local frames = build_ids:stack(bid, { debug_dir = dir })
    for i = 1, #LEVELS do
      assert.are.equal(LEVELS[i], frames[i].name)
      assert.are.equal(plain[i].text, frames[i].text)
    end
  end)

  it("keeps a frame whose offset no file can hold, without raising", function()
    -- the kernel's u64 offset: beyond 2^53 LuaJIT reads it as a "0x..."
    -- string, 5.3+ past 2^63 as a negative integer. No real stack gives one,
    -- so the real raw stack is read and its first offset replaced.
    local core = require "luaebpf.core"
    local real = core.stack_read
    local huge = (jit and "0xfffffffffffff000") or math.mininteger + 0x1000
    core.stack_read = function(...)
      local raw, b = real(...)
      raw[1].offset = huge
      return raw, b
    end
    local ok, frames = pcall(build_ids.stack, build_ids, bid, { pid = pid })
    core.stack_read = real
    assert(ok, frames)
    assert.is_nil(frames[1].name)
    H.mentions(frames[1].error, { "offset" })
    assert.is_truthy(frames[1].text:find("+0x", 1, true), frames[1].text)
    assert.are.equal(LEVELS[2], frames[2].name)
  end)

  it("says the build id and offset when no file has it", function()
    local frames = build_ids:stack(bid, { debug_dir = tmp .. "/nothing" })
    local id = build_id_of(bin)
    local fr = frames[1]
    assert.is_nil(fr.name)
    assert.are.equal(id, fr.build_id)
    H.mentions(fr.error, { id, tmp .. "/nothing/.build-id" })
    assert.are.equal(string.format("%s+0x%x", id, fr.file_offset), fr.text)
  end)
end)

describe("ELF symbols", function()
  it("reads a file again when it is replaced", function()
    local path = tmp .. "/replaced"
    H.run("cp " .. bin .. " " .. path)
    assert.are.equal(build_id_of(path), ebpf.elf_build_id(path))
    local other = H.run("command -v lua5.4 luajit | head -1"):gsub("%s+$", "")
    H.run("sleep 0.01; cp -L " .. other .. " " .. path) -- same inode, new size and mtime
    assert.are.equal(build_id_of(path), ebpf.elf_build_id(path))
    assert.are_not.equal(build_id_of(bin), ebpf.elf_build_id(path))
  end)

  it("names functions that have no size, up to the next symbol, as nm -n orders them", function()
    -- crtstuff's deregister_tm_clones and frame_dummy, _init, _fini: assembly
    -- without .size (readelf shows size 0); nm -n gives the next symbol
    local sizeless, order = {}, {}
    for line in H.run("readelf -sW " .. bin):gmatch("[^\n]+") do
      local v, size, ty, name = line:match("^%s*%d+: (%x+)%s+(%d+) (%S+)%s+%S+%s+%S+%s+%d+ (%S+)$")
      if ty == "FUNC" and size == "0" then sizeless[name] = tonumber(v, 16) end
    end
    for line in H.run("nm -n " .. bin):gmatch("[^\n]+") do
      local v, name = line:match("^(%x+) %a (%S+)$")
      if v then order[#order + 1] = { value = tonumber(v, 16), name = name } end
    end
    local offs, want = {}, {}
    for i, e in ipairs(order) do
      local nxt = order[i + 1]
      -- a sizeless function with room after it before the next symbol
      if sizeless[e.name] and nxt and nxt.value > e.value + 1 and e.name ~= "_fini" then
        offs[#offs + 1] = e.value + 1 -- a PIE: file offsets equal addresses in .text
        want[#want + 1] = e.name
      end
    end
    assert.is_true(#want >= 2, "sizeless functions: " .. #want)
    local names, deltas = ebpf.elf_symbolize(bin, offs)
    assert.are.same(want, names)
    for i = 1, #want do assert.are.equal(1, deltas[i]) end
  end)

  it("says why a file gives no symbols", function()
    local names, why = ebpf.elf_symbolize("/etc/hostname", { 0 })
    assert.is_nil(names)
    H.mentions(why, { "/etc/hostname", "not an ELF file" })
    names, why = ebpf.elf_symbolize(tmp .. "/absent", { 0 })
    assert.is_nil(names)
    H.mentions(why, { tmp .. "/absent", "No such file" })
    local fifo = tmp .. "/fifo"
    H.run("mkfifo " .. fifo)
    names, why = ebpf.elf_symbolize(fifo, { 0 }) -- answers at once: no writer awaited
    assert.is_nil(names)
    H.mentions(why, { fifo, "not a regular file" })
    -- an offset in no segment or function: false, not an error
    names = ebpf.elf_symbolize(bin, { 0, 2 ^ 40 })
    assert.are.same({ false, false }, names)
  end)
end)

describe("ELF parsing of damaged files", function()
  -- no oracle for a damaged file beyond "answers instead of crashing": run
  -- under make test-asan and valgrind, where a bad read fails the run. Every
  -- case gets a file of its own (never reused: a path rewritten with the same
  -- size within one mtime tick looks unchanged to the cache, and a removed
  -- file's inode may come back at once: they are removed at the end).
  local seq = 0
  local function try(bytes)
    seq = seq + 1
    local path = tmp .. "/damaged" .. seq
    H.write_file(path, bytes)
    local names, deltas = ebpf.elf_symbolize(path, { 0, 0x1000, 0x1139, 0x2000, 2 ^ 40 })
    if names then
      assert.are.equal(5, #names)
      for i = 1, 5 do
        assert(names[i] == false or type(names[i]) == "string", "names[" .. i .. "]")
        assert(deltas[i] == false or math.floor(deltas[i]) == deltas[i], "offsets[" .. i .. "]")
      end
    else
      assert.is_string(deltas)
      H.mentions(deltas, { path .. ": " })
    end
    local id, why = ebpf.elf_build_id(path)
    assert(id == false or (type(id) == "string" and id:match("^%x+$"))
      or (id == nil and type(why) == "string"), "elf_build_id: " .. tostring(id) .. " " .. tostring(why))
  end
  after_each(function() H.run("rm -f " .. tmp .. "/damaged*") end)

  -- a small generator of its own (math.random differs between versions)
  local state = 12345
  local function rand(n) -- 0..n-1
    state = (state * 1103515245 + 12345) % 2147483648
    return math.floor(state / 65536) % n
  end
  local function random_bytes(n)
    local t = {}
    for i = 1, n do t[i] = string.char(rand(256)) end
    return table.concat(t)
  end

  it("answers for every truncated copy of a real ELF file, keeping no fd", function()
    -- earlier tests' garbage may hold fds the collector closes meanwhile:
    -- collect it first, and count a leak as more fds at the end, never fewer
    collectgarbage(); collectgarbage()
    local fds = H.fd_count_min()
    local whole = H.read_file(bin)
    -- every length through the headers, then steps through the rest, and
    -- around the section header table at the end
    local lengths = {}
    for n = 0, 1024, 8 do lengths[#lengths + 1] = n end
    for n = 1024, #whole, 97 do lengths[#lengths + 1] = n end
    for n = #whole - 64 * 40, #whole - 1, 13 do lengths[#lengths + 1] = n end
    for _, n in ipairs(lengths) do try(whole:sub(1, n)) end
    -- the whole file, for comparison: named
    local path = tmp .. "/whole"
    H.write_file(path, whole)
    assert.is_table((ebpf.elf_symbolize(path, { 0 })))
    -- and the other ways to fail: absent, a directory, a device
    for _, bad in ipairs({ tmp .. "/absent", tmp, "/dev/null" }) do
      assert.is_nil((ebpf.elf_symbolize(bad, { 0 })))
      assert.is_nil((ebpf.elf_build_id(bad)))
    end
    local after = H.fd_count_min()
    assert.is_true(after <= fds, after .. " fds after, " .. fds .. " before")
  end)

  it("answers for copies with bytes changed in the headers and tables", function()
    local whole = H.read_file(bin)
    local shoff = whole:byte(0x28 + 1) + whole:byte(0x28 + 2) * 256 + whole:byte(0x28 + 3) * 65536
    local regions = { { 0, 64 }, { 64, 64 + 13 * 56 }, { shoff, #whole }, { 0, #whole } }
    for _ = 1, 300 do
      local r = regions[rand(#regions) + 1]
      local b = whole
      for _ = 1, 1 + rand(8) do
        local at = r[1] + rand(r[2] - r[1]) + 1
        local v = ({ 0, 0xff, 0x7f, 0x80, rand(256) })[rand(5) + 1]
        b = b:sub(1, at - 1) .. string.char(v) .. b:sub(at + 1)
      end
      try(b)
    end
  end)

  it("answers for random bytes, with and without an ELF header's start", function()
    for _ = 1, 100 do try(random_bytes(rand(4096))) end
    for _ = 1, 100 do try("\127ELF\2\1\1\0" .. random_bytes(rand(4096))) end
  end)
end)

describe("bad input", function()
  it("answers nil for a stack id the map does not hold (bpftool: not there)", function()
    local held = {}
    for _, e in ipairs(require("cjson").decode(H.run("bpftool -j map dump id " .. stacks:info().id))) do
      held[H.uint(H.from_hex_list(e.key))] = true
    end
    assert.is_true(held[kid] and held[uid])
    local free
    for id = 0, 63 do if not held[id] then free = id; break end end
    assert.is_nil(stacks:stack(free))
    assert.are.equal(1, select("#", stacks:stack(free)))
    assert.is_nil(stacks:stack(4294967295))
  end)

  it("refuses an id that is not a u32", function()
    for _, bad in ipairs({ -1, 4294967296, 1.5, "1" }) do
      local _, msg = raised(stacks.stack, stacks, bad)
      H.mentions(msg, { "stack id", "0..4294967295" })
    end
    local _, msg = raised(stacks.stack, stacks)
    H.mentions(msg, { "bad argument #1 to 'stack'", "stack id", "got nil" })
  end)

  it("refuses a map that is not a stack_trace map", function()
    local err, msg = raised(ids.stack, ids, 0)
    assert.are.equal("invalid", err.class)
    H.mentions(msg, { "stack", "'ids'", "\"stack_trace\" expected", "\"array\"" })
  end)

  it("refuses a closed map", function()
    local m = ebpf.open_id(stacks:info().id)
    m:close()
    local err = raised(m.stack, m, uid)
    assert.are.equal("closed", err.class)
  end)

  it("survives a finalizer that closes the map while m:stack runs", function()
    local out, ok = H.child([[
local m = ebpf.create{ type = "stack_trace", key_size = 4, value_size = 8 * 127, max_entries = 4 }
local closed_at, classes = nil, {}
for round = 1, 5000 do
  if not closed_at then
    garbage(function() if not closed_at then closed_at = round; m:close() end end)
  end
  local ok, v = pcall(m.stack, m, 1)
  if not ok then classes[v.class] = true else assert(v == nil) end
  if closed_at then break end
end
-- the one closing round may still read, on an fd closed by then never
print("done", closed_at ~= nil, classes.closed or false)]])
    assert.is_true(ok, out)
    assert.is_truthy(out:find("done\ttrue", 1, true), out)
  end)

  it("answers nil, err when the kernel refuses the read", function()
    local m = ebpf.open_id(stacks:info().id, { access = "w" })
    local frames, err = m:stack(uid)
    m:close()
    assert.is_nil(frames)
    assert.are.equal("EPERM", err.code)
  end)

  it("refuses bad options and addresses", function()
    H.mentions(select(2, raised(stacks.stack, stacks, uid, { pid = -1 })), { "pid", "got -1" })
    H.mentions(select(2, raised(stacks.stack, stacks, uid, { pid = "1" })), { "pid", "got string" })
    H.mentions(select(2, raised(stacks.stack, stacks, uid, { depth = 3 })), { "unknown option 'depth'" })
    H.mentions(select(2, raised(stacks.stack, stacks, uid, 5)), { "table expected, got number" })
    H.mentions(select(2, raised(ebpf.symbolize, "0x1")), { "table of addresses expected" })
    H.mentions(select(2, raised(ebpf.symbolize, { 1, "zz" })), { "address 2", '"zz"' })
    H.mentions(select(2, raised(ebpf.symbolize, { 1.5 })), { "address 1" })
    H.mentions(select(2, raised(ebpf.symbolize, { 2 ^ 63 })), { "address 1", "beyond 2^53", "string" })
    H.mentions(select(2, raised(ebpf.symbolize, { 1 }, { kernel = 1 })), { "kernel", "boolean" })
    H.mentions(select(2, raised(ebpf.elf_symbolize, bin, { -1 })), { "offset 1" })
    H.mentions(select(2, raised(ebpf.elf_symbolize, "a\0b", {})), { "without NUL" })
  end)
end)

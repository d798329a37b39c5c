-- spec/globals_spec.lua: objects opened without loading and their global
-- variables (obj:global) in .rodata, .data, .bss and a custom .data.stats,
-- with bpf/globals.bpf.o: on each sys_enter of the process in target_pid it
-- adds cfg.step to hits and copies threshold into seen_threshold. Oracles:
-- the ELF file itself (readelf: each symbol's section, offset and size, and
-- the sections' bytes) before load; bpftool's dump of the section maps and
-- the program's own copies after load; /proc/self/maps for the mappings.
-- 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local GLOBALS = "bpf/globals.bpf.o"
local PID = tonumber((H.run("echo $PPID"):gsub("%s", "")))
local mentions, raised, int = H.mentions, H.raised, H.int
local track, close_tracked = H.tracker()

-- ------------------------------------------------------------- the oracles

--- { [name] = { section =, offset =, size = } } for the ELF's data symbols
local function elf_symbols(path)
  local sections = {}
  for idx, name in H.run("readelf -SW " .. path):gmatch("%[%s*(%d+)%]%s+(%S+)") do
    sections[tonumber(idx)] = name
  end
  local syms = {}
  for value, size, ndx, name in
      H.run("readelf -sW " .. path):gmatch("%d+: (%x+)%s+(%d+) OBJECT%s+%S+%s+%S+%s+(%d+) (%S+)") do
    syms[name] = { section = sections[tonumber(ndx)], offset = tonumber(value, 16),
                   size = tonumber(size) }
  end
  return syms
end

--- the bytes of an ELF section (readelf's hex dump)
local function elf_section(path, section)
  local out = H.run("readelf -x " .. section .. " " .. path)
  local bytes = {}
  for line in out:gmatch("[^\n]+") do
    if line:match("^%s*0x%x+ ") then -- "  0x00000000 07000000 00000000 ffff0000 0100     ...."
      local hex = line:match("^%s*0x%x+ (.*)$"):sub(1, 35):gsub("[^%x]", "")
      for h in hex:gmatch("%x%x") do bytes[#bytes + 1] = string.char(tonumber(h, 16)) end
    end
  end
  return table.concat(bytes)
end

--- the bytes of a symbol's initial value in the ELF file
local function elf_value(path, name)
  local s = elf_symbols(path)[name]
  return elf_section(path, s.section):sub(s.offset + 1, s.offset + s.size), s
end

--- signed little-endian integer of a byte string
local function sint(bytes)
  local v = H.uint(bytes)
  if bytes:byte(#bytes) >= 128 then v = v - 2 ^ (8 * #bytes) end
  return int(v)
end

--- bpftool's formatted value of the section map (name suffix, e.g. ".bss")
-- of a loaded object: { [variable] = value }
local function bpftool_section(obj, suffix)
  for name, m in obj:maps() do
    if name:sub(-#suffix) == suffix then
      local id = m:info().id
      m:close()
      local dump = cjson.decode(H.run("bpftool -j map dump id " .. string.format("%d", id)))
      local vars = {}
      for sec, list in pairs(dump[1].formatted.value) do
        assert(sec:sub(-#suffix) == suffix, sec)
        for _, kv in ipairs(list) do
          for k, v in pairs(kv) do vars[k] = v end
        end
      end
      return vars, id
    end
    m:close()
  end
  error("no section map ending in " .. suffix)
end

--- the number of BPF maps mapped into this process (/proc/PID/maps)
local function bpf_mappings()
  local n = 0
  for line in H.read_file("/proc/" .. PID .. "/maps"):gmatch("[^\n]+") do
    if line:find("anon_inode:bpf-map", 1, true) then n = n + 1 end
  end
  return n
end

-- --------------------------------------------------------------- the specs

describe("ebpf.load(path, { load = false })", function()
  after_each(close_tracked)

  it("opens the object without loading it: no program of it is in the kernel", function()
    local function prog_fds() -- this process's fds on BPF programs
      return tonumber((H.run("ls -l /proc/" .. PID .. "/fd | grep -c 'anon_inode:bpf-prog' || true")
        :gsub("%s", "")))
    end
    -- earlier tests' unreferenced objects hold program fds until collected:
    -- collect them now, not in the middle of the counts
    collectgarbage(); collectgarbage()
    local before = prog_fds()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    assert.matches("luaebpf.Object: " .. GLOBALS, tostring(obj), 1, true)
    local progs = obj:programs()
    assert.are.equal(1, #progs)
    assert.are.equal("count_calls", progs[1].name)
    assert.is_nil(progs[1].fd) -- no fd: nothing loaded
    assert.are.equal(before, prog_fds())
    assert.is_true(obj:load() == obj)
    assert.are.equal(before + 1, prog_fds())
    assert.is_true(obj:programs()[1].fd > 2)
    local id = H.prog_id(obj:programs()[1].fd)
    local shown = cjson.decode(H.run("bpftool -j prog show id " .. string.format("%d", id)))
    assert.are.equal("count_calls", shown.name)
  end)

  it("refuses methods that need a loaded object, naming obj:load()", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    local uses = {
      map = function() return obj:map("globals.bss") end,
      maps = function() return obj:maps() end,
      attach = function() return obj:attach("count_calls") end,
      attach_all = function() return obj:attach_all() end,
      program = function() return obj:program("count_calls") end,
    }
    for op, use in pairs(uses) do
      local err = raised(use)
      assert.are.equal("table", type(err), op)
      assert.are.equal("invalid", err.class, op)
      assert.are.equal(op, err.op)
      assert.are.equal(GLOBALS, err.object)
      mentions(err, { "not loaded", "obj:load()" })
    end
    obj:load() -- and then they work
    track(obj:attach("count_calls"))
    track(obj:map("globals.bss"))
  end)

  it("refuses a second obj:load()", function()
    local obj = track(ebpf.load(GLOBALS))
    local err = raised(obj.load, obj)
    assert.are.equal("invalid", err.class)
    mentions(err, { "loaded already" })
  end)

  it("refuses a load option that is not a boolean", function()
    mentions(raised(ebpf.load, GLOBALS, { load = "no" }), { "load", "boolean", "string" })
  end)

  it("hands the log of a load that obj:load() does to the opts.log of ebpf.load", function()
    local lines = {}
    local obj = track(ebpf.load("spec/fixtures/unsafe.bpf.o", { load = false,
      log = function(line) lines[#lines + 1] = line end }))
    local err = raised(obj.load, obj)
    assert.are.equal("invalid", err.class)
    mentions(err, { "verifier", "map_value_or_null" })
    mentions(table.concat(lines, "\n"), { "map_value_or_null" })
    -- the failed load closed it
    assert.are.equal("closed", raised(obj.global, obj, "x").class)
  end)
end)

describe("obj:global before load", function()
  after_each(close_tracked)

  it("reads each variable's initial value as the ELF file holds it", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    for _, name in ipairs({ "threshold", "target_pid", "total", "hits", "seen_threshold" }) do
      local bytes, sym = elf_value(GLOBALS, name)
      if sym.section == ".bss" then bytes = string.rep("\0", sym.size) end
      assert.are.equal(H.uint(bytes), obj:global(name), name)
    end
    local bytes = elf_value(GLOBALS, "offsets")
    assert.are.same({ sint(bytes:sub(1, 2)), sint(bytes:sub(3, 4)), sint(bytes:sub(5, 6)) },
      obj:global("offsets"))
    bytes = elf_value(GLOBALS, "cfg")
    assert.are.same({ step = H.uint(bytes:sub(1, 4)), port = H.uint(bytes:sub(5, 6)),
                      tag = bytes:sub(7, 12):match("^[^%z]*") }, obj:global("cfg"))
  end)

  it("sets values the kernel then runs with: .rodata seen by the program, .data in bpftool's dump", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    assert.is_true(obj:global("threshold", 1234))
    assert.is_true(obj:global("target_pid", PID))
    assert.is_true(obj:global("offsets", { -300, 7, 300 }))
    assert.is_true(obj:global("cfg", { step = 3, port = 8080, tag = "hello" }))
    assert.is_true(obj:global("total", 100))
    assert.are.equal(1234, obj:global("threshold")) -- read back before load too
    obj:load()
    local ro = bpftool_section(obj, ".rodata")
    assert.are.equal(1234, int(ro.threshold))
    assert.are.equal(PID, int(ro.target_pid))
    assert.are.same({ -300, 7, 300 }, { int(ro.offsets[1]), int(ro.offsets[2]), int(ro.offsets[3]) })
    local data = bpftool_section(obj, ".data")
    assert.are.same({ step = 3, port = 8080, tag = "hello" },
      { step = int(data.cfg.step), port = int(data.cfg.port), tag = data.cfg.tag })
    -- the program itself: it copies threshold, and counts in steps of 3 for this pid only
    local link = track(obj:attach("count_calls"))
    H.syscalls(50)
    link:close()
    H.pause()
    local bss = bpftool_section(obj, ".bss")
    assert.are.equal(1234, int(bss.seen_threshold))
    assert.is_true(int(bss.hits) >= 300, "hits " .. tostring(bss.hits))
    assert.are.equal(0, int(bss.hits) % 3)
    assert.are.equal(int(bss.hits), obj:global("hits"))
    assert.are.equal(1234, obj:global("seen_threshold"))
    local stats = bpftool_section(obj, ".data.stats")
    assert.are.equal(100 + int(bss.hits) / 3, int(stats.total))
    assert.are.equal(int(stats.total), obj:global("total"))
  end)

  it("leaves the value as it was when the new one does not fit its type", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    local cases = {
      { "threshold", "x", "u32" }, { "threshold", -1, "-1" }, { "threshold", 2 ^ 32, "u32" },
      { "offsets", { 1, 2 }, "3 elements" }, { "offsets", { 1, 2, 40000 }, "40000" },
      { "cfg", { step = 1, prot = 2 }, "prot" }, { "cfg", { tag = "seven!!" }, "6" },
      { "cfg", 5, "table" },
    }
    for _, c in ipairs(cases) do
      local before = obj:global(c[1])
      local _, msg = raised(obj.global, obj, c[1], c[2])
      mentions(msg, { "global '" .. c[1] .. "'", c[3] })
      assert.are.same(before, obj:global(c[1]))
    end
    local _, msg = raised(obj.global, obj, "threshold", nil) -- an explicit nil is a value too
    mentions(msg, { "threshold", "nil" })
  end)
end)

describe("obj:global after load", function()
  after_each(close_tracked)

  it("reads .bss and .data live and writes them where the program sees it", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    obj:global("target_pid", PID)
    obj:load()
    local link = track(obj:attach("count_calls"))
    H.syscalls(20)
    local h1 = obj:global("hits")
    H.syscalls(20)
    assert.is_true(obj:global("hits") >= h1 + 20) -- live, not a copy from load time
    link:close()
    H.pause()
    assert.is_true(obj:global("hits", 0))
    assert.is_true(obj:global("cfg", { step = 5, port = 443, tag = "after" }))
    local data, bss = bpftool_section(obj, ".data"), bpftool_section(obj, ".bss")
    assert.are.equal(0, int(bss.hits))
    assert.are.same({ 5, 443, "after" }, { int(data.cfg.step), int(data.cfg.port), data.cfg.tag })
    link = track(obj:attach("count_calls"))
    H.syscalls(20)
    link:close()
    H.pause()
    bss = bpftool_section(obj, ".bss")
    assert.is_true(int(bss.hits) >= 200)
    assert.are.equal(0, int(bss.hits) % 5) -- the program used the new step
    assert.are.equal(int(bss.hits), obj:global("hits"))
  end)

  it("sees what another writer (bpftool) put in the map", function()
    local obj = track(ebpf.load(GLOBALS))
    local _, id = bpftool_section(obj, ".data.stats")
    H.bpftool_update("id " .. id, H.le(0, 4), H.le(987654321, 8))
    assert.are.equal(987654321, obj:global("total"))
  end)

  it("reads .rodata after load and refuses to write it: EPERM, frozen", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    obj:global("threshold", 55)
    obj:load()
    assert.are.equal(55, obj:global("threshold"))
    assert.are.same({ -1, 0, 1 }, obj:global("offsets"))
    local err = raised(obj.global, obj, "threshold", 56)
    assert.are.equal("table", type(err))
    assert.are.equal("EPERM", err.code)
    assert.are.equal("global", err.op)
    mentions(err, { "threshold", ".rodata", "frozen", "before obj:load()" })
    assert.are.equal(55, int(bpftool_section(obj, ".rodata").threshold))
  end)

  it("reads and writes a section the kernel cannot map (only static variables) through its fd", function()
    local obj = track(ebpf.load(GLOBALS, { load = false }))
    assert.are.equal(H.uint(elf_value(GLOBALS, "calls_seen")), obj:global("calls_seen"))
    obj:global("target_pid", PID)
    obj:load()
    local _, id = bpftool_section(obj, ".data.priv")
    local shown = cjson.decode(H.run("bpftool -j map show id " .. string.format("%d", id)))
    assert.are.equal(0, int(shown.flags) % 0x800 - int(shown.flags) % 0x400) -- no BPF_F_MMAPABLE
    local base = bpf_mappings()
    local link = track(obj:attach("count_calls"))
    H.syscalls(20)
    link:close()
    H.pause()
    local priv = bpftool_section(obj, ".data.priv")
    assert.is_true(int(priv.calls_seen) >= 11 + 40)
    assert.are.equal(int(priv.calls_seen), obj:global("calls_seen"))
    assert.is_true(obj:global("calls_seen", 3))
    assert.are.equal(3, int(bpftool_section(obj, ".data.priv").calls_seen))
    assert.are.equal(3, obj:global("calls_seen"))
    assert.are.equal(base, bpf_mappings()) -- nothing mapped for it
  end)

  it("maps each section once and unmaps it when the object closes", function()
    local base = bpf_mappings()
    local obj = ebpf.load(GLOBALS)
    obj:global("hits")
    obj:global("seen_threshold")
    obj:global("hits", 1)
    assert.are.equal(base + 1, bpf_mappings())
    obj:global("threshold")
    obj:global("cfg")
    assert.are.equal(base + 3, bpf_mappings())
    obj:close()
    assert.are.equal(base, bpf_mappings())
  end)
end)

describe("obj:global errors", function()
  after_each(close_tracked)

  it("raises class \"missing\" for an unknown name, listing every global", function()
    for _, load in ipairs({ false, true }) do
      local obj = track(ebpf.load(GLOBALS, { load = load }))
      local err = raised(obj.global, obj, "treshold")
      assert.are.equal("table", type(err))
      assert.are.equal("missing", err.class)
      assert.are.equal("treshold", err.global)
      mentions(err, { "'treshold'", "threshold", "target_pid", "offsets", "hits",
                      "seen_threshold", "cfg", "total", "calls_seen" })
      assert.is_nil(tostring(err):find("LICENSE", 1, true)) -- not a global variable
    end
  end)

  it("says an object without globals has none", function()
    local obj = track(ebpf.load("bpf/syscount.bpf.o"))
    local err = raised(obj.global, obj, "x")
    assert.are.equal("missing", err.class)
    mentions(err, { "no global variables" })
  end)

  it("raises class \"closed\" on a closed object", function()
    local obj = ebpf.load(GLOBALS, { load = false })
    obj:close()
    assert.are.equal("closed", raised(obj.global, obj, "threshold").class)
    assert.are.equal("closed", raised(obj.load, obj).class)
  end)

  it("refuses a name that is not a string", function()
    local obj = track(ebpf.load(GLOBALS))
    mentions(select(2, raised(obj.global, obj, {})), { "string expected" })
  end)

  it("survives a finalizer that closes the object while a struct decodes", function()
    local out, ok = H.child(string.format([[
collectgarbage("setpause", 0)
for round = 1, 100 do
  local obj = ebpf.load(%q, { load = round %% 2 == 0 })
  garbage(function() obj:close() end)
  for _ = 1, 10 do
    local ok, v = pcall(obj.global, obj, "cfg")
    if not ok then assert(v.class == "closed", tostring(v)); break end
    assert(v.step == 1 and v.tag == "init")
  end
  obj:close()
end
print("ok")
]], GLOBALS))
    assert.is_true(ok, out)
    assert.matches("ok", out)
  end)
end)

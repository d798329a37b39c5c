-- examples/maps.lua: the main job (make run). Lists every BPF map on the
-- machine, like `bpftool map list` but with each map's current entry count
-- and who holds it (HELD BY: the programs that use it and the processes with
-- an fd on it, the iterator links over it, the maps of maps holding it and
-- its bpffs pins, as prog:ID, COMM[PID], link:ID, outer:ID and pin:PATH; "-"
-- when none does, so only an mmap keeps it alive); or, given one map, dumps
-- it decoded.
--
--   lua5.4 examples/maps.lua                     table of all maps with counts and holders
--   lua5.4 examples/maps.lua TARGET [--key CODEC] [--value CODEC]
--       TARGET: a pinned path, id:N or name:X; CODEC: "u32", "u64", "char[16]",
--       ... or a Lua table spec such as '{{"pid","u32"},{"count","u64"}}'.
--       Without codecs, raw bytes are shown as hex ("01 00 00 00").
--
-- Listing and opening maps by id or name needs CAP_SYS_ADMIN. A kernel error
-- prints its one-line message on stderr and exits 1; bad usage exits 2.
local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local USAGE = [[
usage: maps.lua                                  list every map with its entry count
       maps.lua TARGET [--key CODEC] [--value CODEC]
                                                 dump one map (TARGET: /pinned/path, id:N, name:X)]]

-- one line for any error: error objects print themselves; a Lua error string
-- loses its "file:line:" prefix
local function message(err)
  local s = tostring(err)
  return (s:gsub("^[^%s:]+:%d+: ", ""))
end

local function die(err, code)
  io.stderr:write(message(err), "\n")
  os.exit(code or 1)
end

-- ------------------------------------------------------------ formatting

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x ", c:byte()) end):sub(1, -2))
end

local UNSIGNED64 = { u64 = true, be64 = true }
local NUMERIC = {
  u8 = true, u16 = true, u32 = true, u64 = true, i8 = true, i16 = true, i32 = true,
  i64 = true, be16 = true, be32 = true, be64 = true, f32 = true, f64 = true, bitfield = true,
}

-- the layout of field `name` of a struct layout (anonymous members' fields
-- are the parent's), or nil
local function field_of(l, name)
  if not l or l.kind ~= "struct" then return nil end
  for _, f in ipairs(l.fields or {}) do
    if f.name == name then return f end
    if f.name == nil or f.name == "" then
      local inner = field_of(f, name)
      if inner then return inner end
    end
  end
end

-- a decoded key or value as text, by its layout `l` (m:layout().key or
-- .value; nil when unknown); raw codecs give strings shown as hex
local function show(v, l, raw)
  local t = type(v)
  if t == "string" then
    if raw then return hex(v) end
    if l and NUMERIC[l.kind] then return v end -- a 64-bit value as a decimal string (LuaJIT)
    return string.format("%q", v)
  elseif t == "number" then
    -- 5.3+ hands a u64 from 2^63 up over as a negative integer with the same
    -- bits: a dump shows the unsigned value ("%u" is exact for integers)
    if v < 0 and math.type and math.type(v) == "integer" and l
      and (UNSIGNED64[l.kind] or (l.kind == "bitfield" and l.signed == false and l.bits == 64)) then
      return string.format("%u", v)
    end
    return tostring(v)
  elseif t ~= "table" then
    return tostring(v)
  end
  local n = #v
  local parts = {}
  if n > 0 then -- an array
    local el = l and l.element
    for i = 1, n do parts[i] = show(v[i], el, raw) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local names = {} -- a struct: fields by name (a Lua table keeps no order)
  for k in pairs(v) do names[#names + 1] = k end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(names) do
    parts[i] = tostring(k) .. " = " .. show(v[k], field_of(l, k), raw)
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- rows of cells, columns aligned; `right` marks the columns aligned right
local function print_table(header, rows, right)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      if #cell > widths[i] then widths[i] = #cell end
    end
  end
  local function line(cells)
    local out = {}
    for i, cell in ipairs(cells) do
      local pad = string.rep(" ", widths[i] - #cell)
      out[i] = right[i] and pad .. cell or cell .. pad
    end
    print((table.concat(out, "  "):gsub("%s+$", "")))
  end
  line(header)
  for _, row in ipairs(rows) do line(row) end
end

-- ------------------------------------------------------------ list mode

-- entries in map `id`, or "-" when it cannot be opened or walked
-- (ringbuf, queue, stack, struct_ops, maps freed meanwhile, ...)
local function count_entries(id)
  local ok, m = pcall(ebpf.open_id, id)
  if not ok then return "-" end
  local n = 0
  local walked = pcall(function()
    for _ in m:keys() do n = n + 1 end
  end)
  m:close()
  return walked and tostring(n) or "-"
end

-- "prog:12 lua5.4[4313]x2 link:5 pin:/sys/fs/bpf/counts": the holders of one
-- map, from ebpf.holders()
local function held_by(h)
  if not h then return "-" end
  local parts = {}
  for _, p in ipairs(h.programs) do parts[#parts + 1] = "prog:" .. p.id end
  for _, p in ipairs(h.processes) do
    parts[#parts + 1] = string.format("%s[%d]%s", p.comm, p.pid, p.fds > 1 and "x" .. p.fds or "")
  end
  for _, k in ipairs(h.links) do parts[#parts + 1] = "link:" .. k.id end
  for _, id in ipairs(h.outer) do parts[#parts + 1] = "outer:" .. id end
  for _, path in ipairs(h.pins) do parts[#parts + 1] = "pin:" .. path end
  return #parts > 0 and table.concat(parts, " ") or "-"
end

local function list_maps()
  local infos = {}
  local ok, err = pcall(function()
    for info in ebpf.maps() do infos[#infos + 1] = info end
  end)
  if not ok then die(err) end
  -- one scan of /proc and of the programs for every map
  local hok, holders = pcall(ebpf.holders)
  local hidden, pins_hidden, programs_hidden = 0, 0, false
  if hok then
    for _, h in pairs(holders) do
      hidden, pins_hidden, programs_hidden = h.hidden, h.pins_hidden, h.programs_hidden
      break
    end
  else
    io.stderr:write("holders unknown: ", message(holders), "\n")
  end
  if #infos == 0 then
    print("no BPF maps on this machine")
    return
  end
  local rows = {}
  for i, info in ipairs(infos) do
    rows[i] = {
      tostring(info.id), info.type, info.name ~= "" and info.name or "-",
      tostring(info.key_size), tostring(info.value_size), tostring(info.max_entries),
      count_entries(info.id), hok and held_by(holders[info.id]) or "?",
    }
  end
  print_table({ "ID", "TYPE", "NAME", "KEY", "VALUE", "MAX_ENTRIES", "ENTRIES", "HELD BY" }, rows,
    { true, false, false, true, true, true, true, false })
  print(string.format("%d map%s", #infos, #infos == 1 and "" or "s"))
  if hidden > 0 then
    print(string.format("%d process%s could not be inspected: their holds are not shown", hidden,
      hidden == 1 and "" or "es"))
  end
  if pins_hidden > 0 then
    print(string.format("%d bpffs director%s or pin%s could not be opened: pins there are not shown",
      pins_hidden, pins_hidden == 1 and "y" or "ies", pins_hidden == 1 and "" or "s"))
  end
  if programs_hidden then
    print("listing programs and links was refused (needs CAP_SYS_ADMIN): they are not shown")
  end
end

-- ------------------------------------------------------------ dump mode

-- a codec argument: a name ("u32", "char[16]") or a Lua table constructor
local function parse_codec(s, opt)
  if not s:match("^%s*{") then return s end
  local chunk, err
  if setfenv then -- Lua 5.1 / LuaJIT
    chunk, err = loadstring("return " .. s, "=" .. opt)
    if chunk then setfenv(chunk, {}) end
  else
    chunk, err = load("return " .. s, "=" .. opt, "t", {})
  end
  if not chunk then die(USAGE .. "\n" .. tostring(err), 2) end
  local ok, spec = pcall(chunk)
  if not ok or type(spec) ~= "table" then die(opt .. ": not a codec table", 2) end
  return spec
end

local function parse_args(args)
  -- LuaJIT/5.1: 64-bit values beyond 2^53 show as decimal strings, not errors
  local target, opts = nil, { int64 = "string" }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-(%w+)=(.*)$")
    if not name then name = a:match("^%-%-(%w+)$") end
    if a == "-h" or name == "help" then
      print(USAGE)
      os.exit(0)
    elseif name == "key" or name == "value" then
      if not value then
        i = i + 1
        value = args[i]
        if not value then die(USAGE .. "\n--" .. name .. " needs a codec", 2) end
      end
      opts[name] = parse_codec(value, "--" .. name)
    elseif name then
      die(USAGE .. "\nunknown option " .. a, 2)
    elseif target then
      die(USAGE .. "\none map at a time (got " .. target .. " and " .. a .. ")", 2)
    else
      target = a
    end
    i = i + 1
  end
  return target, opts
end

local function open_target(target, opts)
  local id = target:match("^id:(.*)$")
  if id then
    local n = tonumber(id)
    if not n or n < 1 or n % 1 ~= 0 then die(USAGE .. "\nbad map id '" .. id .. "'", 2) end
    return ebpf.open_id(n, opts)
  end
  local name = target:match("^name:(.*)$")
  if name then return ebpf.open_name(name, opts) end
  return ebpf.open(target, opts)
end

local function dump_map(target, opts)
  local ok, m = pcall(open_target, target, opts)
  if not ok then die(m) end
  local info = m:info()
  local kdesc, vdesc = m:codec()
  local kraw, vraw = kdesc:match("^raw") ~= nil, vdesc:match("^raw") ~= nil
  local layout = m:layout()
  local flags = #info.flags > 0 and ", flags " .. table.concat(info.flags, ",") or ""
  print(string.format("map id %d: %s '%s', key %d bytes (%s), value %d bytes (%s%s), "
    .. "max_entries %d%s", info.id, info.type, info.name, info.key_size, kdesc,
    info.value_size, vdesc, info.percpu and ", per CPU" or "", info.max_entries, flags))
  local hok, h = pcall(m.holders, m)
  print("held by: " .. (hok and held_by(h) or "? (" .. message(h) .. ")")
    .. (hok and h.hidden > 0 and string.format(" (%d processes not inspected)", h.hidden) or ""))
  local n = 0
  local walked, err = pcall(function()
    for k, v in m:pairs() do
      n = n + 1
      local value
      if info.percpu then
        local cpus = {}
        for c = 1, #v do cpus[c] = "cpu" .. (c - 1) .. " " .. show(v[c], layout.value, vraw) end
        value = table.concat(cpus, ", ")
      else
        value = show(v, layout.value, vraw)
      end
      print(show(k, layout.key, kraw) .. " => " .. value)
    end
  end)
  m:close()
  if not walked then die(err) end
  print(string.format("%d entr%s", n, n == 1 and "y" or "ies"))
end

local target, opts = parse_args(arg or {})
if target then
  dump_map(target, opts)
else
  list_maps()
end

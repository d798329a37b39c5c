-- luaebpf.stack: stack traces as symbolised frames. m:stack(id [, opts])
-- reads one stack of a stack_trace map (core.stack_read: raw addresses, or
-- build ids and file offsets); symbolize(addrs [, opts]) names addresses from
-- anywhere (a perf event, a ring buffer record). Kernel addresses go through
-- core.ksym (/proc/kallsyms); user addresses through the process's mappings
-- (/proc/PID/maps) and the mapped files' ELF symbols (core.elf_symbolize,
-- which caches each file). Nothing here raises for an address it cannot
-- name: the frame keeps the address and says why in frame.error.
-- Shared by every Lua version, so written in 5.1 syntax.
local core = require "luaebpf.core"

local M = {}

local DEBUG_DIR = "/usr/lib/debug"

-- ------------------------------------------------------------ addresses

-- Addresses are integers on 5.3+ (kernel ones, from 2^63 up, negative) and
-- numbers or "0x..." strings on LuaJIT (beyond 2^53 a number is not exact).
local function is_kernel(addr)
  if type(addr) == "string" then
    local digits = addr:match("^0[xX](%x+)$")
    if digits then
      digits = digits:gsub("^0+", "")
      return #digits == 16 and tonumber(digits:sub(1, 1), 16) >= 8
    end
    -- a decimal string (what int64 = "string" reads on LuaJIT): from 2^63 up
    digits = addr:match("^0*(%d+)$")
    if not digits then return false end
    return #digits > 19 or (#digits == 19 and digits >= "9223372036854775808")
  end
  return addr < 0 -- 5.3+: the top bit set (check_addr keeps floats within 2^53)
end

local function hex(addr)
  if type(addr) == "string" then
    local digits = addr:match("^0[xX](%x+)$")
    return digits and "0x" .. digits:lower() or addr
  end
  return string.format("0x%x", addr)
end

-- the address as a non-negative Lua number for arithmetic with the maps
-- (user addresses only: below 2^47 on x86_64, exact on every Lua)
local function user_number(addr)
  if type(addr) == "string" then return tonumber(addr) end
  return addr
end

local function check_addr(addr, i)
  local t = type(addr)
  if t == "number" then
    if math.type and math.type(addr) == "integer" then return end
    -- a float is exact up to 2^53 only: beyond, it may not be the address meant
    if addr == math.floor(addr) and addr >= 0 and addr <= 2 ^ 53 then return end
    if addr == math.floor(addr) and addr > 2 ^ 53 then
      error("bad argument #1 to 'symbolize' (address " .. i .. ": " .. string.format("%.0f", addr)
        .. " is beyond 2^53, where a float is not exact: give it as a string such as "
        .. "\"0xffffffff81000000\")", 3)
    end
  elseif t == "string" then
    if addr:match("^0[xX]%x+$") or addr:match("^%d+$") then return end
  end
  error("bad argument #1 to 'symbolize' (address " .. i .. ": an integer or a string such as "
    .. "\"0xffffffff81000000\" expected, got " .. (t == "string" and string.format("%q", addr) or t)
    .. ")", 3)
end

-- ------------------------------------------------------------- mappings

--- maps(pid): the file mappings of a process from /proc/PID/maps, sorted by
-- start: { start =, stop =, offset =, path =, deleted = bool }; or nil, why.
-- Only mappings of files: anonymous memory, the stack, [vdso] are left out.
function M.maps(pid)
  if type(pid) ~= "number" or pid ~= math.floor(pid) or pid < 1 then
    error("bad argument #1 to 'maps' (a process id expected, got "
      .. (type(pid) == "number" and tostring(pid) or type(pid)) .. ")", 2)
  end
  local f, why = io.open("/proc/" .. string.format("%d", pid) .. "/maps", "r")
  if not f then
    return nil, "process " .. string.format("%d", pid) .. ": " .. tostring(why)
  end
  local out = {}
  for line in f:lines() do
    -- start-stop perms offset dev inode path
    local s, e, off, path = line:match("^(%x+)%-(%x+) %S+ (%x+) %S+ %d+%s+(/.*)$")
    if s and #s < 16 then -- a start of 16 digits is the kernel's [vsyscall] page
      local deleted = false
      if path:sub(-10) == " (deleted)" then
        path, deleted = path:sub(1, -11), true
      end
      out[#out + 1] = { start = tonumber(s, 16), stop = tonumber(e, 16),
                        offset = tonumber(off, 16), path = path, deleted = deleted }
    end
  end
  f:close()
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

local function mapping_of(maps, a)
  local lo, hi = 1, #maps
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local m = maps[mid]
    if a < m.start then hi = mid - 1
    elseif a >= m.stop then lo = mid + 1
    else return m end
  end
end

-- ---------------------------------------------------------------- frames

local function text_of(fr)
  if fr.name then return string.format("%s+0x%x", fr.name, fr.offset) end
  if fr.file then return fr.file .. "+" .. hex(fr.file_offset) end
  if fr.build_id then return fr.build_id .. "+" .. hex(fr.file_offset) end
  return hex(fr.addr)
end

-- addr - 1 as the same kind of value: an integer (5.3+, wrapping as the
-- kernel's u64 does), or a hex string of the same 64 bits (LuaJIT's form
-- beyond 2^53, what stack_read gives); nil for any other form or for 0
local function minus_one(addr)
  if type(addr) == "number" then return addr ~= 0 and addr - 1 or nil end
  local digits = addr:match("^0[xX](%x+)$")
  if not digits then return nil end
  digits = digits:lower()
  local out, i = {}, #digits
  while i >= 1 do -- borrow through trailing zeros
    local d = tonumber(digits:sub(i, i), 16)
    if d > 0 then
      out[#out + 1] = string.format("%x", d - 1)
      return "0x" .. digits:sub(1, i - 1) .. table.concat(out):reverse()
    end
    out[#out + 1] = "f"
    i = i - 1
  end
end

-- returning: the address is a return address (a caller's frame), named by
-- the byte before it, as for user frames (see resolve_files); the offset
-- still counts to the address the frame holds
local function kernel_frame(addr, returning)
  local fr = { addr = addr, kernel = true }
  local before = returning and minus_one(addr)
  local name, off = core.ksym(before or addr)
  if name and before then off = off + 1 end
  if name then
    fr.name, fr.offset = name, off
  else
    -- kallsyms is read once a process: symbols that came later (BPF
    -- programs, modules) are not known, nor any when it hides addresses
    fr.error = "in no kernel symbol known to this process"
  end
  return fr
end

-- Resolves the frames in `pending` (file -> list of frames with file_offset
-- set) with one call per file; a file that cannot be read marks its frames.
-- A caller's frame holds a return address, the byte after its call: that
-- call may be the function's last instruction (a call to abort, exit or any
-- function that does not return), so the byte after it can belong to the
-- next function or to none. Such a frame is named by the byte before (as the
-- kernel's %pB does), its offset still counted to the address it holds.
local function resolve_files(pending, returns, notes)
  for path, frames in pairs(pending) do
    local offs = {}
    for i, fr in ipairs(frames) do
      offs[i] = fr.file_offset
      if returns[fr] and offs[i] > 0 then offs[i] = offs[i] - 1 end
    end
    local names, deltas = core.elf_symbolize(path, offs)
    for i, fr in ipairs(frames) do
      if not names then
        fr.error = notes[fr] and notes[fr] .. " (" .. deltas .. ")" or deltas
      elseif names[i] then
        fr.name, fr.offset = names[i], deltas[i] + (fr.file_offset - offs[i])
      else
        fr.error = "in no function of " .. fr.file
      end
    end
  end
end

local function add_pending(pending, path, fr)
  local list = pending[path]
  if not list then list = {}; pending[path] = list end
  list[#list + 1] = fr
end

-- the path to read mapping m's file by: through the process's root (its
-- mount namespace); a file deleted since it was mapped (a library replaced
-- by an upgrade under a running process) through /proc/PID/map_files, which
-- opens what the process maps (root only); nil when there is no process
local function read_path(m, ctx)
  if not m.deleted then return ctx.root .. m.path end
  if ctx.pid then return string.format("/proc/%d/map_files/%x-%x", ctx.pid, m.start, m.stop) end
end

-- user frames for addresses, through the maps of opts.pid (read at most once)
local function user_frame(addr, ctx, pending)
  local fr = { addr = addr, kernel = false }
  if not ctx.who then
    fr.error = "a user address: give opts.pid (or opts.maps) to name it"
    return fr
  end
  if ctx.maps == nil then
    ctx.maps, ctx.maps_error = M.maps(ctx.pid)
    ctx.maps = ctx.maps or false
  end
  if not ctx.maps then
    fr.error = ctx.maps_error
    return fr
  end
  local a = user_number(addr)
  local m = a and mapping_of(ctx.maps, a)
  if not m then
    fr.error = "in no file mapped by " .. ctx.who
    return fr
  end
  fr.file, fr.file_offset = m.path, a - m.start + m.offset
  local read = read_path(m, ctx)
  local gone = m.deleted and m.path .. ": deleted since " .. ctx.who .. " mapped it"
  if read then
    add_pending(pending, read, fr)
    ctx.notes[fr] = gone or nil -- said only if even map_files cannot open it
  else
    fr.error = gone
  end
  return fr
end

-- the file holding build id `bid`: a file mapped by opts.pid, else the debug
-- file under opts.debug_dir; nil when neither has it. Then the path to read it by.
local function file_of_build_id(bid, ctx)
  if ctx.by_build_id == nil then
    ctx.by_build_id = {}
    if ctx.who then
      if ctx.maps == nil then
        ctx.maps, ctx.maps_error = M.maps(ctx.pid)
        ctx.maps = ctx.maps or false
      end
      local seen = {}
      for _, m in ipairs(ctx.maps or {}) do
        local read = read_path(m, ctx)
        if read and not seen[m.path] then
          seen[m.path] = true
          local id = core.elf_build_id(read)
          if id then ctx.by_build_id[id] = { m.path, read } end
        end
      end
    end
  end
  local found = ctx.by_build_id[bid]
  if found then return found[1], found[2] end
  local path = ctx.debug_dir .. "/.build-id/" .. bid:sub(1, 2) .. "/" .. bid:sub(3) .. ".debug"
  if core.elf_build_id(path) == bid then return path, path end
end

local function build_id_frame(e, ctx, pending)
  if e.status == "ip" then
    if is_kernel(e.ip) then return kernel_frame(e.ip) end
    return user_frame(e.ip, ctx, pending)
  end
  local fr = { kernel = false, build_id = e.build_id, file_offset = e.offset }
  -- the kernel's u64: beyond 2^53 a string on LuaJIT, past 2^63 negative on 5.3+
  local off = e.offset
  if type(off) ~= "number" or off < 0 or off > 2 ^ 53 then
    fr.error = "file offset " .. hex(off) .. " beyond any file"
    return fr
  end
  local path, read = file_of_build_id(e.build_id, ctx)
  if path then
    fr.file = path
    add_pending(pending, read, fr)
  else
    fr.error = "no file with build id " .. e.build_id .. (ctx.who and " mapped by "
      .. ctx.who .. " nor" or "") .. " under " .. ctx.debug_dir .. "/.build-id"
  end
  return fr
end

local known = { pid = true, kernel = true, debug_dir = true, maps = true }

local function context(opts, fname, argn)
  local ctx = { debug_dir = DEBUG_DIR, root = "", notes = {} }
  if opts == nil then return ctx end
  if type(opts) ~= "table" then
    error("bad argument #" .. argn .. " to '" .. fname .. "' (table expected, got " .. type(opts)
      .. ")", 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      error("bad argument #" .. argn .. " to '" .. fname .. "' (unknown option '" .. tostring(k)
        .. "'; known: debug_dir, kernel, maps, pid)", 3)
    end
  end
  local pid = opts.pid
  if pid ~= nil and (type(pid) ~= "number" or pid ~= math.floor(pid) or pid < 1 or pid > 4194304) then
    error("bad option 'pid' to '" .. fname .. "': a process id (an integer in 1..4194304) "
      .. "expected, got " .. (type(pid) == "number" and tostring(pid) or type(pid)), 3)
  end
  if opts.kernel ~= nil and type(opts.kernel) ~= "boolean" then
    error("bad option 'kernel' to '" .. fname .. "': a boolean expected, got " .. type(opts.kernel), 3)
  end
  if opts.debug_dir ~= nil and type(opts.debug_dir) ~= "string" then
    error("bad option 'debug_dir' to '" .. fname .. "': a string expected, got "
      .. type(opts.debug_dir), 3)
  end
  if opts.maps ~= nil and type(opts.maps) ~= "table" then
    error("bad option 'maps' to '" .. fname .. "': a table from maps(pid) expected, got "
      .. type(opts.maps), 3)
  end
  ctx.pid, ctx.kernel, ctx.maps = pid, opts.kernel, opts.maps
  -- the paths in a process's maps are in its mount namespace (a container's
  -- /usr/lib is not ours): read them through its root while it lives
  if pid then ctx.root = "/proc/" .. string.format("%d", pid) .. "/root" end
  -- for messages: whose mappings name user addresses
  ctx.who = pid and "process " .. pid or ctx.maps and "the maps given"
  if opts.debug_dir then ctx.debug_dir = opts.debug_dir end
  return ctx
end

-- returns: the frames (a set) whose address is a return address
local function finish(frames, pending, returns, notes)
  resolve_files(pending, returns or {}, notes)
  for _, fr in ipairs(frames) do fr.text = text_of(fr) end
  return frames
end

--- symbolize(addrs [, opts]): frames for an array of addresses (integers, or
-- "0x..." strings for kernel addresses on LuaJIT). opts.pid: the process whose
-- mappings name user addresses; opts.kernel: true or false to say which all
-- addresses are (default: by the top bit); opts.debug_dir for build ids.
function M.symbolize(addrs, opts)
  if type(addrs) ~= "table" then
    error("bad argument #1 to 'symbolize' (table of addresses expected, got " .. type(addrs)
      .. ")", 2)
  end
  local ctx = context(opts, "symbolize", 2)
  for i = 1, #addrs do check_addr(addrs[i], i) end
  local frames, pending = {}, {}
  for i = 1, #addrs do
    local a = addrs[i]
    local kernel = ctx.kernel
    if kernel == nil then kernel = is_kernel(a) end
    frames[i] = kernel and kernel_frame(a) or user_frame(a, ctx, pending)
  end
  return finish(frames, pending, nil, ctx.notes)
end

--- m:stack(id [, opts]): the frames of stack `id` (what bpf_get_stackid
-- returned), innermost first; nil when the map has no such stack, nil, err
-- when the kernel refuses. opts as for symbolize.
function M.stack(m, id, opts)
  if type(id) ~= "number" or id ~= math.floor(id) or id < 0 or id > 4294967295 then
    error("bad argument #1 to 'stack' (expected a stack id (an integer in 0..4294967295, as "
      .. "bpf_get_stackid returns), got " .. (type(id) == "number" and tostring(id) or type(id))
      .. ")", 2)
  end
  local ctx = context(opts, "stack", 2)
  local raw, build_id = core.stack_read(m, id)
  if not raw then
    if build_id == nil then return nil end -- no such stack
    return nil, build_id
  end
  local frames, pending, returns = {}, {}, {}
  for i, e in ipairs(raw) do
    if build_id then
      frames[i] = build_id_frame(e, ctx, pending)
    else
      local kernel = ctx.kernel
      if kernel == nil then kernel = is_kernel(e) end
      frames[i] = kernel and kernel_frame(e, i > 1) or user_frame(e, ctx, pending)
    end
    -- past the innermost frame, the stack walks give return addresses
    -- (kernel frames named by the byte before already)
    if i > 1 and not frames[i].kernel then returns[frames[i]] = true end
  end
  return finish(frames, pending, returns, ctx.notes)
end

return M

-- luaebpf: the Lua face of luaebpf.core. Re-exports the core unchanged and
-- adds what reads better in Lua: open_name, aggregation and delta helpers.
-- Shared by every Lua version, so written in 5.1 syntax.
local core = require "luaebpf.core"

local M = {}
for k, v in pairs(core) do M[k] = v end -- the core stays usable alone

-- ebpf.open, ebpf.open_id and ebpf.create are the core's own functions (opts.expect
-- is checked in C, before the codecs), so their errors name the caller's line.

--- ebpf.open_name(name [, opts]): the one loaded map with that name.
function M.open_name(name, opts)
  if type(name) ~= "string" then
    error("bad argument #1 to 'open_name' (string expected, got " .. type(name) .. ")", 2)
  end
  local ids = {}
  for info in core.maps() do
    if info.name == name then ids[#ids + 1] = info.id end
  end
  if #ids ~= 1 then
    error(core.error{ op = "open", map = name, class = #ids == 0 and "missing" or "invalid",
      detail = #ids == 0 and "no loaded map has this name (the kernel keeps 15 bytes of a name)"
        or "ids " .. table.concat(ids, ", ") .. " share this name; use open_id" }, 2)
  end
  return core.open_id(ids[1], opts)
end

--- for info in ebpf.maps() do ... end: every loaded map, as info tables;
-- ebpf.progs() and ebpf.links() the same for programs and links.
M.maps, M.progs, M.links = core.maps, core.progs, core.links

--- obj:ringbuf(name [, opts]) and obj:perfbuf(name [, opts]): a consumer of
-- the object's map `name`; record types named in opts.record are looked up
-- in this object's BTF unless opts.btf says otherwise. The consumer holds its
-- own dup of the map's fd, so the Map made here is closed at once.
local function consumer_of(ctor)
  return function(obj, name, opts)
    local m = obj:map(name)
    local o = {}
    if opts ~= nil then
      if type(opts) ~= "table" then
        error("bad argument #2 (table expected, got " .. type(opts) .. ")", 2)
      end
      for k, v in pairs(opts) do o[k] = v end
    end
    if o.btf == nil then o.btf = obj end
    local ok, c = pcall(ctor, m, o)
    m:close()
    if not ok then error(c, 2) end
    return c
  end
end
if core.ringbuf then core.Object.ringbuf = consumer_of(core.ringbuf) end
if core.perfbuf then core.Object.perfbuf = consumer_of(core.perfbuf) end

--- m:stack(id [, opts]) on stack_trace maps, and ebpf.symbolize(addrs [, opts]):
-- symbolised stack frames (lua/luaebpf/stack.lua)
local stack = require "luaebpf.stack"
core.Map.stack = stack.stack
M.symbolize = stack.symbolize

--- m:dump_inner([opts]): a map of maps' keys, and for each the whole inner
-- map it points to: { id =, keys = {...}, values = {...} } (parallel arrays,
-- as dump gives). opts are the open options of each inner map (codecs;
-- read-only by default). Entries with no inner map (empty array slots) are
-- left out; an entry emptied between the walk and its open too.
function core.Map.dump_inner(m, opts)
  local t = m:info().type -- raises class "closed" on a closed map
  if t ~= "array_of_maps" and t ~= "hash_of_maps" then
    error("dump_inner: array_of_maps or hash_of_maps expected, this map is a"
      .. (t:find("^[aeiou]") and "n " or " ") .. t, 2)
  end
  local keys, maps = {}, {}
  for k in m:keys() do
    -- m:inner raises class "missing" when the id it read was freed before
    -- it could open it: the entry was emptied or replaced meanwhile
    local raised_ok, inner, err = pcall(m.inner, m, k, opts)
    if not raised_ok then
      if type(inner) ~= "table" or inner.class ~= "missing" then error(inner, 2) end
      inner = nil
    end
    if err then error(err, 2) end
    if inner then
      local ok, ik, iv = pcall(inner.dump, inner)
      local id = inner:info().id
      inner:close()
      if not ok then error(ik, 2) end
      keys[#keys + 1] = k
      maps[#maps + 1] = { id = id, keys = ik, values = iv }
    end
  end
  return keys, maps
end

local aggregate = require "luaebpf.aggregate"
M.sum, M.min, M.max, M.avg = aggregate.sum, aggregate.min, aggregate.max, aggregate.avg
M.snapshot, M.delta = aggregate.snapshot, aggregate.delta

return M

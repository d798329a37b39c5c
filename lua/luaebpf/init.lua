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

--- for info in ebpf.maps() do ... end: every loaded map, as info tables.
M.maps = core.maps

local aggregate = require "luaebpf.aggregate"
M.sum, M.min, M.max, M.avg = aggregate.sum, aggregate.min, aggregate.max, aggregate.avg
M.snapshot, M.delta = aggregate.snapshot, aggregate.delta

return M

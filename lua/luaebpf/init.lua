-- luaebpf: the Lua face of luaebpf.core. Re-exports the core unchanged and
-- adds what reads better in Lua: opts.expect checks, open_name, and helpers.
-- Shared by every Lua version, so written in 5.1 syntax.
local core = require "luaebpf.core"

local M = {}
for k, v in pairs(core) do M[k] = v end -- the core stays usable alone

local EXPECT_FIELDS = {
  type = true, key_size = true, value_size = true, max_entries = true,
  name = true, flags = true, percpu = true, btf_id = true,
}

local function flag_set(list)
  local set = {}
  for _, f in ipairs(list) do set[f] = true end
  return set
end

local function same_flags(want, got)
  local w, g = flag_set(want), flag_set(got)
  for f in pairs(w) do if not g[f] then return false end end
  for f in pairs(g) do if not w[f] then return false end end
  return true
end

local function show(v)
  if type(v) == "table" then return "{" .. table.concat(v, ", ") .. "}" end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Every field of `expect` that differs from the map's info, as one message;
-- nil when all match. Unknown expect fields are the caller's mistake.
local function expect_mismatch(info, expect)
  local diffs = {}
  local names = {}
  for k in pairs(expect) do
    if not EXPECT_FIELDS[k] then
      local known = {}
      for f in pairs(EXPECT_FIELDS) do known[#known + 1] = f end
      table.sort(known)
      error("unknown field '" .. tostring(k) .. "' in opts.expect (expected one of: "
        .. table.concat(known, ", ") .. ")", 4)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local want, got = expect[k], info[k]
    local same
    if k == "flags" then
      if type(want) ~= "table" then
        error("opts.expect.flags: a list of flag names expected, got " .. type(want), 4)
      end
      same = same_flags(want, got)
    else
      same = want == got
    end
    if not same then
      diffs[#diffs + 1] = k .. " " .. show(want) .. " expected, got " .. show(got)
    end
  end
  if #diffs > 0 then return table.concat(diffs, "; ") end
end

-- opens with `opener`, checks opts.expect, then sets the codecs, so a map of
-- the wrong shape is reported as such rather than as a codec size error
local function open_checked(opener, what, target, opts)
  if opts == nil or opts.expect == nil then return opener(target, opts) end
  if type(opts) ~= "table" then return opener(target, opts) end
  if type(opts.expect) ~= "table" then
    error("bad option 'expect': a table expected, got " .. type(opts.expect), 3)
  end
  local plain = {}
  for k, v in pairs(opts) do
    if k ~= "expect" and k ~= "key" and k ~= "value" then plain[k] = v end
  end
  local m = opener(target, plain)
  local ok, diff = pcall(expect_mismatch, m:info(), opts.expect)
  if not ok then m:close(); error(diff, 3) end
  if diff then
    local info = m:info()
    m:close()
    error(core.error{ op = "open", class = "invalid", map = info.name ~= "" and info.name or what,
      id = info.id, detail = "not the expected map: " .. diff }, 3)
  end
  if opts.key ~= nil or opts.value ~= nil then
    local cok, err = pcall(m.codec, m, { key = opts.key, value = opts.value })
    if not cok then m:close(); error(err, 3) end
  end
  return m
end

--- ebpf.open(path [, opts]): a pinned map; read-only unless opts.access says otherwise.
function M.open(path, opts)
  return open_checked(core.open, path, path, opts)
end

--- ebpf.open_id(id [, opts])
function M.open_id(id, opts)
  return open_checked(core.open_id, nil, id, opts)
end

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
  return M.open_id(ids[1], opts)
end

--- for info in ebpf.maps() do ... end: every loaded map, as info tables.
M.maps = core.maps

local aggregate = require "luaebpf.aggregate"
M.sum, M.min, M.max, M.avg = aggregate.sum, aggregate.min, aggregate.max, aggregate.avg
M.snapshot, M.delta = aggregate.snapshot, aggregate.delta

return M

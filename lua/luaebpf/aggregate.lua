-- luaebpf.aggregate: folding per-CPU values and comparing two reads.
-- sum/min/max/avg take an array of numbers, or an array of tables (struct
-- values, arrays) folded field by field; delta compares two snapshots.
-- Shared by every Lua version: 5.1 syntax.
local A = {}

local function fold(values, pick, what)
  if type(values) ~= "table" then
    error("bad argument #1 to '" .. what .. "' (array of values expected, got "
      .. type(values) .. ")", 3)
  end
  local acc = values[1]
  if acc == nil then return nil end
  local function combine(a, b, path)
    if type(a) == "number" and type(b) == "number" then return pick(a, b) end
    if type(a) == "table" and type(b) == "table" then
      local out = {}
      for k, av in pairs(a) do out[k] = combine(av, b[k], path .. "." .. tostring(k)) end
      return out
    end
    if a == b then return a end -- strings, booleans: kept when they agree
    error(what .. ": cannot combine " .. type(a) .. " and " .. type(b) .. " at " .. path, 4)
  end
  local function copy(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = copy(x) end
    return out
  end
  acc = copy(acc)
  for i = 2, #values do acc = combine(acc, values[i], "[" .. i .. "]") end
  return acc
end

--- the sum of an array of numbers (or of struct tables, field by field)
function A.sum(values)
  return fold(values, function(a, b) return a + b end, "sum")
end

function A.min(values)
  return fold(values, function(a, b) return (b < a) and b or a end, "min")
end

function A.max(values)
  return fold(values, function(a, b) return (b > a) and b or a end, "max")
end

--- the mean: numbers become floats; struct tables are averaged field by field
function A.avg(values)
  local total = A.sum(values)
  if total == nil then return nil end
  local n = #values
  local function divide(v)
    if type(v) == "number" then return v / n end
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = divide(x) end
    return out
  end
  return divide(total)
end

-- a string that names a key, equal for equal keys: table keys (struct keys)
-- are serialised with their fields sorted
local function key_id(k)
  if type(k) ~= "table" then return type(k) .. ":" .. tostring(k) end
  local names = {}
  for name in pairs(k) do names[#names + 1] = name end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, name in ipairs(names) do parts[i] = tostring(name) .. "=" .. key_id(k[name]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- a snapshot of a map (or of an iterator's pairs): { [key_id] = { key =, value = } }
function A.snapshot(m, opts)
  local snap = {}
  local keys, values = m:dump(opts)
  for i = 1, #keys do snap[key_id(keys[i])] = { key = keys[i], value = values[i] } end
  return snap
end

-- cur - prev for counters; a counter that went down was reset, and its
-- delta is its new value
local function diff(prev, cur, reset)
  if type(cur) == "number" and type(prev) == "number" then
    if cur < prev then reset.flag = true; return cur end
    return cur - prev
  end
  if type(cur) == "table" and type(prev) == "table" then
    local out = {}
    for k, v in pairs(cur) do out[k] = diff(prev[k], v, reset) end
    return out
  end
  return cur
end

-- nothing moved: every number in d is zero (strings and booleans ignored)
local function all_zero(d)
  if type(d) == "number" then return d == 0 end
  if type(d) == "table" then
    for _, v in pairs(d) do
      if not all_zero(v) then return false end
    end
  end
  return true
end

local function as_snapshot(t)
  if t == nil then return {} end
  for _, e in pairs(t) do
    if type(e) == "table" and e.key ~= nil and rawget(e, "value") ~= nil then return t end
    break
  end
  -- a plain { [key] = value } table
  local snap = {}
  for k, v in pairs(t) do snap[key_id(k)] = { key = k, value = v } end
  return snap
end

--- delta(prev, cur): what changed between two snapshots (from ebpf.snapshot,
-- or plain { [key] = value } tables). Returns { changed = {...}, new = {...},
-- vanished = {...} }; each entry is { key =, value =, delta =, reset = bool }.
-- Keys whose value did not change are in none of the three.
function A.delta(prev, cur)
  prev, cur = as_snapshot(prev), as_snapshot(cur)
  local out = { changed = {}, new = {}, vanished = {} }
  for id, e in pairs(cur) do
    local p = prev[id]
    if p == nil then
      out.new[#out.new + 1] = { key = e.key, value = e.value, delta = e.value }
    else
      local reset = {}
      local d = diff(p.value, e.value, reset)
      if reset.flag or not all_zero(d) then
        out.changed[#out.changed + 1] = { key = e.key, value = e.value, delta = d,
          reset = reset.flag or false }
      end
    end
  end
  for id, e in pairs(prev) do
    if cur[id] == nil then out.vanished[#out.vanished + 1] = { key = e.key, value = e.value } end
  end
  return out
end

A.key_id = key_id

return A

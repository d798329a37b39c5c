-- luaebpf.format: text output for map contents. log2_hist prints a log2
-- histogram as bars, the way BCC's print_log2_hist does; table_rows aligns
-- columns. Shared by every Lua version: 5.1 syntax.
local F = {}

local BAR = 40

-- "0 -> 1", "2 -> 3", "4 -> 7", ...: slot i holds [2^i, 2^(i+1) - 1] (slot 0:
-- 0 and 1), exact past 2^53 (as decimal strings: 2^64 - 1 has no double)
local function slot_range(i)
  return require("luaebpf.histogram").bounds("log2", 1, i)
end

local function count_of(v)
  if type(v) == "table" then -- per-CPU: the sum over CPUs
    local s = 0
    for _, x in ipairs(v) do s = s + x end
    return s
  end
  return v or 0
end

-- a bucket bound as text: integers in full, decimal strings (exact past 2^53) as they are
local function bound(v)
  if type(v) == "number" then return string.format("%.0f", v) end
  return tostring(v)
end

-- a histogram of luaebpf.histogram ({ buckets = { { lo, hi, count } } }):
-- its buckets as rows, linear ones included; counts may be decimal strings
local function buckets_hist(h, label)
  local first, last, max = nil, nil, 0
  for i, b in ipairs(h.buckets) do
    local c = tonumber(b.count) or 0
    if c > 0 then
      first = first or i
      last = i
      if c > max then max = c end
    end
  end
  if not first then return "(no samples)\n" end
  local lines = { string.format("%25s : %-10s distribution", label, "count") }
  for i = first, last do
    local b = h.buckets[i]
    local c = tonumber(b.count) or 0
    local stars = max > 0 and math.floor(c * BAR / max + 0.5) or 0
    if c > 0 and stars == 0 then stars = 1 end
    lines[#lines + 1] = string.format("%10s -> %-11s : %-10s |%-" .. BAR .. "s|",
      bound(b.lo), bound(b.hi), tostring(b.count), string.rep("*", stars))
  end
  return table.concat(lines, "\n") .. "\n"
end

--- log2_hist(slots [, label]) -> string. `slots` maps slot i (0-based, as
-- the BPF program computes floor(log2(v))) to a count or to a per-CPU array of
-- counts; a Lua array (1-based) is taken as slots 0, 1, 2, ... Rows run from
-- the first to the last non-empty slot. `slots` may also be one histogram
-- of luaebpf.histogram.read (a table with `buckets`), log2 or linear.
function F.log2_hist(slots, label)
  label = label or "value"
  if type(slots) == "table" and type(slots.buckets) == "table" then
    return buckets_hist(slots, label)
  end
  local counts, first, last, max = {}, nil, nil, 0
  local base = slots[0] == nil and 1 or 0 -- a plain Lua array starts at [1]
  for k, v in pairs(slots) do
    local i = k - base
    local c = count_of(v)
    counts[i] = c
    if c > 0 then
      if not first or i < first then first = i end
      if not last or i > last then last = i end
      if c > max then max = c end
    end
  end
  if not first then return "(no samples)\n" end
  local lines = { string.format("%25s : %-10s distribution", label, "count") }
  for i = first, last do
    local lo, hi = slot_range(i)
    local c = counts[i] or 0
    local stars = max > 0 and math.floor(c * BAR / max + 0.5) or 0
    if c > 0 and stars == 0 then stars = 1 end
    lines[#lines + 1] = string.format("%10s -> %-11s : %-10d |%-" .. BAR .. "s|",
      bound(lo), bound(hi), c, string.rep("*", stars))
  end
  return table.concat(lines, "\n") .. "\n"
end

--- table_rows(header, rows) -> string: columns padded to their widest cell;
-- a column whose header starts with ">" is right-aligned (the ">" is dropped)
function F.table_rows(header, rows)
  local widths, right, names = {}, {}, {}
  for i, h in ipairs(header) do
    right[i] = h:sub(1, 1) == ">"
    names[i] = right[i] and h:sub(2) or h
    widths[i] = #names[i]
  end
  for _, row in ipairs(rows) do
    for i = 1, #header do
      local cell = tostring(row[i] == nil and "" or row[i])
      if #cell > widths[i] then widths[i] = #cell end
    end
  end
  local function line(cells)
    local out = {}
    for i = 1, #header do
      local cell = tostring(cells[i] == nil and "" or cells[i])
      local pad = string.rep(" ", widths[i] - #cell)
      out[i] = right[i] and pad .. cell or cell .. pad
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local lines = { line(names) }
  for _, row in ipairs(rows) do lines[#lines + 1] = line(row) end
  return table.concat(lines, "\n") .. "\n"
end

return F

-- luaebpf.prometheus: map entries as Prometheus samples, in the text
-- exposition format (version 0.0.4).
--
--   local prom = require "luaebpf.prometheus"
--   io.write(prom.text(m, { name = "syscalls_total", type = "counter",
--                           help = "system calls per process", value = "count" }))
--
-- Each entry is one sample. Its labels come from the key: one label per field
-- of a struct key (nested fields joined with "_"), or one label `key` for a
-- scalar key. Its value is the entry's value (or the field `opts.value` of a
-- struct value), per-CPU values summed. Integers are written exactly, u64
-- beyond 2^53 (and 2^63) included, whatever the Lua version.
-- Histograms (type "histogram", read by luaebpf.histogram) are one family of
-- cumulative _bucket{le=...} samples ending with le="+Inf", _sum when the map
-- holds a sum, and _count.
-- Names derived from fields are made valid, then unique: when two labels of a
-- sample (or two families of a map) come out with the same name, the first
-- keeps it and the later ones, in field order, get _2, _3, ...
-- Shared by every Lua version: 5.1 syntax.
local P = {}

P.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

local format, concat, type, tostring = string.format, table.concat, type, tostring
local unpack = table.unpack or unpack
local math_type = math.type -- nil before 5.3: numbers are doubles
local TWO53 = 9007199254740992

-- ------------------------------------------------------------ names and escaping

--- a valid metric name from any string: characters outside [a-zA-Z0-9_:]
-- become "_", and a leading digit gets a "_" before it
function P.metric_name(s)
  s = tostring(s):gsub("[^%w_:]", "_")
  if s == "" or s:find("^%d") then s = "_" .. s end
  return s
end

--- a valid label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"
-- (reserved for Prometheus itself)
function P.label_name(s)
  s = tostring(s):gsub("[^%w_]", "_")
  if s == "" or s:find("^%d") then s = "_" .. s end
  s = s:gsub("^__+", "_")
  return s
end

-- `name`, or, when `taken` has it already, the first of name_2, name_3, ...
-- that it has not; marks the result taken
local function unique_name(name, taken)
  if taken[name] then
    local i = 2
    while taken[name .. "_" .. i] do i = i + 1 end
    name = name .. "_" .. i
  end
  taken[name] = true
  return name
end

-- bytes that are not part of valid UTF-8 become the text \xNN, so that the
-- exposition stays UTF-8 and no information is lost
local function utf8_safe(s)
  if not s:find("[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2
      or (c >= 0xE0 and c <= 0xEF) and 3 or (c >= 0xF0 and c <= 0xF4) and 4 or 0
    local ok = len > 0 and i + len - 1 <= n
    if ok then
      for j = i + 1, i + len - 1 do
        local b = s:byte(j)
        if b < 0x80 or b > 0xBF then ok = false break end
      end
    end
    if ok and len == 3 then -- no overlong forms, no surrogates
      local b = s:byte(i + 1)
      if (c == 0xE0 and b < 0xA0) or (c == 0xED and b > 0x9F) then ok = false end
    elseif ok and len == 4 then
      local b = s:byte(i + 1)
      if (c == 0xF0 and b < 0x90) or (c == 0xF4 and b > 0x8F) then ok = false end
    end
    if ok then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = format("\\x%02x", c)
      i = i + 1
    end
  end
  return concat(out)
end
P.utf8_safe = utf8_safe

local LABEL_ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }

--- a label value escaped for the text format: \ " and newline
function P.escape_label_value(s)
  return (utf8_safe(tostring(s)):gsub('[\\"\n]', LABEL_ESCAPES))
end

--- HELP text escaped for the text format: \ and newline
function P.escape_help(s)
  return (utf8_safe(tostring(s)):gsub("[\\\n]", LABEL_ESCAPES))
end

-- ------------------------------------------------------------ exact integers

-- decimal strings of magnitudes: a + b, a - b (a >= b), comparison
local function dadd(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    carry = d >= 10 and 1 or 0
    out[#out + 1] = d % 10
    i, j = i - 1, j - 1
  end
  local s = {}
  for k = #out, 1, -1 do s[#s + 1] = out[k] end
  return concat(s)
end

local function dcmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

local function dsub(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = a:byte(i) - 48 - borrow - (j > 0 and b:byte(j) - 48 or 0)
    borrow = d < 0 and 1 or 0
    out[#out + 1] = d % 10
    i, j = i - 1, j - 1
  end
  local s = {}
  for k = #out, 1, -1 do s[#s + 1] = out[k] end
  return (concat(s):gsub("^0+(%d)", "%1"))
end

-- 2^64 as a decimal string: what a negative 5.3+ integer read from a u64
-- field must have added to it
local TWO64 = "18446744073709551616"

-- an integer value as sign and decimal magnitude; nil when it is not an
-- integer (a float with a fraction, inf, nan) or not a number at all
local function to_decimal(v, unsigned)
  local t = type(v)
  if t == "string" then -- LuaJIT's int64 = "string" (or a caller's decimal)
    local neg, digits = v:match("^(%-?)(%d+)$")
    if not digits then return nil end
    digits = digits:gsub("^0+(%d)", "%1")
    return neg == "-" and digits ~= "0", digits
  elseif t == "boolean" then
    return false, v and "1" or "0"
  elseif t ~= "number" then
    return nil
  end
  if math_type then
    if math_type(v) ~= "integer" then return nil end
    if v >= 0 then return false, format("%d", v) end
    if unsigned then -- the same 64 bits, read unsigned: v + 2^64
      return false, dsub(TWO64, format("%d", v):sub(2))
    end
    if v == math.mininteger then return true, "9223372036854775808" end
    return true, format("%d", -v)
  end
  if v ~= v or v == math.huge or v == -math.huge or v % 1 ~= 0 then return nil end
  if v >= 0 then return false, format("%.0f", v) end
  return true, format("%.0f", -v)
end

local function float_text(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v % 1 == 0 and v > -TWO53 and v < TWO53 then return format("%.0f", v) end
  return format("%.17g", v)
end

--- the exact sum of an array of values as sample text: integers (Lua
-- integers, integral numbers within 2^53, decimal strings, booleans as 0/1)
-- add exactly, past 2^64 too; `unsigned` reads negative 5.3+ integers as the
-- u64 they are. When any value is a float with a fraction (or inf, nan), the
-- sum is a float. nil when a value is not a number at all.
function P.sum(values, unsigned, n)
  n = n or #values
  -- the common case: small integers, added natively
  local acc, fast = 0, true
  for i = 1, n do
    local v = values[i]
    if type(v) ~= "number" then fast = false break end
    if math_type then
      if math_type(v) ~= "integer" or (unsigned and v < 0) then fast = false break end
      local s = acc + v
      if (v > 0 and s < acc) or (v < 0 and s > acc) then fast = false break end
      acc = s
    else
      if v % 1 ~= 0 or v > TWO53 or v < -TWO53 then fast = false break end
      acc = acc + v
      if acc > TWO53 or acc < -TWO53 then fast = false break end
    end
  end
  if fast then return format(math_type and "%d" or "%.0f", acc) end

  local neg, mag, float = false, "0", false
  for i = 1, n do
    local v = values[i]
    local vneg, vmag = to_decimal(v, unsigned)
    if vneg == nil then
      if type(v) ~= "number" then return nil end
      float = true
    elseif not float then
      if vneg == neg then
        mag = dadd(mag, vmag)
      elseif dcmp(mag, vmag) >= 0 then
        mag = dsub(mag, vmag)
      else
        neg, mag = vneg, dsub(vmag, mag)
      end
      if mag == "0" then neg = false end
    end
  end
  if float then
    local total = 0
    for i = 1, n do
      local v = values[i]
      total = total + (type(v) == "boolean" and (v and 1 or 0) or tonumber(v))
    end
    return float_text(total)
  end
  return (neg and "-" or "") .. mag
end

--- one value (a number, decimal string or boolean) as sample text
function P.number(v, unsigned)
  return P.sum({ v }, unsigned, 1)
end

-- ------------------------------------------------------------ layouts

local UNSIGNED64 = { u64 = true, be64 = true }

local function is_unsigned64(l)
  if not l then return false end
  if UNSIGNED64[l.kind] then return true end
  return l.kind == "bitfield" and l.signed == false and (l.bits or 0) >= 64
end

local NUMERIC = {
  u8 = true, u16 = true, u32 = true, u64 = true, i8 = true, i16 = true, i32 = true,
  i64 = true, be16 = true, be32 = true, be64 = true, f32 = true, f64 = true,
  bool = true, bitfield = true,
}

-- a field path given as text, "a.b", as the array of its names
local function split_path(path)
  local names = {}
  for name in path:gmatch("[^.]+") do names[#names + 1] = name end
  return names
end

-- the layout of the field at `names` ({ "a", "b" }) inside a struct layout, or nil
local function field_layout(l, names)
  for _, name in ipairs(names) do
    if not l or l.kind ~= "struct" then return nil end
    local found
    local function search(fields)
      for _, f in ipairs(fields) do
        if f.name == name then found = f return end
        if (f.name == nil or f.name == "") and f.kind == "struct" then search(f.fields) end
        if found then return end
      end
    end
    search(l.fields or {})
    l = found
  end
  return l
end

-- the value at `names` ({ "a", "b" }) inside a decoded struct, or nil
local function get_path(v, names)
  for _, name in ipairs(names) do
    if type(v) ~= "table" then return nil end
    v = v[name]
  end
  return v
end

-- the numeric leaves of a value layout, in field order:
-- { { names = { "a", "b" }, layout = l }, ... }
local function numeric_leaves(l, prefix, out)
  out = out or {}
  prefix = prefix or {}
  if l.kind == "struct" then
    for _, f in ipairs(l.fields or {}) do
      if f.name == nil or f.name == "" then
        numeric_leaves(f, prefix, out) -- anonymous member: its fields are the parent's
      else
        local names = { unpack(prefix) }
        names[#names + 1] = f.name
        numeric_leaves(f, names, out)
      end
    end
  elseif NUMERIC[l.kind] then
    out[#out + 1] = { names = prefix, layout = l }
  end
  return out
end

-- ------------------------------------------------------------ labels from keys

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", c:byte()) end))
end

-- a key (or part of one) as one label value
local function label_text(v, l)
  local t = type(v)
  if t == "string" then
    if l and l.kind == "raw" then return hex(v) end
    if l and NUMERIC[l.kind] then return P.number(v) or v end -- LuaJIT's int64 strings
    return v
  elseif t == "number" then
    if math_type and math_type(v) == "float" then return float_text(v) end
    return P.number(v, is_unsigned64(l)) or float_text(v)
  elseif t == "table" then
    local parts = {}
    if #v > 0 then -- an array
      local el = l and l.element
      for i = 1, #v do parts[i] = label_text(v[i], el) end
    else -- a struct inside an array: name=value, in name order
      local names = {}
      for k in pairs(v) do names[#names + 1] = k end
      table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
      for i, k in ipairs(names) do
        parts[i] = tostring(k) .. "=" .. label_text(v[k], field_layout(l, { k }))
      end
    end
    return concat(parts, ",")
  end
  return tostring(v)
end

-- labels { { name, text }, ... } of a key, by its layout
local function key_labels(key, l, prefix, out)
  if l and l.kind == "struct" and type(key) == "table" then
    for _, f in ipairs(l.fields or {}) do
      if f.name == nil or f.name == "" then
        key_labels(key, f, prefix, out)
      else
        key_labels(key[f.name], f, prefix and prefix .. "_" .. f.name or f.name, out)
      end
    end
  elseif key ~= nil then
    out[#out + 1] = { P.label_name(prefix or "key"), label_text(key, l) }
  end
  return out
end

--- the labels of a key by its layout (m:layout().key), as an array of
-- { name, text } in field order: one per field of a struct key (nested fields
-- joined with "_"), or { "key", text } for a scalar key
function P.key_labels(key, layout)
  return key_labels(key, layout, nil, {})
end

-- ------------------------------------------------------------ families

local TYPES = { counter = true, gauge = true, untyped = true, histogram = true }

-- nil when `typ` is a type a family can have, else why not
local function type_problem(typ)
  if typ == "summary" then
    -- its samples are quantiles a map does not hold
    return "type 'summary' is not supported (a map holds no quantiles; use histogram, "
      .. "counter, gauge or untyped)"
  elseif not TYPES[typ] then
    return "unknown type '" .. tostring(typ) .. "' (expected counter, gauge, untyped or histogram)"
  end
end

-- a bucket bound as the text of an `le` label: integers exactly, floats as
-- the format spells them
local function bound_text(v)
  if v == math.huge then return "+Inf" end
  if type(v) == "number" and not (math_type and math_type(v) == "float") then
    local text = P.number(v)
    if text then return text end
  end
  if type(v) == "number" then return float_text(v) end
  return P.number(v)
end
P.bound_text = bound_text

local Family = {}
Family.__index = Family

--- a metric family to fill by hand: prom.family{ name =, help =, type = }
-- then fam:add(labels, value [, unsigned]); labels is { name = value, ... }
-- or an array of { name, value } pairs (kept in that order)
function P.family(spec)
  if type(spec) ~= "table" or type(spec.name) ~= "string" then
    error("bad argument #1 to 'family' (table with a string 'name' expected)", 2)
  end
  if spec.name ~= P.metric_name(spec.name) then
    error("family: invalid metric name '" .. spec.name .. "' (expected [a-zA-Z_:][a-zA-Z0-9_:]*)", 2)
  end
  local typ = spec.type or "gauge"
  local problem = type_problem(typ)
  if problem then error("family: " .. problem, 2) end
  return setmetatable({ name = spec.name, help = spec.help or spec.name, type = typ,
    samples = {}, const_labels = spec.const_labels }, Family)
end

local function ordered_labels(labels)
  if labels == nil then return {} end
  if labels[1] ~= nil or next(labels) == nil then return labels end
  local out = {}
  for k, v in pairs(labels) do out[#out + 1] = { k, v } end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

--- adds a sample: value is a number, a decimal string, a boolean, or an
-- array of them (per-CPU values), summed exactly
function Family:add(labels, value, unsigned, n)
  if self.type == "histogram" then return self:add_histogram(labels, value, 2) end
  local text
  if type(value) == "table" then
    text = P.sum(value, unsigned, n)
  else
    text = P.number(value, unsigned)
  end
  if text == nil then
    error("family " .. self.name .. ": a number expected as the sample value, got " .. type(value), 2)
  end
  self.samples[#self.samples + 1] = { labels = ordered_labels(labels), value = text }
  return self
end

-- a < b for bucket bounds: numbers, or decimal integer strings (exact past
-- 2^53, where two bounds may be the same double)
local function bound_less(a, b)
  if type(a) == "number" and type(b) == "number" then return a < b end
  local x, y = tonumber(a), tonumber(b)
  if x ~= y then return x < y end
  local ta, tb = P.number(a), P.number(b)
  if ta and tb and not ta:find("^-") and not tb:find("^-") then return dcmp(ta, tb) < 0 end
  return false
end

--- adds one histogram to a family of type "histogram": h.buckets is an
-- array of { hi = upper bound (inclusive), count = n } in increasing hi (a
-- number, or a decimal integer string: exact past 2^53), count a bucket's
-- own count, not cumulative (numbers or decimal strings), h.sum
-- (optional) the sum of the values observed. luaebpf.histogram's
-- histograms are such tables. Rendered as cumulative _bucket{le=...}
-- samples ending with le="+Inf", _sum when h.sum is there, and _count.
function Family:add_histogram(labels, h, level)
  level = (level or 1) + 1
  if self.type ~= "histogram" then
    error("family " .. self.name .. ": add_histogram on a family of type '" .. self.type .. "'", level)
  end
  if type(h) ~= "table" or type(h.buckets) ~= "table" then
    error("family " .. self.name .. ": a histogram { buckets = { { hi =, count = }, ... } [, sum =] }"
      .. " expected, got " .. type(h), level)
  end
  local rows, cum, prev = {}, "0", nil
  for i, b in ipairs(h.buckets) do
    local hi = type(b) == "table" and b.hi
    local c = type(b) == "table" and P.number(b.count)
    if not ((type(hi) == "number" and hi == hi) or (type(hi) == "string" and P.number(hi)))
        or c == nil then
      error("family " .. self.name .. ": bucket " .. i .. ": { hi = <number or decimal integer>, "
        .. "count = <integer> } expected", level)
    end
    if prev and not bound_less(prev, hi) then
      error("family " .. self.name .. ": bucket " .. i .. ": bounds must increase ("
        .. bound_text(hi) .. " after " .. bound_text(prev) .. ")", level)
    end
    prev = hi
    cum = P.sum({ cum, c })
    rows[i] = { bound_text(hi), cum }
  end
  local sum
  if h.sum ~= nil then
    sum = P.number(h.sum) or (type(h.sum) == "number" and float_text(h.sum))
    if not sum then
      error("family " .. self.name .. ": the histogram's sum is not a number (" .. type(h.sum) .. ")", level)
    end
  end
  self.samples[#self.samples + 1] = { labels = ordered_labels(labels), buckets = rows,
    count = cum, sum = sum }
  return self
end

-- a sample's labels as text: constant labels first, then the sample's own,
-- names made valid and unique (a later duplicate gets _2, _3, ...); `le`,
-- when given, is the bucket bound, last, and its name is reserved
local function labels_text(labels, const, le)
  local parts, taken = {}, { le = le and true or nil }
  for _, set in ipairs({ ordered_labels(const), labels }) do
    for _, l in ipairs(set) do
      parts[#parts + 1] = unique_name(P.label_name(l[1]), taken) .. '="'
        .. P.escape_label_value(l[2]) .. '"'
    end
  end
  if le then parts[#parts + 1] = 'le="' .. le .. '"' end
  if #parts == 0 then return "" end
  return "{" .. concat(parts, ",") .. "}"
end

--- the family in the text format: HELP, TYPE, then one line per sample
function Family:render(out)
  out = out or {}
  out[#out + 1] = "# HELP " .. self.name .. " " .. P.escape_help(self.help) .. "\n"
  out[#out + 1] = "# TYPE " .. self.name .. " " .. self.type .. "\n"
  local name, const = self.name, self.const_labels
  for _, s in ipairs(self.samples) do
    if s.buckets then
      for _, b in ipairs(s.buckets) do
        if b[1] ~= "+Inf" then -- a bucket bounded by +Inf is the +Inf bucket below
          out[#out + 1] = name .. "_bucket" .. labels_text(s.labels, const, b[1]) .. " " .. b[2] .. "\n"
        end
      end
      out[#out + 1] = name .. "_bucket" .. labels_text(s.labels, const, "+Inf") .. " " .. s.count .. "\n"
      if s.sum then out[#out + 1] = name .. "_sum" .. labels_text(s.labels, const) .. " " .. s.sum .. "\n" end
      out[#out + 1] = name .. "_count" .. labels_text(s.labels, const) .. " " .. s.count .. "\n"
    else
      out[#out + 1] = name .. labels_text(s.labels, const) .. " " .. s.value .. "\n"
    end
  end
  return out
end

-- the sample names a family writes: a histogram's name_bucket, name_sum and
-- name_count besides its own name (which its HELP and TYPE lines hold)
local function sample_names(fam)
  if fam.type ~= "histogram" then return { fam.name } end
  return { fam.name, fam.name .. "_bucket", fam.name .. "_sum", fam.name .. "_count" }
end

--- several families as one exposition text; a name used twice is refused,
-- and so is a family named like another histogram family's samples (a
-- gauge "lat_count" beside a histogram "lat": the text format has no way
-- to tell them apart, and Prometheus refuses the scrape)
function P.render(families)
  local out, seen = {}, {}
  for _, fam in ipairs(families) do
    if seen[fam.name] == fam.name then error("render: metric family '" .. fam.name .. "' appears twice", 2) end
    for _, n in ipairs(sample_names(fam)) do
      local other = seen[n]
      if other then
        error(format("render: metric family '%s' and histogram family '%s' both write samples named '%s'",
          other == n and other or fam.name, other == n and fam.name or other, n), 2)
      end
    end
    for _, n in ipairs(sample_names(fam)) do seen[n] = fam.name end
    fam:render(out)
  end
  return concat(out)
end

-- ------------------------------------------------------------ from maps

local COLLECT_OPTS = { name = true, help = true, type = true, value = true, labels = true,
  const_labels = true, slice = true, yield = true, hist = true, step = true, sum = true,
  slot = true }
local HIST_OPTS = { hist = "kind", step = "step", sum = "sum", slot = "slot", slice = "slice",
  yield = "yield" }

--- the histogram family of what luaebpf.histogram read (histogram.read's
-- result): one histogram per label set. opts: name (default
-- "ebpf_map_<map name>"), help, const_labels.
function P.histogram(result, opts)
  opts = opts or {}
  if type(result) ~= "table" or type(result.histograms) ~= "table" then
    error("bad argument #1 to 'histogram' (the result of luaebpf.histogram.read expected)", 2)
  end
  local mapname = result.map and result.map.name or ""
  local fam = P.family{ type = "histogram",
    name = opts.name or P.metric_name("ebpf_map_" .. (mapname ~= "" and mapname
      or tostring(result.map and result.map.id or "histogram"))),
    help = opts.help or format("eBPF %s histogram of map '%s' (id %s)", result.kind, mapname,
      tostring(result.map and result.map.id)),
    const_labels = opts.const_labels }
  local names = result.label_names or {}
  for _, h in ipairs(result.histograms) do
    local labels = {}
    for i, n in ipairs(names) do labels[i] = { n, h.labels[n] } end
    fam:add_histogram(labels, h, 2)
  end
  return fam
end

--- the families of a map's entries (an array: one family, or, for a struct
-- value without opts.value, one per numeric field, named name_field).
-- opts: name (default "ebpf_map_<map name>"), help, type ("gauge"),
-- value (nil, a field path "a.b", or function(value, key) -> number),
-- labels (nil: from the key; or function(key, value) -> labels),
-- const_labels ({ name = value }), slice (read with m:read_batch in slices
-- of this many entries) and yield (a function called between slices).
function P.collect(m, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'collect' (table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if not COLLECT_OPTS[k] then
      error("bad argument #2 to 'collect' (unknown option '" .. tostring(k) .. "')", 2)
    end
  end
  if opts.type ~= nil and type_problem(opts.type) then
    error("bad argument #2 to 'collect' (" .. type_problem(opts.type) .. ")", 2)
  end
  if opts.type == "histogram" or opts.hist ~= nil then
    if opts.type ~= nil and opts.type ~= "histogram" then
      error("bad argument #2 to 'collect' (hist is for type 'histogram', not '" .. opts.type .. "')", 2)
    end
    if opts.value ~= nil or opts.labels ~= nil then
      error("bad argument #2 to 'collect' (a histogram takes its labels from the key and its "
        .. "counts from the layout: value and labels do not apply)", 2)
    end
    local hopts = {}
    for k, v in pairs(HIST_OPTS) do hopts[v] = opts[k] end
    local ok, res = pcall(require("luaebpf.histogram").read, m, hopts)
    if not ok then error(res, 2) end
    return { P.histogram(res, opts) }
  end
  for _, k in ipairs({ "hist", "step", "sum", "slot" }) do
    if opts[k] ~= nil then
      error("bad argument #2 to 'collect' (" .. k .. " is for type 'histogram')", 2)
    end
  end
  -- before 5.3, a u64 beyond 2^53 raises unless read as a decimal string; the
  -- values within 2^53 stay numbers, so this changes no other read
  if not math_type then m:codec{ int64 = "string" } end
  local info = m:info()
  local layout = m:layout()
  local base = opts.name or P.metric_name("ebpf_map_" .. (info.name ~= "" and info.name or tostring(info.id)))
  local help = opts.help or format("eBPF %s map '%s' (id %d)", info.type, info.name, info.id)
  local percpu = info.percpu

  -- what each family takes from a value: { family, pick(value) -> v, unsigned }
  local outs = {}
  local vl = layout.value
  local function new(name, h, pick, unsigned)
    outs[#outs + 1] = { fam = P.family{ name = name, help = h, type = opts.type,
      const_labels = opts.const_labels }, pick = pick, unsigned = unsigned }
  end
  if type(opts.value) == "function" then
    new(base, help, opts.value, false)
  elseif type(opts.value) == "string" then
    -- the field itself when the struct has one of that name ("a.b" included),
    -- else the nested path a -> b
    local names = { opts.value }
    if not field_layout(vl, names) then names = split_path(opts.value) end
    new(base, help, function(v) return get_path(v, names) end, is_unsigned64(field_layout(vl, names)))
  elseif opts.value ~= nil then
    error("bad argument #2 to 'collect' (value: a field name or a function expected, got "
      .. type(opts.value) .. ")", 2)
  elseif vl.kind == "struct" then
    local taken = {} -- family names, made unique in field order
    for _, leaf in ipairs(numeric_leaves(vl)) do
      local names = leaf.names
      new(unique_name(base .. "_" .. P.metric_name(concat(names, "_")), taken),
        help .. ", field " .. concat(names, "."),
        function(v) return get_path(v, names) end, is_unsigned64(leaf.layout))
    end
  elseif NUMERIC[vl.kind] then
    new(base, help, function(v) return v end, is_unsigned64(vl))
  else -- text such as a decoder's ("errno", "ipv4"), a string, raw bytes: no sample value
    error("collect: the map's values read as " .. tostring(vl.kind)
      .. ", not numbers; give opts.value (a field name or a function returning a number)", 2)
  end

  local kl = layout.key
  local function add(keys, values)
    for i = 1, #keys do
      local key, value = keys[i], values[i]
      local labels = opts.labels and opts.labels(key, value) or key_labels(key, kl, nil, {})
      for _, o in ipairs(outs) do
        if percpu then
          local v, n = {}, #value
          for c = 1, n do v[c] = o.pick(value[c], key) end
          o.fam:add(labels, v, o.unsigned, n)
        else
          o.fam:add(labels, o.pick(value, key), o.unsigned)
        end
      end
    end
  end

  if opts.slice then
    local cursor, keys, values
    repeat
      keys, values, cursor = m:read_batch(cursor, opts.slice)
      add(keys, values)
      if cursor and opts.yield then opts.yield() end
    until cursor == nil
  else
    add(m:dump())
  end
  local fams = {}
  for i, o in ipairs(outs) do fams[i] = o.fam end
  return fams
end

--- the exposition text of one map: prom.render(prom.collect(m, opts))
function P.text(m, opts)
  return P.render(P.collect(m, opts))
end

return P

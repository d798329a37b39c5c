-- luaebpf.histogram: histograms kept in maps, read into one neutral shape
-- that feeds format.log2_hist (text), prometheus.histogram (a histogram
-- family) and JSON (the shape is a plain table cjson encodes).
--
--   local hist = require "luaebpf.histogram"
--   local r = hist.read(m)                      -- m: a map the rule below recognises
--   io.write(hist.text(r, "nsecs"))
--   io.write(prom.render{ prom.histogram(r, { name = "syscall_latency_ns" }) })
--
-- Layouts (what m:layout() says, BTF or codecs):
--   "array"        key: an integer (the slot), value: an integer count:
--                  array, percpu_array, or a hash keyed by slot
--   "slot_key"     key: a struct with an integer field `slot`, value: an
--                  integer count; the key's other fields are labels, one
--                  histogram per label set
--   "slots_value"  value: a struct with an array of integers `slots`, and
--                  optionally a sum (a numeric field `sum`, `sum_ns`,
--                  `total` or `total_ns`, or opts.sum); one histogram per
--                  entry, labelled by the key
-- Per-CPU maps: the CPUs' counts (and sums) are added.
-- Which maps are histograms without being told (the rule of DESIGN.md, "The
-- live page"): an array or percpu_array of integer counts whose name ends in
-- "hist" or "slots", or any map whose value struct holds a `slots` array.
-- Given opts.kind ("log2" or "linear"), any of the three layouts is taken.
-- Shared by every Lua version: 5.1 syntax.
local P = require "luaebpf.prometheus"

local Hm = {}

local format, type, tostring, tonumber = string.format, type, tostring, tonumber
local math_type = math.type
local TWO53 = 9007199254740992

local INTEGER = { u8 = true, u16 = true, u32 = true, u64 = true, i8 = true, i16 = true,
  i32 = true, i64 = true, be16 = true, be32 = true, be64 = true }
local NUMERIC = { f32 = true, f64 = true }
for k in pairs(INTEGER) do NUMERIC[k] = true end
local UNSIGNED64 = { u64 = true, be64 = true }
local SUM_FIELDS = { "sum", "sum_ns", "total", "total_ns" }
local ARRAYS = { array = true, percpu_array = true }

-- slot limits: a log2 slot of a u64 is at most 63 (some programs add one);
-- a linear histogram of more buckets than this is a mistake, not a histogram
local MAX_LOG2, MAX_LINEAR = 127, 65536

-- a direct field of a struct layout (anonymous members' fields included)
local function field(l, name)
  if not l or l.kind ~= "struct" then return nil end
  for _, f in ipairs(l.fields or {}) do
    if f.name == name then return f end
    if (f.name == nil or f.name == "") and f.kind == "struct" then
      local found = field(f, name)
      if found then return found end
    end
  end
end

local function integer_kind(l)
  return l and (INTEGER[l.kind] or (l.kind == "bitfield")) or false
end

local function describe(l)
  if not l then return "?" end
  if l.kind == "struct" then
    local names = {}
    for _, f in ipairs(l.fields or {}) do names[#names + 1] = f.name or "?" end
    return "struct {" .. table.concat(names, ", ") .. "}"
  elseif l.kind == "array" then
    return describe(l.element) .. "[" .. tostring(l.count) .. "]"
  elseif l.kind == "char" then
    return "char[" .. tostring(l.size) .. "]"
  end
  return l.type or l.kind
end

local EXPECTED = "an array of integer counts keyed by slot, a hash keyed by a struct with an "
  .. "integer 'slot' field, or a value struct holding an integer array 'slots'"

-- what the layout makes of the map: a plan, or nil and why not
local function plan_of(info, layout, opts)
  local kl, vl = layout.key, layout.value
  if vl.kind == "struct" then
    local slots = field(vl, "slots")
    if slots and slots.kind == "array" and integer_kind(slots.element) then
      local p = { layout = "slots_value", nslots = slots.count, unsigned = UNSIGNED64[slots.element.kind] }
      if opts.sum ~= nil then
        local f = field(vl, opts.sum)
        if not (f and NUMERIC[f.kind]) then
          return nil, "the value struct has no numeric field '" .. tostring(opts.sum) .. "' (opts.sum)"
        end
        p.sum = opts.sum
      else
        for _, name in ipairs(SUM_FIELDS) do
          local f = field(vl, name)
          if f and NUMERIC[f.kind] then p.sum = name break end
        end
      end
      if p.sum then p.sum_unsigned = UNSIGNED64[field(vl, p.sum).kind] end
      return p
    end
  end
  if integer_kind(vl) then
    local slot = opts.slot or "slot"
    if kl.kind == "struct" then
      local f = field(kl, slot)
      if f and integer_kind(f) then
        return { layout = "slot_key", slot = slot, unsigned = UNSIGNED64[vl.kind] }
      end
    elseif integer_kind(kl) then
      return { layout = "array", unsigned = UNSIGNED64[vl.kind] }
    end
  end
  return nil, format("not a histogram: expected %s; got %s %s -> %s", EXPECTED, info.type,
    describe(kl), describe(vl))
end

local function where(info)
  return format("map '%s' (id %d)", info.name, info.id)
end

--- detect(m) -> kind or nil, why: "log2" when the map is a histogram by the
-- rule (an array or percpu_array of integer counts named *hist or *slots, or
-- a value struct holding a `slots` array), else nil and the reason
function Hm.detect(m)
  local info, layout = m:info(), m:layout()
  local p, why = plan_of(info, layout, {})
  if not p then return nil, why end
  if p.layout == "slots_value" then return "log2" end
  if p.layout == "array" and ARRAYS[info.type] then
    local name = info.name:lower()
    if name:sub(-4) == "hist" or name:sub(-5) == "slots" then return "log2" end
    return nil, "an array of counts, but its name '" .. info.name
      .. "' ends in neither 'hist' nor 'slots' (mark it, or give opts.kind)"
  end
  return nil, "a hash keyed by slot: a histogram only when asked (give opts.kind)"
end

-- an exact count as a Lua value: a number within `limit` that is exactly
-- `text`, else its decimal string (a double has no 2^53 + 1: tonumber gives
-- 2^53 for it, which must not pass for the count)
local function value_of(text, limit)
  local n = tonumber(text)
  if not n or n > limit or n < -limit then return text end
  if (math_type and math_type(n) == "integer") or (n > -TWO53 and n < TWO53) then return n end
  if format("%.0f", n) == text then return n end
  return text
end

local function int(v)
  if math_type and v == v and v > -TWO53 and v < TWO53 then return math.tointeger(v) or v end
  return v
end

-- decimal text of non-negative integers: text * k (k a small integer),
-- text - 1 (text > 0)
local function dmul(text, k)
  local out, carry = {}, 0
  for i = #text, 1, -1 do
    local d = (text:byte(i) - 48) * k + carry
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
  end
  while carry > 0 do
    out[#out + 1] = string.char(48 + carry % 10)
    carry = math.floor(carry / 10)
  end
  local r = string.reverse(table.concat(out)):gsub("^0+(%d)", "%1")
  return r
end

local function dminus1(text)
  local k = #text
  while text:sub(k, k) == "0" do k = k - 1 end
  local r = (text:sub(1, k - 1) .. string.char(text:byte(k) - 1) .. string.rep("9", #text - k))
    :gsub("^0+(%d)", "%1")
  return r
end

local POW2 = { [0] = "1" } -- 2^i as decimal text
local function pow2(i)
  for j = #POW2 + 1, i do POW2[j] = dmul(POW2[j - 1], 2) end
  return POW2[i]
end

-- [lo, hi] of slot i as exact decimal text: log2 slot i holds [2^i, 2^(i+1) - 1]
-- and slot 0 holds 0 and 1 (floor(log2(v)) as hist.bpf.c's log2l computes
-- it: 0 for both 0 and 1); linear slot i holds [i*step, (i+1)*step - 1]
local function bound_texts(kind, step, i)
  if kind == "linear" then
    local st = format("%.0f", step)
    return dmul(st, i), dminus1(dmul(st, i + 1))
  end
  if i == 0 then return "0", "1" end
  return pow2(i), dminus1(pow2(i + 1))
end

--- bounds(kind, step, i) -> lo, hi: numbers up to `limit` (default 2^53),
-- exact decimal strings beyond
local function bounds(kind, step, i, limit)
  local lo, hi = bound_texts(kind, step, i)
  return value_of(lo, limit or TWO53), value_of(hi, limit or TWO53)
end
Hm.bounds = bounds

local READ_OPTS = { kind = true, step = true, sum = true, slot = true, slice = true, yield = true,
  max_number = true }

-- the entries of the map: calls add(key, value) for each
local function walk(m, opts, add)
  if opts.slice then
    local cursor, keys, values
    repeat
      keys, values, cursor = m:read_batch(cursor, opts.slice)
      for i = 1, #keys do add(keys[i], values[i]) end
      if cursor and opts.yield then opts.yield() end
    until cursor == nil
  else
    local keys, values = m:dump()
    for i = 1, #keys do add(keys[i], values[i]) end
  end
end

-- the slot of an entry, checked
local function slot_of(s, kind, what)
  local n = tonumber(s)
  local max = kind == "log2" and MAX_LOG2 or MAX_LINEAR - 1
  if not n or n % 1 ~= 0 or n < 0 or n > max then
    error(format("histogram: %s: slot %s is out of range (0..%d for a %s histogram)", what,
      tostring(s), max, kind), 0)
  end
  return n
end

--- read(m [, opts]) -> result: the histograms the map holds.
-- opts.kind: "log2" or "linear": take the map as that histogram when its
--   layout is one of the three (without it, the map must pass detect());
-- opts.step: the width of a linear bucket (an integer >= 1; default 1);
-- opts.sum: the field of a "slots_value" struct that holds the sum;
-- opts.slot: the key field holding the slot ("slot");
-- opts.slice, opts.yield: read with read_batch in slices, calling yield()
--   between them (as prometheus.collect does);
-- opts.max_number: counts, sums and bounds up to this magnitude are numbers,
--   larger ones decimal strings (default 2^53: exact in every Lua and JSON reader).
-- The result:
--   { map = { name =, id =, type = }, kind = "log2"|"linear", step = (linear),
--     layout = "array"|"slot_key"|"slots_value",
--     label_names = { ... },           -- label names, in key field order
--     histograms = { {
--       labels = { name = text, ... },   -- from the key ({} for "array")
--       buckets = { { slot =, lo =, hi =, count = }, ... }, -- slot 0 upwards;
--                                        -- bounds past max_number: decimal strings
--       count = n,                       -- all buckets
--       sum = n,                         -- only when the map holds one
--     }, ... } }
-- On LuaJIT (and 5.1) it sets m:codec{ int64 = "string" }, as
-- prometheus.collect does, so that u64 counts beyond 2^53 stay exact.
function Hm.read(m, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'read' (table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if not READ_OPTS[k] then error("bad argument #2 to 'read' (unknown option '" .. tostring(k) .. "')", 2) end
  end
  local kind, step = opts.kind, 1
  if kind ~= nil and kind ~= "log2" and kind ~= "linear" then
    error("bad argument #2 to 'read' (kind: 'log2' or 'linear' expected, got " .. tostring(kind) .. ")", 2)
  end
  if opts.step ~= nil then
    if kind ~= "linear" then error("bad argument #2 to 'read' (step is for kind 'linear')", 2) end
    step = opts.step
    if type(step) ~= "number" or step % 1 ~= 0 or step < 1 or step > TWO53 then
      error("bad argument #2 to 'read' (step: an integer >= 1 expected, got " .. tostring(step) .. ")", 2)
    end
    step = int(step)
  end
  local limit = opts.max_number or TWO53
  local info, layout = m:info(), m:layout()
  local p, why = plan_of(info, layout, opts)
  if not p then error("histogram: " .. where(info) .. ": " .. why, 2) end
  if not kind then
    local k, why2 = Hm.detect(m)
    if not k then error("histogram: " .. where(info) .. ": " .. why2, 2) end
    kind = k
  end
  if not math_type then m:codec{ int64 = "string" } end
  local percpu = info.percpu

  local kl = layout.key
  local label_kl = kl -- the key's layout without the slot field
  if p.layout == "slot_key" then
    label_kl = { kind = "struct", fields = {} }
    for _, f in ipairs(kl.fields or {}) do
      if f.name ~= p.slot then label_kl.fields[#label_kl.fields + 1] = f end
    end
  end

  local groups, order, label_names, maxslot = {}, {}, nil, -1
  local function group(key)
    local labels = {}
    if p.layout ~= "array" then labels = P.key_labels(key, label_kl) end
    if not label_names then
      label_names = {}
      for i, l in ipairs(labels) do label_names[i] = l[1] end
    end
    local id = {}
    for i, l in ipairs(labels) do id[i] = l[1] .. "=" .. l[2] end
    id = table.concat(id, "\0")
    -- one histogram per label set: entries whose keys give the same labels
    -- (a char array differing only after its NUL) are added together, as
    -- two series of one label set would make Prometheus refuse the scrape
    local g = groups[id]
    if not g then
      g = { labels = labels, counts = {} }
      groups[id] = g
      order[#order + 1] = g
    end
    return g
  end
  local what = where(info)

  if p.layout == "slots_value" then
    maxslot = (p.nslots or 0) - 1
    walk(m, opts, function(key, value)
      local g = group(key)
      local per = percpu and value or { value }
      for i = 0, maxslot do
        local cs = {}
        for c = 1, #per do cs[c] = per[c].slots[i + 1] end
        local c = P.sum(cs, p.unsigned, #per)
        g.counts[i] = g.counts[i] and P.sum({ g.counts[i], c }) or c
      end
      if p.sum then
        local ss = {}
        for c = 1, #per do ss[c] = per[c][p.sum] end
        local sum = P.sum(ss, p.sum_unsigned, #per)
        g.sum = g.sum and P.sum({ g.sum, sum }) or sum
      end
    end)
  else
    walk(m, opts, function(key, value)
      local s = slot_of(p.layout == "array" and key or key[p.slot], kind, what)
      local g = group(key)
      local text = percpu and P.sum(value, p.unsigned) or P.number(value, p.unsigned)
      g.counts[s] = g.counts[s] and P.sum({ g.counts[s], text }) or text
      if s > maxslot then maxslot = s end
    end)
    if p.layout == "array" and ARRAYS[info.type] then maxslot = info.max_entries - 1 end
    if p.layout == "array" and #order == 0 then group(nil) end -- an empty hash: one empty histogram
    slot_of(maxslot < 0 and 0 or maxslot, kind, what)
  end

  -- label sets in order: numbers by value, text by text
  local function less(a, b)
    for i = 1, math.max(#a.labels, #b.labels) do
      local x, y = a.labels[i] and a.labels[i][2], b.labels[i] and b.labels[i][2]
      if x ~= y then
        if x == nil or y == nil then return x == nil end
        local nx, ny = tonumber(x), tonumber(y)
        if nx and ny and nx ~= ny then return nx < ny end
        return tostring(x) < tostring(y)
      end
    end
    return false
  end
  table.sort(order, less)

  local result = { map = { name = info.name, id = info.id, type = info.type }, kind = kind,
    step = kind == "linear" and step or nil, layout = p.layout, label_names = label_names or {},
    histograms = {} }
  for _, g in ipairs(order) do
    local buckets, texts = {}, {}
    for i = 0, maxslot do
      local lo, hi = bounds(kind, step, i, limit)
      local c = g.counts[i] or "0"
      texts[#texts + 1] = c
      buckets[#buckets + 1] = { slot = i, lo = lo, hi = hi, count = value_of(c, limit) }
    end
    local labels = {}
    for _, l in ipairs(g.labels) do labels[l[1]] = l[2] end
    result.histograms[#result.histograms + 1] = { labels = labels, buckets = buckets,
      count = value_of(P.sum(texts) or "0", limit), sum = g.sum and value_of(g.sum, limit) }
  end
  return result
end

--- text(result [, label]) -> string: every histogram of a read() result as
-- format.log2_hist bars, each under a line naming its labels (when it has any)
function Hm.text(result, label)
  local F = require "luaebpf.format"
  local out = {}
  for _, h in ipairs(result.histograms) do
    local parts = {}
    for _, n in ipairs(result.label_names or {}) do parts[#parts + 1] = n .. " = " .. tostring(h.labels[n]) end
    if #parts > 0 then out[#out + 1] = "\n" .. table.concat(parts, ", ") .. "\n" end
    out[#out + 1] = F.log2_hist(h, label)
  end
  return table.concat(out)
end

return Hm

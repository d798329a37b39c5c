-- examples/openresty/pageserver.lua: the live page of the OpenResty example.
-- nginx.conf next to this file shows the configuration; README.md,
-- "OpenResty" ("The live page"), explains it.
--
--   init_by_lua_block { require("mapserver").init{...}; require("pageserver").init() }
--   location = /       { content_by_lua_block { require("pageserver").page() } }
--   location ~ ^/page/(?<file>[^/]+)$ { content_by_lua_block { require("pageserver").file(ngx.var.file) } }
--   location = /page/views { content_by_lua_block { require("pageserver").views() } }
--   location ~ ^/page/hist/(?<map>[^/]+)$ { content_by_lua_block { require("pageserver").hist(ngx.var.map) } }
--
-- The page (page/index.html, page.css, page.js) is read once by init(), in the
-- master, and served from memory: the workers, running as nobody, need no
-- access to the checkout. It is self-contained (no external resource) and
-- reads the example's own endpoints: GET /maps (the list), GET /maps/<ref>
-- (the entries, every second), GET /events and /events/<name> (the tail), and
-- GET /page/views and GET /page/hist/<ref>, which this module answers: for
-- every served map, whether and how the page draws it as a histogram, and
-- the histograms of one map with their buckets' bounds (every second).
--
-- The histogram rule (DESIGN.md, "The live page"): a map is a histogram when
-- the served list marks it (`/sys/fs/bpf/lat,hist=log2`, or hist=linear), or
-- by its layout: an array (plain or per-CPU) of integer counts whose name
-- (kernel name or pin file name) ends in "hist" or "slots", whose entries are
-- the buckets (key i: bucket i); or a map whose value is a struct holding an
-- integer array called "slots", where each entry is one histogram. A log2
-- bucket i holds the values in [2^i, 2^(i+1) - 1] (bucket 0: 0 and 1), as a
-- BPF program computes it with log2(v) and luaebpf.format.log2_hist prints it.
local mapserver = require "mapserver"
local ebpf = require "luaebpf"
local prom = require "luaebpf.prometheus"

local M = {}

local concat, format = table.concat, string.format
local ngx = ngx
local encode = mapserver.encode

-- name -> { body =, type = }, filled by init()
local files = {}
local FILES = {
  ["index.html"] = "text/html; charset=utf-8",
  ["page.css"] = "text/css; charset=utf-8",
  ["page.js"] = "text/javascript; charset=utf-8",
}

local TWO53 = 9007199254740992
local SLICE, PAUSE = 1000, 0.001 -- entries per read_batch slice, seconds slept between slices

local INTEGER = { u8 = 1, u16 = 1, u32 = 1, u64 = 1, i8 = 1, i16 = 1, i32 = 1, i64 = 1,
  be16 = 1, be32 = 1, be64 = 1 }
local ARRAYS = { array = true, percpu_array = true }

--- in init_by_lua*, after mapserver.init: reads the page's files.
-- c.dir: the directory of index.html, page.css and page.js (default: page/
-- next to this file, found through package.path).
function M.init(c)
  c = c or {}
  local dir = c.dir
  if not dir then
    local me = package.searchpath and package.searchpath("pageserver", package.path)
    if not me then error("pageserver: cannot find pageserver.lua in package.path; give init{ dir = }", 0) end
    dir = me:match("^(.*)/[^/]*$") .. "/page"
  end
  for name, ctype in pairs(FILES) do
    local f, err = io.open(dir .. "/" .. name, "rb")
    if not f then error("pageserver: cannot read the page: " .. err, 0) end
    files[name] = { body = f:read("*a"), type = ctype }
    f:close()
  end
end

local function serve(name)
  local f = files[name]
  if not f then
    ngx.status = 404
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.say("pageserver: no page file '", name, "'")
    return
  end
  ngx.header["Content-Type"] = f.type
  ngx.header["Cache-Control"] = "no-cache"
  -- the page loads nothing from elsewhere, and says so to the browser
  ngx.header["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; style-src 'self'"
  ngx.print(f.body)
end

--- GET /: the page (GET /?map=<name or id> opens it on that map: page.js reads it)
function M.page() return serve("index.html") end

--- GET /page/<file>: its stylesheet and script
function M.file(name) return serve(name) end

-- ------------------------------------------------------------ histograms

local function ends_hist(name)
  name = (name or ""):lower()
  return name:sub(-4) == "hist" or name:sub(-5) == "slots"
end

-- the "slots" field of a struct layout when it is an array of integers
local function slots_field(l)
  if not l or l.kind ~= "struct" then return nil end
  for _, f in ipairs(l.fields or {}) do
    if f.name == "slots" and f.kind == "array" and f.element and INTEGER[f.element.kind] then
      return f
    end
  end
end

--- how the page draws a served map as a histogram, or nil: { scale = "log2"
-- | "linear", by = "list" | "layout", from = "keys" | "slots" }. e is a
-- served entry of mapserver (m, info, layout, ref, path; hist: the served
-- list's mark, "log2", "linear" or "none", when mapserver keeps it).
function M.histogram(e)
  local info, layout = e.info, e.layout or {}
  local value = layout.value
  local slots = slots_field(value)
  local counts = ARRAYS[info.type] and value and INTEGER[value.kind] ~= nil
  local mark = e.hist
  if mark == "none" then return nil end
  if mark then
    -- marked: its entries are the buckets, or its values hold them
    return { scale = mark, by = "list", from = slots and "slots" or "keys" }
  end
  if slots then return { scale = "log2", by = "layout", from = "slots" } end
  local pin = e.path and e.path:match("([^/]+)$")
  if counts and (ends_hist(info.name) or ends_hist(pin)) then
    return { scale = "log2", by = "layout", from = "keys" }
  end
  return nil
end

-- ------------------------------------------------------------ GET /page/hist/<ref>

-- 2^i as exact decimal text
local function pow2(i)
  if i <= 52 then return format("%.0f", 2 ^ i) end
  local digits = format("%.0f", 2 ^ 52)
  for _ = 53, i do
    local out, carry = {}, 0
    for k = #digits, 1, -1 do
      local d = (digits:byte(k) - 48) * 2 + carry
      out[#out + 1] = string.char(48 + d % 10)
      carry = d >= 10 and 1 or 0
    end
    if carry > 0 then out[#out + 1] = "1" end
    digits = string.reverse(concat(out))
  end
  return digits
end

-- decimal text minus one (text > 0)
local function minus1(t)
  local k = #t
  while t:sub(k, k) == "0" do k = k - 1 end
  local r = t:sub(1, k - 1) .. string.char(t:byte(k) - 1) .. string.rep("9", #t - k)
  return (r:gsub("^0+(%d)", "%1"))
end

-- a count or bound as JSON: a number within 2^53, else a decimal string
local function jcount(text)
  local n = tonumber(text)
  if n and n <= TWO53 and n >= -TWO53 then return text end
  return '"' .. text .. '"'
end

-- [lo, hi] of bucket i as decimal text: log2 bucket i holds [2^i, 2^(i+1) - 1]
-- (bucket 0: 0 and 1); linear bucket i holds [i*step, (i+1)*step - 1]
local function bounds(scale, step, i)
  if scale == "linear" then return format("%.0f", i * step), format("%.0f", (i + 1) * step - 1) end
  if i == 0 then return "0", "1" end
  return pow2(i), minus1(pow2(i + 1))
end
M.bounds = bounds

-- a key as the labels of its histogram: { name = text } by struct field, or { key = text }
local function key_labels(key)
  local out = {}
  if type(key) == "table" then
    local names = {}
    for k in pairs(key) do names[#names + 1] = tostring(k) end
    table.sort(names)
    for _, k in ipairs(names) do
      local v = key[k]
      out[#out + 1] = encode(k) .. ":" .. encode(type(v) == "table" and encode(v) or tostring(v))
    end
  else
    out[1] = '"key":' .. encode(tostring(key))
  end
  return "{" .. concat(out, ",") .. "}"
end

--- the histograms of a served map as JSON, in the shape of
-- luaebpf.histogram's read(): { kind, step, layout = "array" | "slots_value",
-- histograms = [ { labels, buckets = [ { slot, lo, hi, count } ], count } ] };
-- counts summed over CPUs exactly (decimal strings past 2^53)
function M.read_hist(e, h)
  local m, info = e.m, e.info
  local percpu = info.percpu
  local step = e.step or 1
  local value = e.layout and e.layout.value
  local slots = slots_field(value)
  local unsigned = (slots and slots.element.kind or value and value.kind) == "u64"
  local groups = {} -- { labels = json, counts = { [slot] = text }, n = slots }
  local array = { labels = "{}", counts = {}, n = 0 }
  local cursor, keys, values
  repeat
    keys, values, cursor = m:read_batch(cursor, SLICE)
    for i = 1, #keys do
      local k, v = keys[i], values[i]
      if h.from == "slots" then
        local per = percpu and v or { v }
        local g = { labels = key_labels(k), counts = {}, n = slots and slots.count or 0 }
        for s = 1, g.n do
          local cs = {}
          for c = 1, #per do cs[c] = per[c].slots and per[c].slots[s] or 0 end
          g.counts[s - 1] = prom.sum(cs, unsigned, #per)
        end
        groups[#groups + 1] = g
      else
        local s = tonumber(k)
        if s and s % 1 == 0 and s >= 0 and s < 65536 then
          array.counts[s] = percpu and prom.sum(v, unsigned) or prom.number(v, unsigned)
          if s + 1 > array.n then array.n = s + 1 end
        end
      end
    end
    if cursor then ngx.sleep(PAUSE) end
  until cursor == nil
  if h.from ~= "slots" then
    if ARRAYS[info.type] then array.n = info.max_entries end
    groups[1] = array
  end
  local hs = {}
  for gi, g in ipairs(groups) do
    local buckets, texts = {}, {}
    for s = 0, g.n - 1 do
      local c = g.counts[s] or "0"
      texts[#texts + 1] = c
      local lo, hi = bounds(h.scale, step, s)
      buckets[#buckets + 1] = format('{"slot":%d,"lo":%s,"hi":%s,"count":%s}', s, jcount(lo),
        jcount(hi), jcount(c))
    end
    hs[gi] = format('{"labels":%s,"buckets":[%s],"count":%s}', g.labels, concat(buckets, ","),
      jcount(prom.sum(texts) or "0"))
  end
  return format('{"map":{"name":%s,"id":%d,"type":%s},"kind":%s,"step":%s,"layout":%s,"histograms":[%s]}\n',
    encode(info.name or ""), info.id, encode(info.type or ""), encode(h.scale),
    h.scale == "linear" and tostring(step) or "null", encode(h.from == "slots" and "slots_value" or "array"),
    concat(hs, ",\n"))
end

-- the served entry a name, id or pin file name means (nil, status, reason when none or several)
local function served_entry(ref)
  local found = {}
  for _, e in ipairs(mapserver.served) do
    if tostring(e.info.id) == ref or e.info.name == ref or (e.path and e.path:match("([^/]+)$") == ref) then
      found[#found + 1] = e
    end
  end
  if #found == 1 then return found[1] end
  if #found == 0 then return nil, 404, "pageserver: no map '" .. ref .. "' is served here" end
  return nil, 409, "pageserver: " .. #found .. " served maps are called '" .. ref .. "': ask by id"
end

local function fail(status, reason)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.say(reason)
end

--- GET /page/hist/<name or id>: the histograms of a served map (M.read_hist);
-- 404 when it is not served, 400 when it is not a histogram
function M.hist(ref)
  local e, status, reason = served_entry(ref)
  if not e then return fail(status, reason) end
  local h = M.histogram(e)
  if not h then return fail(400, "pageserver: map '" .. ref .. "' is not a histogram") end
  local ok, body = pcall(M.read_hist, e, h)
  if not ok then
    local class = type(body) == "table" and body.class
    return fail(class == "permission" and 403 or class == "missing" and 404 or 500,
      "pageserver: " .. tostring(body):gsub("%s*\n%s*", " "))
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.print(body)
end

-- ------------------------------------------------------------ GET /page/views

--- GET /page/views: { ncpus =, maps = [ { id, name, ref, path, type, percpu,
-- key, value (layout kinds), hist = {scale, by, from} | null } ] } for
-- every served map, in the served order
function M.views()
  local parts = {}
  for i, e in ipairs(mapserver.served) do
    local h = M.histogram(e)
    local l = e.layout or {}
    parts[i] = format('{"id":%d,"name":%s,"ref":%s,"path":%s,"type":%s,"percpu":%s,'
      .. '"key":%s,"value":%s,"hist":%s}',
      e.info.id, encode(e.info.name or ""), encode(e.ref or ""), e.path and encode(e.path) or "null",
      encode(e.info.type or ""), e.info.percpu and "true" or "false",
      encode(l.key and l.key.kind or ""), encode(l.value and l.value.kind or ""),
      h and format('{"scale":%s,"by":%s,"from":%s}', encode(h.scale), encode(h.by), encode(h.from))
        or "null")
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.print('{"ncpus":', ebpf.ncpus(), ',"maps":[', concat(parts, ",\n"), "]}\n")
end

return M

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
-- Which maps are histograms, and how they read, is mapserver's and
-- luaebpf.histogram's (the rule of DESIGN.md, "The live page"): a map the
-- served list marks (`/sys/fs/bpf/lat,hist=log2`, hist=linear with step=N;
-- hist=none: not one), else an array or percpu_array of integer counts whose
-- name ends in "hist" or "slots", or a map whose value struct holds an
-- integer array `slots` (one histogram per entry). A log2 bucket i holds the
-- values in [2^i, 2^(i+1) - 1] (bucket 0: 0 and 1).
local mapserver = require "mapserver"
local ebpf = require "luaebpf"
local histogram = require "luaebpf.histogram"
local util = require "serverutil"

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
  if not f then return util.fail(404, "pageserver: no page file '" .. name .. "'") end
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

--- how the page draws a served map (a mapserver entry: m, info, layout,
-- hist = "log2" | "linear" | nil, step) as a histogram, or nil: { scale =
-- e.hist, by = "layout" (luaebpf.histogram.detect takes it for one) | "list"
-- (only the served list's mark does) }. Cached in the entry.
function M.histogram(e)
  if not e.hist then return nil end
  if e.page_hist == nil then
    local ok, kind = pcall(histogram.detect, e.m)
    e.page_hist = { scale = e.hist, by = (ok and kind == e.hist) and "layout" or "list" }
  end
  return e.page_hist
end

-- ------------------------------------------------------------ GET /page/hist/<ref>

-- a count or bound as JSON: a number below 2^53 in magnitude, else a decimal
-- string (a double has no 2^53 + 1: tonumber gives 2^53 for it)
local function jcount(text)
  local n = tonumber(text)
  if n and n < TWO53 and n > -TWO53 then return text end
  return '"' .. text .. '"'
end

-- a Lua value as a JSON string: its text
local function jtext(v)
  return encode(tostring(v))
end

-- a count or sum (a number, or a decimal string past 2^53) as JSON
local function jnum(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return jcount(v % 1 == 0 and format("%.0f", v) or format("%.17g", v))
  end
  return jcount(tostring(v))
end

--- the histograms of a served map as JSON: luaebpf.histogram.read's result
-- ({ map, kind, step, layout = "array" | "slot_key" | "slots_value",
-- label_names, histograms = [ { labels, buckets = [ { slot, lo, hi, count } ],
-- count, sum } ] }), read in slices like GET /maps/<ref>; counts and bounds
-- past 2^53 are decimal strings (as read() gives them), labels text
function M.read_hist(e)
  local conf = mapserver.conf -- mapserver.init's slice and pause, as for GET /maps/<ref>
  local r = histogram.read(e.m, { kind = e.hist, step = e.step, slice = conf.slice,
    yield = function() ngx.sleep(conf.pause) end })
  local step = r.step or 1
  local hs = {}
  for gi, h in ipairs(r.histograms) do
    local buckets = {}
    for i, b in ipairs(h.buckets) do
      buckets[i] = format('{"slot":%d,"lo":%s,"hi":%s,"count":%s}', b.slot, jnum(b.lo), jnum(b.hi),
        jnum(b.count))
    end
    local labels = {}
    for li, name in ipairs(r.label_names or {}) do
      labels[li] = jtext(name) .. ":" .. jtext(h.labels[name])
    end
    hs[gi] = format('{"labels":{%s},"buckets":[%s],"count":%s%s}', concat(labels, ","),
      concat(buckets, ","), jnum(h.count),
      h.sum ~= nil and (',"sum":' .. jnum(h.sum)) or "")
  end
  local names = {}
  for i, n in ipairs(r.label_names or {}) do names[i] = jtext(n) end
  return format('{"map":{"name":%s,"id":%d,"type":%s},"kind":%s,"step":%s,"layout":%s,'
    .. '"label_names":[%s],"histograms":[%s]}\n',
    jtext(r.map.name or ""), r.map.id, jtext(r.map.type or ""), jtext(r.kind),
    r.kind == "linear" and tostring(step) or "null", jtext(r.layout), concat(names, ","),
    concat(hs, ",\n"))
end


--- GET /page/hist/<name or id>: the histograms of a served map (M.read_hist);
-- 404 when it is not served, 400 when it is not a histogram
function M.hist(ref)
  local e, status, reason = mapserver.find(ref)
  if status then return util.fail(status, reason) end
  if not e then return util.fail(404, "pageserver: no map '" .. ref .. "' is served here") end
  if not M.histogram(e) then return util.fail(400, "pageserver: map '" .. ref .. "' is not a histogram") end
  local ok, body = pcall(M.read_hist, e)
  if not ok then return util.fail_err(body, "pageserver: ") end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.print(body)
end

-- ------------------------------------------------------------ GET /page/views

--- GET /page/views: { ncpus =, maps = [ { id, name, ref, path, type, percpu,
-- key, value (layout kinds), hist = {scale, by} | null } ] } for
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
      h and format('{"scale":%s,"by":%s}', encode(h.scale), encode(h.by))
        or "null")
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.print('{"ncpus":', ebpf.ncpus(), ',"maps":[', concat(parts, ",\n"), "]}\n")
end

return M

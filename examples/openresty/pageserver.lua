-- examples/openresty/pageserver.lua: the live page of the OpenResty example.
-- nginx.conf next to this file shows the configuration; README.md,
-- "OpenResty" ("The live page"), explains it.
--
--   init_by_lua_block { require("mapserver").init{...}; require("pageserver").init() }
--   location = /       { content_by_lua_block { require("pageserver").page() } }
--   location ~ ^/page/(?<file>[^/]+)$ { content_by_lua_block { require("pageserver").file(ngx.var.file) } }
--   location = /page/views { content_by_lua_block { require("pageserver").views() } }
--
-- The page (page/index.html, page.css, page.js) is read once by init(), in the
-- master, and served from memory: the workers, running as nobody, need no
-- access to the checkout. It is self-contained (no external resource) and
-- reads the example's own endpoints: GET /maps (the list), GET /maps/<ref>
-- (the entries, every second), GET /events and /events/<name> (the tail), and
-- GET /page/views, which this module answers: for every served map, whether
-- and how the page draws it as a histogram.
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
-- list's mark).
function M.histogram(e)
  local info, layout = e.info, e.layout or {}
  local value = layout.value
  local slots = slots_field(value)
  local counts = ARRAYS[info.type] and value and INTEGER[value.kind] ~= nil
  local mark = e.hist or (e.spec and e.spec.hist)
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

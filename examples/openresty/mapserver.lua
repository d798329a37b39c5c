-- examples/openresty/mapserver.lua: eBPF maps over HTTP, in nginx with the
-- lua module (Debian's libnginx-mod-http-lua, or OpenResty). nginx.conf next
-- to this file shows the configuration; README.md, "OpenResty", explains it.
--
--   init_by_lua_block { require("mapserver").init{ maps = "/sys/fs/bpf" } }
--   location = /maps      { content_by_lua_block { require("mapserver").list() } }
--   location ~ ^/maps/(?<map>[^/]+)$ { content_by_lua_block { require("mapserver").entries(ngx.var.map) } }
--   location = /metrics   { content_by_lua_block { require("mapserver").metrics() } }
--
-- Privileges. init() runs in the master process, as root, before the workers
-- fork: it opens every map it is told to serve (and loads their BTF), and
-- takes a snapshot of the list of all maps. The workers, running as `nobody`,
-- inherit those fds and that snapshot: they read the served maps without any
-- privilege. What they cannot do unprivileged is list maps or open one by
-- name or id (CAP_SYS_ADMIN): GET /maps then answers from the startup
-- snapshot (header X-Luaebpf-Source: startup), and /maps/<x> for a map that
-- was not opened at startup is 403 when the snapshot knows it and 404 when it
-- does not. With `user root;` the workers list maps live and open any map on
-- demand.
--
-- Errors: 404 for an unknown map, 403 for a permission error, 409 for a name
-- that several maps share, 500 with the one-line error for anything else.
local ebpf = require "luaebpf"
local prom = require "luaebpf.prometheus"
local histogram = require "luaebpf.histogram"
local util = require "serverutil"

local M = {}

local format, concat, type, tostring = string.format, table.concat, type, tostring
local ngx = ngx

local conf = { slice = 1000, pause = 0.001 }
M.conf = conf       -- slice and pause, read by pageserver.lua too
local served = {}   -- { m =, info =, layout =, ref =, path =, metric = spec|false,
                    --   hist = "log2"|"linear"|nil, step = n }
local index = {}    -- "<id>", kernel name, pin file name -> array of served entries
local startup = {}  -- the list of maps at init: { maps = {...} } or { error = err }
M.served = served   -- read by pageserver.lua (the live page's GET /page/views)

-- ------------------------------------------------------------ JSON
-- lua-cjson 2.1.0 (Debian's) writes numbers with at most 14 digits and has no
-- empty arrays, so entries are written here: integers exactly (within 2^53 as
-- numbers; u64 beyond that, read with int64 = "string", as decimal strings),
-- struct fields in their C order, raw bytes as hex strings.

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function jstring(s)
  if not s:find('[%z\1-\31"\\\127-\255]') then return '"' .. s .. '"' end
  s = prom.utf8_safe(s) -- bytes that are not UTF-8 become the text \xNN
  return '"' .. s:gsub('[%z\1-\31"\\\127]', function(c)
    return ESC[c] or format("\\u%04x", c:byte())
  end) .. '"'
end

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", c:byte()) end))
end

local TWO53 = 9007199254740992
local UNSIGNED64 = { u64 = true, be64 = true }

local function jnumber(v, l)
  if v % 1 == 0 and v >= -TWO53 and v <= TWO53 and not (l and UNSIGNED64[l.kind] and v < 0) then
    return format("%d", v)
  end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if math.type and math.type(v) == "integer" then -- 5.3+: beyond 2^53, as a string
    return '"' .. prom.number(v, l and UNSIGNED64[l.kind]) .. '"'
  end
  return format("%.17g", v)
end

local encode

local function encode_fields(v, fields, parts)
  for _, f in ipairs(fields) do
    if f.name == nil or f.name == "" then -- anonymous member: fields of the parent
      if f.fields then encode_fields(v, f.fields, parts) end
    elseif v[f.name] ~= nil then
      parts[#parts + 1] = jstring(f.name) .. ":" .. encode(v[f.name], f)
    end
  end
  return parts
end

-- a Lua value as JSON; `l` is its layout (m:layout()) when known
function encode(v, l)
  local t = type(v)
  if t == "number" then
    return jnumber(v, l)
  elseif t == "string" then
    if l and l.kind == "raw" then return '"' .. hex(v) .. '"' end
    return jstring(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t ~= "table" then
    return "null"
  end
  if l and l.kind == "struct" then
    return "{" .. concat(encode_fields(v, l.fields or {}, {}), ",") .. "}"
  end
  local n = #v
  if n > 0 or next(v) == nil then -- an array (an empty table too: flags)
    local el = l and l.element
    local parts = {}
    for i = 1, n do parts[i] = encode(v[i], el) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local names = {} -- a table without a layout: keys in sorted order
  for k in pairs(v) do names[#names + 1] = tostring(k) end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = jstring(k) .. ":" .. encode(v[k]) end
  return "{" .. concat(parts, ",") .. "}"
end
M.encode = encode

-- ------------------------------------------------------------ answers

local one_line, fail, fail_err = util.one_line, util.fail, util.fail_err

-- body: a string, or an array of strings
local function send(body, ctype)
  ngx.header["Content-Type"] = ctype
  ngx.print(body)
end

local function pause()
  ngx.sleep(conf.pause) -- yields: other requests of this worker run meanwhile
end

-- ------------------------------------------------------------ init (master)

local function add_index(key, entry)
  if key == nil or key == "" then return end
  local list = index[key]
  if not list then
    list = {}
    index[key] = list
  end
  for _, e in ipairs(list) do if e == entry then return end end
  list[#list + 1] = entry
end

-- "ref,key=u32,value=u64,hist=log2" -> { ref, key = "u32", value = "u64", hist = "log2" }
local HIST = { log2 = true, linear = true, none = true }
local REF_OPTS = {
  key = function(v) return v end,
  value = function(v) return v end,
  hist = function(v) return HIST[v] and v or nil end,
  step = function(v) return v:match("^%d+$") and tonumber(v) or nil end,
  -- decode=laddr:ipv4+raddr:ipv4 -> m:codec{ decode = { laddr = "ipv4", raddr = "ipv4" } }
  decode = function(v)
    local t = {}
    for part in v:gmatch("[^+]+") do
      local path, dec = part:match("^([%w_.]+):([%w:]+)$")
      if not path then return nil end
      t[path] = dec
    end
    return next(t) and t or nil
  end,
}

local function parse_ref(s)
  return util.parse_ref(s, "mapserver", "REF[,key=CODEC][,value=CODEC][,hist=log2|linear|none]"
    .. "[,step=N (with hist=linear)][,decode=FIELD:DECODER+...]", REF_OPTS)
end

-- the histogram kind of a served map: the list's hist= (none: not one), or
-- luaebpf.histogram's rule (an array of counts named *hist or *slots, a
-- value struct holding slots)
local function hist_kind(spec, m)
  -- a step without hist=linear would be dropped (the rule gives log2), or
  -- make every /metrics fail: refused here, at startup
  if spec.step ~= nil and spec.hist ~= "linear" then
    error("mapserver: '" .. spec[1] .. "': step=" .. tostring(spec.step) .. " is for hist=linear, not "
      .. (spec.hist and "hist=" .. spec.hist or "a map without hist="), 0)
  end
  if spec.hist == "none" then return nil end
  if spec.hist then
    local ok, err = pcall(histogram.read, m, { kind = spec.hist, step = spec.step })
    if not ok then error("mapserver: cannot serve '" .. spec[1] .. "' as a histogram: " .. one_line(err), 0) end
    return spec.hist
  end
  local ok, kind = pcall(histogram.detect, m)
  return ok and kind or nil
end

local function open_ref(spec)
  local ref = spec[1]
  local opts = { int64 = "string", key = spec.key, value = spec.value }
  local m
  if ref:match("^id:%d+$") then
    m = ebpf.open_id(tonumber(ref:sub(4)), opts)
  elseif ref:match("^name:") then
    m = ebpf.open_name(ref:sub(6), opts)
  else
    m = ebpf.open(ref, opts)
  end
  local info = m:info()
  -- load the BTF now, while privileged: the workers could not
  if info.btf_id ~= 0 and info.btf_value_type_id ~= 0 and not (spec.key or spec.value) then
    local ok, err = pcall(m.codec, m, "btf")
    if not ok then ngx.log(ngx.WARN, "mapserver: ", one_line(err), "; serving raw bytes") end
  end
  if spec.decode then -- a bad field or decoder stops the start, naming both
    local ok, err = pcall(m.codec, m, { decode = spec.decode })
    if not ok then
      m:close()
      error("mapserver: '" .. ref .. "': decode: " .. one_line(err), 0)
    end
  end
  return m, info
end

local function serve(spec, quiet)
  local ok, m, info = pcall(open_ref, spec)
  if not ok then
    if quiet then return end -- a pinned program, link or other file in a directory
    error("mapserver: cannot serve '" .. spec[1] .. "': " .. one_line(m), 0)
  end
  local entry = { m = m, info = info, layout = m:layout(), ref = spec[1], metric = spec.metric,
    hist = hist_kind(spec, m), step = spec.step }
  served[#served + 1] = entry
  add_index(tostring(info.id), entry)
  add_index(info.name, entry)
  if not spec[1]:match("^%a+:") then
    entry.path = spec[1]
    add_index(spec[1]:match("([^/]+)$"), entry)
  end
end

-- the files of a directory (pins; not recursive)
local function dir_files(dir)
  local p = io.popen("find '" .. dir:gsub("'", "'\\''") .. "' -mindepth 1 -maxdepth 1 -type f 2>/dev/null | sort")
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  return files
end

local function is_dir(path)
  local p = io.popen("test -d '" .. path:gsub("'", "'\\''") .. "' && echo yes")
  local out = p:read("*a")
  p:close()
  return out:find("yes") ~= nil
end

--- in init_by_lua*: opens the maps to serve and snapshots the map list.
-- c.maps: a string of refs separated by spaces, or an array of refs and
--   tables { ref, key =, value =, hist =, step =, decode = { field = decoder },
--            metric = { name =, help =, type =, value = } | false };
--   a ref is a pinned path, a directory of pins, name:X or id:N, and in a
--   string may carry codecs: "/sys/fs/bpf/counts,key=u32,value=u64", and
--   mark a histogram: "/sys/fs/bpf/lat,hist=log2" ("hist=linear,step=1000";
--   "hist=none" for a map the rule would take for one), and name field
--   decoders: "/sys/fs/bpf/conns,decode=laddr:ipv4+raddr:ipv4".
-- c.slice: entries per read_batch slice (1000); c.pause: seconds slept
-- between slices (0.001; ngx.sleep(0) logs a warning on nginx without
-- OpenResty's patches).
function M.init(c)
  c = c or {}
  conf.slice = c.slice or conf.slice
  conf.pause = c.pause or conf.pause
  local list = c.maps or "/sys/fs/bpf"
  if type(list) == "string" then
    local t = {}
    for word in list:gmatch("%S+") do t[#t + 1] = word end
    list = t
  end
  for _, item in ipairs(list) do
    local spec = type(item) == "table" and item or parse_ref(item)
    if not spec[1]:match("^%a+:") and is_dir(spec[1]) then
      for _, file in ipairs(dir_files(spec[1])) do
        serve({ file, key = spec.key, value = spec.value, metric = spec.metric, hist = spec.hist,
          step = spec.step, decode = spec.decode }, true)
      end
    else
      serve(spec)
    end
  end
  local ok, err = pcall(function()
    local maps = {}
    for info in ebpf.maps() do maps[#maps + 1] = info end
    startup.maps = maps
  end)
  if not ok then startup.error = err end
  startup.time = os.time()
  ngx.log(ngx.NOTICE, "mapserver: serving ", #served, " maps; ",
    startup.maps and (#startup.maps .. " maps listed at startup") or one_line(startup.error))
end

-- ------------------------------------------------------------ GET /maps

function M.list()
  local maps, source = {}, "live"
  local ok, err = pcall(function()
    for info in ebpf.maps() do maps[#maps + 1] = info end
  end)
  if not ok then
    if type(err) == "table" and err.class == "permission" and startup.maps then
      maps, source = startup.maps, "startup"
    else
      return fail_err(err)
    end
  end
  local parts = {}
  for i, info in ipairs(maps) do
    local e = index[tostring(info.id)]
    local fields = {}
    for k, v in pairs(info) do fields[k] = v end
    fields.served = e ~= nil
    parts[i] = encode(fields)
  end
  ngx.header["X-Luaebpf-Source"] = source
  send("[" .. concat(parts, ",\n") .. "]\n", "application/json")
end

-- ------------------------------------------------------------ GET /maps/<x>

-- the entries of a map as JSON, in read_batch slices with a pause between
local function entries_json(m, info, layout)
  local kl = layout.key
  local vl = info.percpu and { kind = "array", element = layout.value } or layout.value
  local out = { '{"map":', encode(info), ',\n"entries":[' }
  local cursor, keys, values, count = nil, nil, nil, 0
  repeat
    keys, values, cursor = m:read_batch(cursor, conf.slice)
    for i = 1, #keys do
      out[#out + 1] = (count > 0 and ",\n" or "\n") .. '{"key":' .. encode(keys[i], kl)
        .. ',"value":' .. encode(values[i], vl) .. "}"
      count = count + 1
    end
    if cursor then pause() end
  until cursor == nil
  out[#out + 1] = '],\n"count":' .. count .. "}\n"
  return out -- ngx.print takes the pieces as they are
end

local function in_startup(ref)
  for _, info in ipairs(startup.maps or {}) do
    if tostring(info.id) == ref or info.name == ref then return info end
  end
end

--- the served entry a ref (an id, a kernel name or a pin file name) means:
-- the entry; nil when none; nil, 409, why when several maps have that name
function M.find(ref)
  local list = index[ref]
  if list and #list > 1 then
    local ids = {}
    for i, e in ipairs(list) do ids[i] = e.info.id end
    return nil, 409, format("mapserver: %d served maps are called '%s' (ids %s): ask by id",
      #list, ref, concat(ids, ", "))
  end
  return list and list[1]
end

-- ref: a name or id, as nginx decoded it from the URI
function M.entries(ref)
  local e, status, why = M.find(ref)
  if status then return fail(status, why) end
  local m, info, layout, opened
  if e then
    m, info, layout = e.m, e.info, e.layout
  else
    -- not served: open it now, which needs CAP_SYS_ADMIN (workers running as root)
    local opts = { int64 = "string" }
    local ok, res = pcall(function()
      if ref:match("^%d+$") then return ebpf.open_id(tonumber(ref), opts) end
      return ebpf.open_name(ref, opts)
    end)
    if not ok then
      local class = type(res) == "table" and res.class
      if class == "permission" then
        if in_startup(ref) then
          return fail(403, "mapserver: map '" .. ref .. "' is not served here, and this worker may"
            .. " not open it: " .. one_line(res))
        end
        return fail(404, "mapserver: no map '" .. ref .. "' is served here (nor was one listed at startup)")
      elseif class == "invalid" and not ref:match("^%d+$") then
        return fail(409, one_line(res))
      end
      return fail_err(res)
    end
    m, opened = res, true
    info = m:info()
    if info.btf_id ~= 0 and info.btf_value_type_id ~= 0 then pcall(m.codec, m, "btf") end
    ok, res = pcall(m.layout, m)
    if not ok then
      m:close()
      return fail_err(res)
    end
    layout = res
  end
  local ok, body = pcall(entries_json, m, info, layout)
  if opened then m:close() end
  if not ok then return fail_err(body) end
  send(body, "application/json")
end

-- ------------------------------------------------------------ GET /metrics

-- the families of the served maps: explicit `metric` specs, or every served
-- map whose values hold numbers (names ebpf_map_<name>[_<field>], gauges);
-- a histogram (marked hist= in the list, or by luaebpf.histogram's rule) is
-- one histogram family, ebpf_map_<name>
local NUMERIC = { u8 = 1, u16 = 1, u32 = 1, u64 = 1, i8 = 1, i16 = 1, i32 = 1, i64 = 1,
  be16 = 1, be32 = 1, be64 = 1, f32 = 1, f64 = 1, bool = 1, bitfield = 1 }

local function has_numbers(l)
  if NUMERIC[l.kind] then return true end
  if l.kind == "struct" then
    for _, f in ipairs(l.fields or {}) do if has_numbers(f) then return true end end
  end
  return false
end

function M.metrics()
  local families = {}
  for _, e in ipairs(served) do
    local spec = e.metric
    if spec == nil and e.info.key_size > 0 and has_numbers(e.layout.value) then spec = {} end
    if spec then
      local opts = { name = spec.name, help = spec.help, type = spec.type, value = spec.value,
        labels = spec.labels, const_labels = spec.const_labels, slice = conf.slice, yield = pause }
      if e.hist and (spec.type == nil or spec.type == "histogram") then
        opts.type, opts.hist, opts.step = "histogram", e.hist, e.step
      end
      local ok, fams = pcall(prom.collect, e.m, opts)
      if not ok then return fail_err(fams) end
      for _, f in ipairs(fams) do families[#families + 1] = f end
    end
  end
  local ok, text = pcall(prom.render, families)
  if not ok then return fail(500, one_line(text)) end
  send(text, prom.CONTENT_TYPE)
end

return M

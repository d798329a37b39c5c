-- examples/openresty/eventserver.lua: BPF ring buffer records streamed over
-- HTTP as server-sent events, in nginx with the lua module. nginx.conf next to
-- this file shows the configuration; README.md, "OpenResty", explains it.
--
--   lua_shared_dict luaebpf_events 8m;
--   init_by_lua_block        { require("eventserver").init{ events = "bpf/execsnoop.bpf.o,record=struct+event" } }
--   init_worker_by_lua_block { require("eventserver").init_worker() }
--   location = /events       { content_by_lua_block { require("eventserver").list() } }
--   location ~ ^/events/(?<map>[^/]+)$ { content_by_lua_block { require("eventserver").stream(ngx.var.map) } }
--
-- One consumer per ring. The kernel keeps one consumer position per ring
-- buffer: two readers would each skip what the other took. So exactly one
-- worker reads each ring -- worker 0, a fixed choice (nginx respawns a worker
-- that dies with the same id) -- and publishes every record, encoded as JSON
-- once, into a ring of `keep` slots in shared memory: key "<name>:head" holds
-- the sequence number of the last record written, "<name>:r:<seq % keep>"
-- the record, prefixed by its sequence number. Every streaming request, in any
-- worker, reads that ring at its own pace and remembers the next sequence
-- number it wants; it never touches the BPF ring, so a slow or gone client
-- never holds the consumer back. A client that falls more than `keep` records
-- behind is told how many it missed (event "missed") and goes on from the
-- oldest record kept. Across processes a shared-memory lease ("<name>:owner",
-- the consuming pid, renewed every round, expiring after `lease` seconds)
-- makes sure that during a reload the new worker 0 starts consuming only
-- once the old one has stopped (it stops when its worker begins to exit).
--
-- Privileges. init() runs in the master, as root, before the workers fork:
-- it loads and attaches BPF objects (CAP_BPF, CAP_PERFMON) and opens pinned
-- ring buffers read-write. Worker 0, as nobody, then creates the consumer,
-- which maps the ring's memory: the kernel asks for no capability there, only
-- an fd opened for writing (the consumer position is written through a
-- writable mapping; on a read-only fd ebpf.ringbuf raises class "permission",
-- root or not). Streaming requests read
-- shared memory only.
local ebpf = require "luaebpf"
local mapserver = require "mapserver"
local util = require "serverutil"

local M = {}

local ngx = ngx
local format, concat, tonumber, tostring = string.format, table.concat, tonumber, tostring
local encode = mapserver.encode

local conf = {
  dict = "luaebpf_events", -- the lua_shared_dict
  keep = 1024,             -- records kept per stream in shared memory
  interval = 0.02,         -- seconds between two consumer rounds
  wait = 0.05,             -- seconds a streaming request sleeps when it has nothing to send
  heartbeat = 10,          -- seconds between two SSE comments on an idle stream
  lease = 2,               -- seconds a consumer's lease lasts without renewal
}
local streams = {} -- array of { name =, id =, m =, obj =, record =, key = }
local index = {}   -- name, "<id>" -> stream

local one_line = util.one_line

-- ------------------------------------------------------------ init (master)

-- "path[,map=NAME][,record=TYPE]" -> { path, map =, record = } ("+" in TYPE
-- stands for a space: record=struct+event)
local function spaced(v) return (v:gsub("%+", " ")) end
local REF_OPTS = { map = spaced, record = spaced }

local function parse_ref(s)
  return util.parse_ref(s, "eventserver", "PATH[,map=NAME][,record=TYPE]", REF_OPTS)
end

-- the object's drop counter, when it has one like execsnoop's (`drops`, index
-- 0: records the ring had no room for); its BTF is loaded here, while
-- privileged: a worker could not
local function drop_counter(obj)
  local ok, m = pcall(obj.map, obj, "drops")
  if not ok then return nil end
  local info = m:info()
  if info.type ~= "array" or info.key_size ~= 4 or info.value_size ~= 8 then return nil end
  m:codec{ key = "u32", value = "u64", int64 = "string" }
  return m
end

local function add_stream(m, spec, obj)
  local info = m:info()
  if info.type ~= "ringbuf" then
    error(format("eventserver: map '%s' (id %d) is a %s, not a ringbuf", info.name, info.id, info.type), 0)
  end
  local name = info.name
  if index[name] then name = tostring(info.id) end -- a second ring of that name: by id only
  local s = { name = name, id = info.id, m = m, obj = obj, record = spec.record or "raw",
    key = name, drops = obj and drop_counter(obj) }
  streams[#streams + 1] = s
  index[name] = s
  index[tostring(info.id)] = s
end

-- a BPF object: loaded and attached here, in the master; every ringbuf map of
-- it is a stream (or the one named by spec.map)
local function serve_object(spec)
  local obj = ebpf.load(spec[1])
  local links = obj:attach_all()
  local found = false
  for name, m in obj:maps() do
    if (spec.map == nil or spec.map == name) and m:info().type == "ringbuf" then
      add_stream(m, spec, obj)
      found = true
    end
  end
  if not found then
    error("eventserver: " .. spec[1] .. " has no ringbuf map" .. (spec.map and " '" .. spec.map .. "'" or ""), 0)
  end
  return { obj = obj, links = links }
end

local held = {} -- what the master keeps open for the workers: objects, links

--- in init_by_lua*: loads and attaches the objects, opens the pinned rings.
-- c.events: a string of refs separated by spaces, or an array of refs and
--   tables { path, map =, record = }; a ref is a BPF object (*.o: loaded,
--   every program attached) or a pinned ringbuf map; record: how records
--   decode ("struct event" from the object's BTF, a codec, "raw": hex).
-- c.keep, c.interval, c.wait, c.heartbeat, c.lease: see conf above.
function M.init(c)
  c = c or {}
  for k in pairs(conf) do if c[k] ~= nil then conf[k] = c[k] end end
  local list = c.events or ""
  if type(list) == "string" then
    local t = {}
    for word in list:gmatch("%S+") do t[#t + 1] = word end
    list = t
  end
  for _, item in ipairs(list) do
    local spec = type(item) == "table" and item or parse_ref(item)
    if spec[1]:match("%.o$") then
      held[#held + 1] = serve_object(spec)
    else
      -- read-write: the consumer's mapping of the ring is writable
      add_stream(ebpf.open(spec[1], { access = "rw" }), spec, nil)
    end
  end
  if #streams > 0 and not ngx.shared[conf.dict] then
    error("eventserver: needs `lua_shared_dict " .. conf.dict .. " 8m;` in the http block", 0)
  end
  local names = {}
  for i, s in ipairs(streams) do names[i] = s.name .. " (id " .. s.id .. ")" end
  ngx.log(ngx.NOTICE, "eventserver: streaming ", #streams, " ring buffers",
    #names > 0 and ": " .. concat(names, ", ") or "")
end

-- ------------------------------------------------------------ the consumer (worker 0)

local function slot_key(s, seq)
  return s.key .. ":r:" .. (seq % conf.keep)
end

-- publishes one record: the slot first, then the head, so a reader that sees
-- head h finds every record up to h written (or overwritten by a later one)
local function publisher(s, dict)
  return function(rec)
    local seq = s.head + 1
    local ok, err = dict:safe_set(slot_key(s, seq), seq .. " " .. encode(rec))
    if not ok then -- no room in the dict: the record is lost, readers see a gap
      s.failed = (s.failed or 0) + 1
      if s.failed == 1 then ngx.log(ngx.ERR, "eventserver: ", s.name, ": ", err) end
    end
    dict:set(s.key .. ":head", seq)
    s.head = seq
  end
end

-- true when this process holds (or now takes) the stream's lease
local function lease(s, dict, pid)
  local key = s.key .. ":owner"
  local owner = dict:get(key)
  if owner == pid then
    dict:set(key, pid, conf.lease)
    return true
  end
  return owner == nil and dict:add(key, pid, conf.lease) == true
end

local function stats_json(s)
  local st = s.rb:stats()
  local drops = s.drops and s.drops:lookup(0) -- a string: int64 = "string" (LuaJIT)
  return format('{"records":%d,"bytes":%d,"polls":%d,"lost_ring_full":%s,"failed_dict":%d}',
    st.records or 0, st.bytes or 0, st.polls or 0, drops and tostring(drops) or "null", s.failed or 0)
end

local function consume(premature)
  if premature then return end
  local dict = ngx.shared[conf.dict]
  local pid = ngx.worker.pid()
  local rounds = 0
  while not ngx.worker.exiting() do
    for _, s in ipairs(streams) do
      if not s.broken and lease(s, dict, pid) then
        if not s.rb then
          local ok, rb = pcall(ebpf.ringbuf, s.m, { record = s.record, btf = s.obj, int64 = "string" })
          if not ok then
            ngx.log(ngx.ERR, "eventserver: ", s.name, ": no consumer: ", one_line(rb))
            s.broken = true
          else
            s.rb, s.head, s.push = rb, dict:get(s.key .. ":head") or 0, publisher(s, dict)
            ngx.log(ngx.NOTICE, "eventserver: worker ", ngx.worker.id(), " (pid ", pid,
              ") consumes ", s.name, " from seq ", s.head + 1)
          end
        end
        if s.rb then
          local ok, err = pcall(s.rb.consume, s.rb, s.push)
          if not ok then ngx.log(ngx.ERR, "eventserver: ", s.name, ": ", one_line(err)) end
          if rounds % 25 == 0 then
            local okj, json = pcall(stats_json, s)
            if okj then dict:set(s.key .. ":stats", json) end
          end
        end
      end
    end
    rounds = rounds + 1
    ngx.sleep(conf.interval)
  end
  -- exiting (reload, stop): let the next worker 0 take over at once
  for _, s in ipairs(streams) do
    if s.rb then
      pcall(s.rb.consume, s.rb, s.push)
      s.rb:close()
      s.rb = nil
    end
    if dict:get(s.key .. ":owner") == pid then dict:delete(s.key .. ":owner") end
  end
end

--- in init_worker_by_lua*: worker 0 starts the consumer of every stream
function M.init_worker()
  if #streams == 0 or ngx.worker.id() ~= 0 then return end
  local ok, err = ngx.timer.at(0, consume)
  if not ok then ngx.log(ngx.ERR, "eventserver: cannot start the consumer: ", err) end
end

-- ------------------------------------------------------------ GET /events

local fail = util.fail

--- GET /events: the streams, their head and the consumer's last statistics
function M.list()
  local dict = ngx.shared[conf.dict]
  local parts = {}
  for i, s in ipairs(streams) do
    parts[i] = format('{"name":%s,"id":%d,"head":%d,"keep":%d,"consumer_pid":%s,"stats":%s}',
      encode(s.name), s.id, dict and dict:get(s.key .. ":head") or 0, conf.keep,
      tostring(dict and dict:get(s.key .. ":owner") or "null"),
      dict and dict:get(s.key .. ":stats") or "null")
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print("[" .. concat(parts, ",\n") .. "]\n")
end

-- ------------------------------------------------------------ GET /events/<map>

-- "<seq> <json>" -> seq, json
local function parse_slot(v)
  if not v then return nil end
  local sp = v:find(" ", 1, true)
  return tonumber(v:sub(1, sp - 1)), v:sub(sp + 1)
end

--- GET /events/<name or id>[?since=SEQ][&limit=N]: server-sent events, one
-- per record ("id: <seq>", "data: <json>"), from the record after SEQ (or
-- after the Last-Event-ID header a reconnecting EventSource sends), else from
-- the next record published; ends after N records when limit is given.
function M.stream(ref)
  local s = index[ref]
  if not s then return fail(404, "eventserver: no ring buffer '" .. ref .. "' is streamed here") end
  local dict = ngx.shared[conf.dict]
  local args = ngx.req.get_uri_args()
  local since = tonumber(args.since or ngx.var.http_last_event_id or "")
  local limit = tonumber(args.limit or "")
  if (args.since and not since) or (args.limit and not (limit and limit > 0)) then
    return fail(400, "eventserver: since=SEQ (>= 0) and limit=N (> 0) are integers")
  end
  local head = dict:get(s.key .. ":head") or 0
  local next_seq = since and since + 1 or head + 1

  local gone = false
  ngx.on_abort(function() gone = true end) -- needs lua_check_client_abort on
  ngx.header["Content-Type"] = "text/event-stream"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.header["X-Accel-Buffering"] = "no"
  ngx.header["X-Luaebpf-Worker"] = ngx.worker.id()
  ngx.print(format(": luaebpf %s (id %d), from seq %d\n\n", s.name, s.id, next_seq))
  ngx.flush(true)

  local sent, idle = 0, 0
  while not gone and not ngx.worker.exiting() do
    head = dict:get(s.key .. ":head") or 0
    if next_seq <= head then
      local out = {}
      local oldest = head - conf.keep + 1
      if next_seq < oldest then
        out[#out + 1] = format('event: missed\ndata: {"missed":%d}\n\n', oldest - next_seq)
        next_seq = oldest
      end
      while next_seq <= head and not (limit and sent >= limit) do
        local seq, json = parse_slot(dict:get(slot_key(s, next_seq)))
        if seq == next_seq then
          out[#out + 1] = "id: " .. seq .. "\ndata: " .. json .. "\n\n"
          sent = sent + 1
          next_seq = next_seq + 1
        elseif seq and seq > next_seq then
          break -- overwritten while we read: the next round counts what we missed
        else -- never stored (the dict had no room): one missed record
          out[#out + 1] = 'event: missed\ndata: {"missed":1}\n\n'
          next_seq = next_seq + 1
        end
      end
      -- flush(true) waits until the client took it: a slow client slows only
      -- its own request, and falls behind the shared ring instead
      local ok = ngx.print(out)
      if not ok or not ngx.flush(true) then return end
      if limit and sent >= limit then return end
      idle = 0
    else
      ngx.sleep(conf.wait)
      idle = idle + conf.wait
      if idle >= conf.heartbeat then -- an idle stream notices a gone client here
        idle = 0
        if not ngx.print(": keepalive\n\n") or not ngx.flush(true) then return end
      end
    end
  end
end

return M

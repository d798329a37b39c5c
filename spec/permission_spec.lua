-- spec/permission_spec.lua: privileges and lifetimes. What an unprivileged
-- process (a child run as nobody, uid/gid 65534, through setpriv) may do with
-- pinned maps of each file mode, and the class "permission" errors that name
-- what it lacks for the rest (listing, opening by id, creating, loading);
-- read-only handles refusing writes; and, as root, what outlives what: an
-- open map whose pin is removed, a map taken from a closed object (freed by
-- the kernel once its last handle is closed), and a batch too large to
-- allocate. 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local cjson = require "cjson"

local SYSCOUNT = "bpf/syscount.bpf.o"

-- ------------------------------------------------------------ local helpers

local mentions, raised = H.mentions, H.raised

--- runs `body` (Lua) as nobody in this directory with this interpreter and
-- this Lua's package paths. The body fills the table `r`; the child prints it
-- as JSON on its last line. Returns r (with r.uid and r.capeff) and the output.
local function as_nobody(body)
  local code = string.format([[
package.path = %q
package.cpath = %q
local ebpf, cjson = require "luaebpf", require "cjson"
local r = {}
local f = io.popen("id -u"); r.uid = f:read("*l"); f:close()
f = io.open("/proc/self/status"); r.capeff = f:read("*a"):match("CapEff:%%s*(%%x+)"); f:close()
--- the fields of what fn raised (or r.ok = true)
local function catch(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return { ok = true } end
  if type(err) ~= "table" then return { ok = false, message = tostring(err) } end
  return { ok = false, class = err.class, code = err.code, op = err.op, message = tostring(err) }
end
--- the fields of a nil, err return
local function failed(v, err)
  if v ~= nil then return { ok = true, value = tostring(v) } end
  return { ok = false, class = err.class, code = err.code, op = err.op, message = tostring(err) }
end
]], package.path, package.cpath) .. body .. "\nprint(cjson.encode(r))\n"
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(code)
  f:close()
  H.run("chmod 0644 " .. file)
  local out, ok = H.sh(string.format("setpriv --reuid=65534 --regid=65534 --clear-groups %s %s",
    H.lua_bin(), file))
  os.remove(file)
  assert.is_true(ok, out)
  local last
  for line in out:gmatch("[^\n]+") do last = line end
  local r = cjson.decode(last)
  assert.are.equal("65534", r.uid)
  assert.are.equal(0, tonumber(r.capeff, 16), "the child kept capabilities: " .. r.capeff)
  return r, out
end

--- a hash map u32 -> u64 pinned by root, holding { [1] = 10, [2] = 20 }
local function pinned(fs)
  return fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 16, fill = { [1] = 10, [2] = 20 } }
end

--- the entries of a pinned u32 -> u64 map, read by root
local function entries_of(path)
  local m = ebpf.open(path, { key = "u32", value = "u64" })
  local t = {}
  for k, v in m:pairs() do t[k] = v end
  m:close()
  return t
end

-- --------------------------------------------------------------- the specs

describe("opening a pinned map without privilege", function()
  local fs
  setup(function()
    fs = H.mount_bpffs()
    H.run("chmod a+rx " .. fs.path)
  end)
  teardown(function() fs:unmount() end)

  it("refuses a pin file of mode 0600: class \"permission\", naming read permission on the pin file", function()
    local path = pinned(fs)
    H.run("chmod 0600 " .. path)
    local r = as_nobody(string.format("r.open = catch(ebpf.open, %q, { key = \"u32\", value = \"u64\" })", path))
    assert.is_false(r.open.ok)
    assert.are.equal("permission", r.open.class, r.open.message)
    assert.are.equal("EACCES", r.open.code)
    assert.are.equal("open", r.open.op)
    mentions(r.open.message, { path, "read permission", "pin file" })
  end)

  it("reads a pin file of mode 0644 (read-only by default) and refuses access = \"rw\" with class \"permission\"", function()
    local path = pinned(fs)
    H.run("chmod 0644 " .. path)
    local r = as_nobody(string.format([[
local m = ebpf.open(%q, { key = "u32", value = "u64" })
r.access = m:info().access
r.one = m:lookup(1)
r.absent = m:lookup(3) == nil
r.pairs = {}
for k, v in m:pairs() do r.pairs[#r.pairs + 1] = k .. "=" .. v end
table.sort(r.pairs)
local keys = m:dump()
r.dumped = #keys
m:close()
r.rw = catch(ebpf.open, %q, { access = "rw" })
r.w = catch(ebpf.open, %q, { access = "w" })
]], path, path, path))
    assert.are.equal("r", r.access)
    assert.are.equal(10, r.one)
    assert.is_true(r.absent)
    assert.are.same({ "1=10", "2=20" }, r.pairs)
    assert.are.equal(2, r.dumped)
    for _, which in ipairs{ "rw", "w" } do
      local e = r[which]
      assert.is_false(e.ok, which)
      assert.are.equal("permission", e.class, e.message)
      assert.are.equal("EACCES", e.code)
      mentions(e.message, { path, "write permission" })
    end
  end)

  it("says a read-only pin of a link or a program is not a map, without write permission to ask again", function()
    local obj = ebpf.load(SYSCOUNT)
    local link = obj:attach("on_enter")
    finally(function() link:close(); obj:close() end)
    local lpath, ppath = fs.path .. "/rolink", fs.path .. "/roprog"
    assert.is_true(link:pin(lpath))
    assert.is_true(obj:program("on_enter"):pin(ppath))
    finally(function() os.remove(lpath); os.remove(ppath) end)
    H.run("chmod 0444 " .. lpath .. " " .. ppath)
    local r = as_nobody(string.format([[
r.link = catch(ebpf.open, %q)
r.prog = catch(ebpf.open, %q)
]], lpath, ppath))
    for _, which in ipairs{ "link", "prog" } do
      local e = r[which]
      assert.is_false(e.ok, which)
      assert.are.equal("invalid", e.class, e.message)
      mentions(e.message, { "not a map (a program or a link?)" })
    end
  end)

  it("refuses update, delete, lookup_and_delete and drain through its read-only handle: EPERM, class \"permission\"", function()
    local path = pinned(fs)
    H.run("chmod 0644 " .. path)
    local r = as_nobody(string.format([[
local m = ebpf.open(%q, { key = "u32", value = "u64" })
r.update = failed(m:update(1, 11))
r.insert = failed(m:update(5, 50))
r.delete = failed(m:delete(2))
r.lookup_and_delete = failed(m:lookup_and_delete(1))
r.drain = catch(m.drain, m)
m:close()
]], path))
    for _, op in ipairs{ "update", "insert", "delete", "lookup_and_delete", "drain" } do
      local e = r[op]
      assert.is_false(e.ok, op)
      assert.are.equal("permission", e.class, e.message)
      assert.are.equal("EPERM", e.code, e.message)
      mentions(e.message, { "read-only", "access = \"rw\"" })
    end
    assert.are.same({ [1] = 10, [2] = 20 }, entries_of(path)) -- nothing changed
  end)

  it("refuses a pin in a directory it cannot search: class \"permission\", naming the directory", function()
    local dir = fs.path .. "/private"
    H.run("mkdir " .. dir)
    local m = ebpf.open(pinned(fs), { access = "rw" })
    local path = dir .. "/m"
    assert.is_true(m:pin(path))
    m:close()
    H.run("chmod 0700 " .. dir .. " && chmod 0644 " .. path)
    local r = as_nobody(string.format("r.open = catch(ebpf.open, %q)", path))
    os.remove(path)
    H.run("rmdir " .. dir)
    assert.is_false(r.open.ok)
    assert.are.equal("permission", r.open.class, r.open.message)
    assert.are.equal("EACCES", r.open.code)
    -- the pin file itself is readable: the message must not blame it alone
    mentions(r.open.message, { "directory" })
  end)
end)

describe("Map handles opened read-only by root", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  it("refuse update, delete, lookup_and_delete and drain: EPERM, class \"permission\"", function()
    local path = pinned(fs)
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    assert.are.equal("r", m:info().access)
    local results = {
      update = { m:update(1, 11) },
      insert = { m:update(5, 50) },
      delete = { m:delete(2) },
      lookup_and_delete = { m:lookup_and_delete(1) },
      drain = { pcall(m.drain, m) },
    }
    results.drain = { nil, results.drain[2] }
    for op, res in pairs(results) do
      assert.is_nil(res[1], op)
      local err = res[2]
      assert.are.equal("table", type(err), op)
      assert.are.equal("permission", err.class, tostring(err))
      assert.are.equal("EPERM", err.code, tostring(err))
      mentions(err, { "read-only", "access = \"rw\"" })
    end
    assert.are.equal(10, m:lookup(1)) -- reading still works
    m:close()
    assert.are.same({ [1] = 10, [2] = 20 }, entries_of(path))
  end)
end)

describe("privileged operations without privilege", function()
  local r
  setup(function()
    r = as_nobody(string.format([[
r.maps = catch(function() for _ in ebpf.maps() do end end)
r.open_id = catch(ebpf.open_id, 1)
r.open_name = catch(ebpf.open_name, "anything")
r.create = catch(ebpf.create, { type = "hash", key_size = 4, value_size = 8, max_entries = 4 })
r.load = catch(ebpf.load, %q)
]], SYSCOUNT))
  end)

  it("ebpf.maps() raises class \"permission\" naming CAP_SYS_ADMIN", function()
    assert.is_false(r.maps.ok)
    assert.are.equal("permission", r.maps.class, r.maps.message)
    assert.are.equal("EPERM", r.maps.code)
    mentions(r.maps.message, { "CAP_SYS_ADMIN" })
  end)

  it("ebpf.open_id() raises class \"permission\" naming CAP_SYS_ADMIN", function()
    assert.is_false(r.open_id.ok)
    assert.are.equal("permission", r.open_id.class, r.open_id.message)
    assert.are.equal("EPERM", r.open_id.code)
    mentions(r.open_id.message, { "CAP_SYS_ADMIN" })
  end)

  it("ebpf.open_name() raises class \"permission\" naming CAP_SYS_ADMIN", function()
    assert.is_false(r.open_name.ok)
    assert.are.equal("permission", r.open_name.class, r.open_name.message)
    mentions(r.open_name.message, { "CAP_SYS_ADMIN" })
  end)

  it("ebpf.create() raises class \"permission\" naming CAP_BPF", function()
    assert.is_false(r.create.ok)
    assert.are.equal("permission", r.create.class, r.create.message)
    assert.are.equal("EPERM", r.create.code)
    assert.are.equal("create", r.create.op)
    mentions(r.create.message, { "CAP_BPF" })
  end)

  it("ebpf.load() raises class \"permission\" naming the object", function()
    assert.is_false(r.load.ok)
    assert.are.equal("permission", r.load.class, r.load.message)
    assert.are.equal("EPERM", r.load.code)
    assert.are.equal("load", r.load.op)
    mentions(r.load.message, { SYSCOUNT })
  end)

  it("ebpf.load() says what is missing: CAP_BPF", function()
    assert.is_false(r.load.ok)
    mentions(r.load.message, { "CAP_BPF" })
  end)
end)

describe("a map whose pin is removed while it is open", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  it("keeps working through the open handle and can be pinned again with m:pin", function()
    local path = pinned(fs)
    local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
    local id = m:info().id
    assert.is_true(os.remove(path))
    assert.is_nil(io.open(path))
    local err = raised(ebpf.open, path)
    assert.are.equal("missing", err.class)
    -- the fd holds the map: every operation goes on
    assert.are.equal(10, m:lookup(1))
    assert.is_true(m:update(3, 30))
    assert.is_true(m:delete(2))
    local got = {}
    for k, v in m:pairs() do got[k] = v end
    assert.are.same({ [1] = 10, [3] = 30 }, got)
    assert.are.equal(id, m:info().id)
    -- pinned again, at the old path and at a new one: the same map
    assert.is_true(m:pin(path))
    local again = fs.path .. "/again"
    assert.is_true(m:pin(again))
    for _, p in ipairs{ path, again } do
      local o = ebpf.open(p, { key = "u32", value = "u64" })
      assert.are.equal(id, o:info().id)
      assert.are.equal(30, o:lookup(3))
      o:close()
    end
    assert.are.same({ [1] = 10, [3] = 30 }, entries_of(again))
    m:close()
    os.remove(again)
  end)
end)

describe("a Map taken from a BPF object", function()
  it("keeps working after obj:close(), and the kernel frees the map once every handle is closed", function()
    local obj = ebpf.load(SYSCOUNT)
    local m = obj:map("counts")
    local id = m:info().id
    local key = { pid = 7, comm = "perm" }
    obj:close()
    collectgarbage("collect")
    assert.is_true(m:update(key, 70))
    assert.are.equal(70, m:lookup(key))
    local n = 0
    for k, v in m:pairs() do
      if k.pid == 7 and k.comm == "perm" then n = n + v end
    end
    assert.are.equal(70, n)
    -- a second handle, by id: the map lives while either is open
    local byid = ebpf.open_id(id)
    m:close()
    collectgarbage("collect")
    H.run("sleep 0.2")
    assert.are.equal(70, byid:lookup(key))
    local again = ebpf.open_id(id)
    again:close()
    byid:close()
    -- the last handle is closed: freed after an RCU grace period
    local err
    for _ = 1, 50 do
      local ok, e = pcall(ebpf.open_id, id)
      if not ok then err = e; break end
      e:close()
      H.run("sleep 0.1")
    end
    assert.is_not_nil(err, "map id " .. id .. " still exists after 5 s")
    assert.are.equal("table", type(err), tostring(err))
    assert.are.equal("missing", err.class, tostring(err))
    assert.are.equal("ENOENT", err.code)
  end)
end)

describe("a batch too large to allocate", function()
  local HUGE = 16777216
  local specs = {
    { type = "array", key_size = 4, value_size = 65536, max_entries = 64 },
    { type = "hash", key_size = 4, value_size = 65536, max_entries = 64 },
  }

  --- the map works after the refusal: lookups, updates and a full walk
  local function still_usable(m, spec)
    local v = string.rep("v", spec.value_size)
    assert.is_true(m:update(3, v))
    assert.are.equal(v, m:lookup(3))
    local n = 0
    for k, val in m:pairs() do
      n = n + 1
      assert.are.equal(spec.value_size, #val)
    end
    assert.are.equal(spec.type == "array" and spec.max_entries or 2, n)
    local keys, values, cursor = m:read_batch(nil, 8)
    assert.are.equal(#keys, #values)
    while cursor do keys, values, cursor = m:read_batch(cursor, 8) end
  end

  --- pcall(fn) either worked or raised class "resource" (ENOMEM)
  local function works_or_enomem(what, ok, err)
    if ok then return end
    assert.are.equal("table", type(err), what .. ": " .. tostring(err))
    assert.are.equal("resource", err.class, tostring(err))
    assert.are.equal("ENOMEM", err.code, tostring(err))
  end

  for _, spec in ipairs(specs) do
    it(string.format("m:read_batch(nil, %d) on a %s of %d-byte values works or raises class \"resource\"",
      HUGE, spec.type, spec.value_size), function()
      local m = ebpf.create(spec)
      m:codec{ key = "u32" }
      assert.is_true(m:update(1, string.rep("a", spec.value_size)))
      local ok, keys = pcall(m.read_batch, m, nil, HUGE)
      works_or_enomem("read_batch", ok, keys)
      still_usable(m, spec)
      m:close()
    end)

    it(string.format("m:pairs{ n = %d } on a %s of %d-byte values works or raises class \"resource\"",
      HUGE, spec.type, spec.value_size), function()
      local m = ebpf.create(spec)
      m:codec{ key = "u32" }
      assert.is_true(m:update(1, string.rep("a", spec.value_size)))
      local ok, err = pcall(function()
        for _ in m:pairs{ n = HUGE } do end
      end)
      works_or_enomem("pairs", ok, err)
      ok, err = pcall(m.dump, m, { n = HUGE })
      works_or_enomem("dump", ok, err)
      still_usable(m, spec)
      m:close()
    end)
  end
end)

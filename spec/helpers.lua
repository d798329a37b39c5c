-- spec/helpers.lua: fixtures for the specs. A private bpffs mounted in a
-- temporary directory, maps made and filled by bpftool (the independent
-- oracle), bpftool's JSON dumps decoded into byte strings, and the count of
-- this process's open fds. Shared by every Lua version: 5.1 syntax.
local cjson = require "cjson"

local H = {}

--- runs a shell command; returns its stdout and whether it exited 0
function H.sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return body, tonumber(rc) == 0
end

--- runs a shell command that must succeed; returns its stdout
function H.run(cmd)
  local out, ok = H.sh(cmd)
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

--- "0x01 0x00 ..." for bpftool from a byte string
function H.hex_args(bytes)
  local t = {}
  for i = 1, #bytes do t[i] = string.format("0x%02x", bytes:byte(i)) end
  return table.concat(t, " ")
end

--- little-endian bytes of an integer, negative ones as two's complement (the
-- floor division carries the sign; exact for magnitudes below 2^53 on every Lua)
function H.le(v, size)
  local t = {}
  for i = 1, size do
    local b = v % 256
    t[i] = string.char(b)
    v = (v - b) / 256
  end
  return table.concat(t)
end

--- the byte string of bpftool's JSON ["0x01", ...]
function H.from_hex_list(list)
  local t = {}
  for i, h in ipairs(list) do t[i] = string.char(tonumber(h)) end
  return table.concat(t)
end

local counter = 0

--- mounts a bpffs on a fresh dot-free temporary directory
function H.mount_bpffs()
  local dir = H.run("mktemp -d /tmp/luaebpfXXXXXX"):gsub("%s+$", "")
  H.run("mount -t bpf bpf " .. dir)
  local fs = { path = dir }

  --- unmounts and removes the directory (the kernel frees maps pinned only here)
  function fs:unmount()
    H.run("umount " .. dir .. " && rmdir " .. dir)
  end

  --- creates a map with bpftool, pins it here, fills it; returns its path.
  -- spec: type, key (bytes), value (bytes), entries, name, flags (number),
  -- fill = { [k] = v } with integer keys/values (little-endian) or byte strings
  function fs:bpftool_map(spec)
    counter = counter + 1
    local path = dir .. "/m" .. counter
    local cmd = string.format("bpftool map create %s type %s key %d value %d entries %d name %s",
      path, spec.type or "hash", spec.key, spec.value, spec.entries or 64,
      spec.name or ("t" .. counter))
    if spec.flags then cmd = cmd .. " flags " .. spec.flags end
    H.run(cmd)
    for k, v in pairs(spec.fill or {}) do
      fs:bpftool_update(path, type(k) == "string" and k or H.le(k, spec.key),
        type(v) == "string" and v or H.le(v, spec.value))
    end
    return path
  end

  function fs:bpftool_update(path, kbytes, vbytes)
    H.bpftool_update("pinned " .. path, kbytes, vbytes)
  end

  return fs
end

--- bpftool's dump of a pinned map: a table from key bytes to value bytes (or,
-- for per-CPU maps, to an array of per-CPU value bytes), and the entry count;
-- entries bpftool reports as errors (empty devmap slots) are left out
function H.dump(path)
  local out = H.run("bpftool -j map dump pinned " .. path)
  local entries, n = {}, 0
  for _, e in ipairs(cjson.decode(out)) do
    local k = H.from_hex_list(e.key)
    if e.values then
      local per = {}
      for _, cv in ipairs(e.values) do per[cv.cpu + 1] = H.from_hex_list(cv.value) end
      entries[k] = per
      n = n + 1
    elseif type(e.value) == "table" and e.value.error == nil then
      entries[k] = H.from_hex_list(e.value)
      n = n + 1
    end
  end
  return entries, n
end

--- the number of fds this Lua process holds (the shell's parent is us), not
-- counting pipes: popen's own pipe end may still be open in us when ls runs
function H.fd_count()
  local out = H.run("ls -l /proc/$PPID/fd | grep -c -- '-> /\\|anon_inode\\|socket'")
  return tonumber((out:gsub("%s", "")))
end

--- fills a pinned map in one bpftool process: rows = { { kbytes, vbytes }, ... }
function H.bpftool_fill(path, rows)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  for _, r in ipairs(rows) do
    f:write(string.format("map update pinned %s key %s value %s\n", path,
      H.hex_args(r[1]), H.hex_args(r[2])))
  end
  f:close()
  local out, ok = H.sh("bpftool batch file " .. file)
  os.remove(file)
  assert(ok, out)
end

--- the set of the keys of t
function H.keyset(t)
  local s = {}
  for k in pairs(t) do s[k] = true end
  return s
end

--- n opens of a pinned u32 -> u64 map, each closed at once (in a function of
-- their own, so that no register of the caller keeps a handle alive)
function H.open_and_close(ebpf, path, n)
  for _ = 1, n do
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    m:close()
  end
end

--- n opens of a pinned u32 -> u64 map, each dropped for the collector
function H.open_and_drop(ebpf, path, n)
  for _ = 1, n do
    local m = ebpf.open(path, { key = "u32", value = "u64" })
    assert(m:fd() > 2)
  end
end

--- the interpreter running the specs ("lua5.4", "lua5.3", "luajit"), for child processes
function H.lua_bin()
  local i, bin = -1, nil
  while arg and arg[i] do bin = arg[i]; i = i - 1 end
  return bin or "lua5.4"
end

--- calls fn and returns what it raised (and that as a string); fails the
-- test when fn succeeds
function H.raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err, tostring(err)
end

--- asserts that msg contains every one of the plain strings in `parts`
function H.mentions(msg, parts)
  msg = tostring(msg)
  for _, p in ipairs(parts) do
    assert(msg:find(p, 1, true), "expected '" .. p .. "' in the message: " .. msg)
  end
end

--- track, close_all: every handle a test passes through track() is closed
-- by close_all(), newest first (links before the objects they came from)
function H.tracker()
  local tracked = {}
  local function track(x)
    tracked[#tracked + 1] = x
    return x
  end
  local function close_all()
    for i = #tracked, 1, -1 do
      pcall(tracked[i].close, tracked[i])
      tracked[i] = nil
    end
  end
  return track, close_all
end

--- bpftool writes one entry; ref is "pinned PATH" or "id N"
function H.bpftool_update(ref, kbytes, vbytes)
  H.run(string.format("bpftool map update %s key %s value %s", ref, H.hex_args(kbytes),
    H.hex_args(vbytes)))
end

--- the value bytes bpftool reads at key (bytes) of the map with this id
function H.bpftool_lookup(id, kbytes)
  local out = H.run("bpftool -j map lookup id " .. id .. " key " .. H.hex_args(kbytes))
  return H.from_hex_list(cjson.decode(out).value)
end

--- bpftool map show of a pinned path, decoded
function H.show(path)
  return cjson.decode(H.run("bpftool -j map show pinned " .. path))
end

--- true when the kernel still has a map with this id
function H.map_exists(id)
  local _, ok = H.sh("bpftool -j map show id " .. string.format("%d", id))
  return ok
end

--- the kernel id of the program behind one of our fds, from /proc fdinfo
function H.prog_id(fd)
  local id = H.run("cat /proc/$PPID/fdinfo/" .. string.format("%d", fd)):match("prog_id:%s*(%d+)")
  return tonumber(id)
end

--- how many links bpftool sees for a program id, and their tracepoint names
function H.links_of(id)
  local n, tps = 0, {}
  for _, l in ipairs(cjson.decode(H.run("bpftool -j link show"))) do
    if H.int(l.prog_id) == id then
      n = n + 1
      tps[#tps + 1] = l.tp_name
    end
  end
  return n, tps
end

--- makes about 2n system calls in this process (openat and close)
function H.syscalls(n)
  for _ = 1, n do
    local f = assert(io.open("/dev/null", "rb"))
    f:close()
  end
end

--- lets a BPF program's counts and the kernel's deferred frees catch up
function H.pause() H.run("sleep 0.2") end

--- true once no program has this id: the kernel frees a program whose last
--- fd closed a moment later (after an RCU grace period), not at once
function H.prog_gone(id, seconds)
  for _ = 1, (seconds or 5) * 10 do
    local _, loaded = H.sh("bpftool prog show id " .. id)
    if not loaded then return true end
    H.run("sleep 0.1")
  end
  return false
end

-- ------------------------------------------------------ numbers and bytes

--- a whole number as a Lua integer where there are integers (cjson decodes floats)
function H.int(x)
  return math.tointeger and math.tointeger(x) or x
end

--- the unsigned little-endian integer in a byte string (exact below 2^53)
function H.uint(bytes)
  local v = 0
  for i = #bytes, 1, -1 do v = v * 256 + bytes:byte(i) end
  return v
end

--- a byte string as lowercase hex digits, two a byte, nothing between
function H.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- ------------------------------------------------------------- tables

--- the number of entries of a table
function H.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

--- the keys of a table, sorted
function H.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

--- the set of the lines of a text (empty lines left out)
function H.lines(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do t[line] = true end
  return t
end

-- --------------------------------------------------------- whole-map walks

--- bpftool_fill rows for u32 keys first..last with u64 values v(k) (k * 10 without v)
function H.rows(first, last, v)
  local t = {}
  for k = first, last do t[#t + 1] = { H.le(k, 4), H.le(v and v(k) or k * 10, 8) } end
  return t
end

--- walks a pairs or keys iterator (all the `for` values it returned) into a
-- table from key to value (true for keys()); the steps and the keys yielded twice
function H.collect(iter, state, ctl, closing)
  local got, n, dups = {}, 0, {}
  for k, v in iter, state, ctl, closing do
    if got[k] ~= nil then dups[#dups + 1] = k end
    if v == nil then v = true end
    got[k] = v
    n = n + 1
  end
  return got, n, dups
end

--- keys and values (parallel arrays, as dump and drain give) into a table;
-- the keys yielded twice
function H.to_set(keys, values)
  local t, dups = {}, {}
  for i = 1, #keys do
    if t[keys[i]] ~= nil then dups[#dups + 1] = keys[i] end
    t[keys[i]] = values and values[i] or true
  end
  return t, dups
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local t = {}
    for i, x in ipairs(v) do t[i] = show(x) end
    return "{" .. table.concat(t, ", ") .. "}"
  end
  return tostring(v)
end

local function equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do if not equal(a[i], b[i]) then return false end end
  return true
end

--- asserts that got (key -> value) has exactly want's entries; reports the
-- first few differences rather than two huge tables
function H.assert_same_entries(want, got)
  local problems, n = {}, 0
  local function note(s)
    n = n + 1
    if n <= 5 then problems[#problems + 1] = s end
  end
  for k, v in pairs(want) do
    if got[k] == nil then
      note("missing key " .. show(k))
    elseif not equal(got[k], v) then
      note("key " .. show(k) .. ": " .. show(v) .. " expected, got " .. show(got[k]))
    end
  end
  for k in pairs(got) do
    if want[k] == nil then note("unexpected key " .. show(k)) end
  end
  assert(n == 0, n .. " differences: " .. table.concat(problems, "; "))
end

-- ------------------------------------------------- files, tools, processes

--- the whole content of a file
function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

--- writes s as the whole content of a file
function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- a fresh temporary directory, /tmp/<prefix>XXXXXX
function H.tmpdir(prefix)
  return (H.run("mktemp -d /tmp/" .. prefix .. "XXXXXX"):gsub("%s+$", ""))
end

--- true when the shell finds this command
function H.has(cmd)
  local _, ok = H.sh("command -v " .. cmd)
  return ok
end

--- the smallest of five fd counts: H.fd_count() counts the popen pipe's write
-- end when the shell lists the fds before our popen has closed its copy (a
-- race: +1 now and then), so the smallest of a few samples is the true count
function H.fd_count_min()
  local n = H.fd_count()
  for _ = 1, 4 do n = math.min(n, H.fd_count()) end
  return n
end

--- runs Lua source in a child process of this interpreter, with this Lua's
-- module paths, `ebpf` loaded and `garbage(fn)` defined (garbage whose
-- finalizer calls fn: a table on 5.2+, a proxy userdata on 5.1/LuaJIT), under
-- `prefix` (a command such as prlimit) when given; a crash there fails one
-- test, not the run. Returns its output and whether it exited 0
function H.child(body, prefix)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write("package.path = 'lua/?.lua;lua/?/init.lua;./?.lua;' .. package.path\n",
    "package.cpath = ", string.format("%q", package.cpath), " .. ';' .. package.cpath\n",
    "local ebpf = require 'luaebpf'\n",
    "local function garbage(fn)\n",
    "  if newproxy then getmetatable(newproxy(true)).__gc = fn\n",
    "  else setmetatable({}, { __gc = fn }) end\n",
    "end\n", body)
  f:close()
  local out, ok = H.sh((prefix and prefix .. " " or "") .. H.lua_bin() .. " " .. script)
  os.remove(script)
  return out, ok
end

return H

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

--- little-endian bytes of an unsigned integer (exact below 2^53 on every Lua)
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
    H.run(string.format("bpftool map update pinned %s key %s value %s", path,
      H.hex_args(kbytes), H.hex_args(vbytes)))
  end

  return fs
end

--- bpftool's dump of a pinned map: a table from key bytes to value bytes (or,
-- for per-CPU maps, to an array of per-CPU value bytes), and the entry count
function H.dump(path)
  local out = H.run("bpftool -j map dump pinned " .. path)
  local entries, n = {}, 0
  for _, e in ipairs(cjson.decode(out)) do
    local k = H.from_hex_list(e.key)
    if e.values then
      local per = {}
      for _, cv in ipairs(e.values) do per[cv.cpu + 1] = H.from_hex_list(cv.value) end
      entries[k] = per
    else
      entries[k] = H.from_hex_list(e.value)
    end
    n = n + 1
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

--- bpftool map show of a pinned path, decoded
function H.show(path)
  return cjson.decode(H.run("bpftool -j map show pinned " .. path))
end

return H

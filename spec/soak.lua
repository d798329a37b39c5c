-- spec/soak.lua: the concurrency soak (`make soak`; not a spec).
--   lua spec/soak.lua SECONDS [READERS]
-- From the checkout, as root: mounts a bpffs, creates and pins a hash map
-- (u32 -> u64, 65,536 entries) holding a stable set (keys 0..9999, value =
-- key), then for SECONDS runs spec/churn, which inserts, updates and deletes
-- keys 10000..59999 at full speed, and READERS (default 3) reader processes
-- of this same Lua, each walking the map over and over with pairs() (batch
-- and get_next_key), keys(), dump() and read_batch slices. Every walk must
-- see each stable key exactly once with its value, yield no key twice and
-- no key outside 0..59999. Prints, per reader, the walks done, the entries
-- read and the errors, and churn's insert and delete counts; exits 1 on any
-- error, a crash, or a process that did not finish in time. Unmounts the
-- bpffs and leaves no process behind. 5.1 syntax.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
  .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local STABLE, LO, HI, ENTRIES = 10000, 10000, 60000, 65536
local SLICE = 1000          -- read_batch slice
local MAX_ERRORS_SHOWN = 5

--- the interpreter running this script, for the readers
local function lua_bin()
  local i, bin = -1, nil
  while arg and arg[i] do bin = arg[i]; i = i - 1 end
  return bin or "lua5.4"
end

-- ------------------------------------------------------------------ reader

--- checks one walk's keys (and values, when given); returns nil or a message
local function check(kind, keys, values)
  local seen, stable = {}, 0
  for i, k in ipairs(keys) do
    if type(k) ~= "number" or k < 0 or k >= HI or k % 1 ~= 0 then
      return string.format("%s: unexpected key %s", kind, tostring(k))
    end
    if seen[k] then return string.format("%s: key %d yielded twice", kind, k) end
    seen[k] = true
    if k < STABLE then
      stable = stable + 1
      if values and values[i] ~= k then
        return string.format("%s: stable key %d has value %s", kind, k, tostring(values[i]))
      end
    end
  end
  if stable ~= STABLE then
    for k = 0, STABLE - 1 do
      if not seen[k] then
        return string.format("%s: stable key %d missing (%d of %d seen)", kind, k, stable, STABLE)
      end
    end
  end
  return nil
end

local walks = {
  { "pairs", function(m)
    local keys, values = {}, {}
    for k, v in m:pairs() do keys[#keys + 1] = k; values[#values + 1] = v end
    return keys, values
  end },
  { "pairs_gnk", function(m)
    local keys, values = {}, {}
    for k, v in m:pairs{ batch = false } do keys[#keys + 1] = k; values[#values + 1] = v end
    return keys, values
  end },
  { "keys", function(m)
    local keys = {}
    for k in m:keys() do keys[#keys + 1] = k end
    return keys, nil
  end },
  { "dump", function(m)
    local keys, values = m:dump()
    if #keys ~= #values then error(string.format("%d keys, %d values", #keys, #values)) end
    return keys, values
  end },
  { "read_batch", function(m)
    local all_k, all_v, cursor = {}, {}, nil
    repeat
      local keys, values
      keys, values, cursor = m:read_batch(cursor, SLICE)
      if #keys ~= #values then error(string.format("%d keys, %d values", #keys, #values)) end
      for i = 1, #keys do all_k[#all_k + 1] = keys[i]; all_v[#all_v + 1] = values[i] end
    until cursor == nil
    return all_k, all_v
  end },
}

--- a reader process: walks until the deadline, then prints its counts
local function reader(path, seconds, id)
  -- churn writes 0x5a5a...: beyond 2^53, so LuaJIT reads it as a decimal string
  local m = ebpf.open(path, { key = "u32", value = "u64", int64 = "string" })
  local deadline = os.time() + seconds
  local done, entries, errors, per = 0, 0, 0, {}
  local i = id
  repeat
    local w = walks[i % #walks + 1]
    i = i + 1
    local ok, keys, values = pcall(w[2], m)
    local problem = not ok and (w[1] .. ": " .. tostring(keys)) or check(w[1], keys, values)
    if problem then
      errors = errors + 1
      if errors <= MAX_ERRORS_SHOWN then io.write("error: ", problem, "\n") end
    else
      done = done + 1
      entries = entries + #keys
      per[w[1]] = (per[w[1]] or 0) + 1
    end
  until os.time() >= deadline
  m:close()
  local kinds = {}
  for _, w in ipairs(walks) do kinds[#kinds + 1] = w[1] .. " " .. (per[w[1]] or 0) end
  io.write(string.format("DONE %d %d %d (%s)\n", done, entries, errors, table.concat(kinds, ", ")))
end

-- ------------------------------------------------------------------ parent

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return body, tonumber(rc)
end

local function run(cmd)
  local out, rc = sh(cmd)
  if rc ~= 0 then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

--- starts `cmd` in the background under a time limit; returns a handle whose
-- :wait() gives its output and exit status (124 or 137: it overran the limit)
local spawned = {}
local function spawn(cmd, limit)
  local f = assert(io.popen(string.format("timeout -k 5 %d %s 2>&1; echo \"rc=$?\"", limit, cmd)))
  local p = {}
  function p.wait()
    local out = f:read("*a")
    f:close()
    spawned[p] = nil
    local body, rc = out:match("^(.-)rc=(%d+)%s*$")
    return body or out, tonumber(rc) or -1
  end
  spawned[p] = true
  return p
end

local function main(seconds, nreaders)
  local dir = run("mktemp -d /tmp/luaebpfsoakXXXXXX"):gsub("%s+$", "")
  local mounted = false
  local ok, failed = pcall(function()
    run("mount -t bpf bpf " .. dir)
    mounted = true
    local path = dir .. "/soak"
    local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = ENTRIES, name = "soak" }
    for k = 0, STABLE - 1 do assert(m:update(k, k)) end
    assert(m:pin(path))
    m:close()

    local limit = seconds + 60
    print(string.format("soak: %g s, %d readers (%s), churn on keys %d..%d of %s",
      seconds, nreaders, lua_bin(), LO, HI - 1, path))
    local churn = spawn(string.format("spec/churn %s %d %d %g", path, LO, HI, seconds), limit)
    local readers = {}
    for id = 1, nreaders do
      readers[id] = spawn(string.format("%s %s --reader %s %g %d", lua_bin(), arg[0], path,
        seconds, id), limit)
    end

    local bad = 0
    for id, r in ipairs(readers) do
      local out, rc = r:wait()
      local done, entries, errors, kinds = out:match("DONE (%d+) (%d+) (%d+) (%b())")
      for line in out:gmatch("[^\n]+") do
        if not line:match("^DONE ") then print(string.format("  reader %d: %s", id, line)) end
      end
      if not done then
        print(string.format("reader %d: did not finish (exit %d)", id, rc))
        bad = bad + 1
      else
        print(string.format("reader %d: %s walks %s, %s entries read, %s errors, exit %d",
          id, done, kinds, entries, errors, rc))
        if tonumber(errors) > 0 or rc ~= 0 or tonumber(done) == 0 then bad = bad + 1 end
      end
    end
    local out, rc = churn:wait()
    local inserts, deletes = out:match("(%d+) inserts, (%d+) deletes")
    if not inserts or rc ~= 0 then
      print(string.format("churn: failed (exit %d): %s", rc, out))
      bad = bad + 1
    else
      print(string.format("churn: %s inserts, %s deletes", inserts, deletes))
      if tonumber(inserts) == 0 or tonumber(deletes) == 0 then bad = bad + 1 end
    end

    -- the stable set survived
    m = ebpf.open(path, { key = "u32", value = "u64", int64 = "string" })
    for k = 0, STABLE - 1 do
      if m:lookup(k) ~= k then
        print(string.format("stable key %d: %s after the soak", k, tostring(m:lookup(k))))
        bad = bad + 1
        break
      end
    end
    m:close()
    return bad
  end)
  for p in pairs(spawned) do p.wait() end -- after an error: none left running
  if mounted then sh("umount " .. dir) end
  sh("rmdir " .. dir)
  if not ok then
    print("soak: " .. tostring(failed))
    return 1
  end
  print(failed == 0 and "soak: ok" or string.format("soak: FAILED (%d problems)", failed))
  return failed == 0 and 0 or 1
end

if arg[1] == "--reader" then
  reader(arg[2], tonumber(arg[3]), tonumber(arg[4]))
  os.exit(0)
end

local seconds, nreaders = tonumber(arg[1]), tonumber(arg[2] or 3)
if not seconds or not nreaders or seconds <= 0 or nreaders < 1 then
  io.stderr:write("usage: lua spec/soak.lua SECONDS [READERS]\n")
  os.exit(2)
end
os.exit(main(seconds, nreaders))

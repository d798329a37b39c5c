-- spec/pairs_spec.lua: m:pairs() and m:keys(), on both engines (batches,
-- the default where the kernel has them, and get_next_key with batch = false),
-- against bpftool's dump of real maps: every entry once, empty maps, key 0,
-- batches that grow, deletes from the loop body and from a second process,
-- breaking out of a loop, and the errors of a walk. Shared by every Lua
-- version: 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local le, hex, count, keyset = helpers.le, helpers.hex, helpers.count, helpers.keyset
local rows, collect, bpftool_fill = helpers.rows, helpers.collect, helpers.bpftool_fill
local raised = helpers.raised

describe("Map:pairs and Map:keys", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  describe("compared with bpftool's dump", function()
    local cases = {
      { type = "hash", entries = 64, fill = 50 },
      { type = "hash", entries = 2048, fill = 1500 },
      { type = "lru_hash", entries = 256, fill = 20 },
      { type = "percpu_hash", entries = 64, fill = 40 },
      { type = "lru_percpu_hash", entries = 256, fill = 20 },
      { type = "array", entries = 37, fill = 10 },
      { type = "percpu_array", entries = 9, fill = 4 },
    }
    -- each case on both engines: batches (the default for these types) and get_next_key
    local engines = {
      { label = "", opts = nil, fallback = false },
      { label = ", on get_next_key (batch = false)", opts = { batch = false }, fallback = true },
    }
    for _, c in ipairs(cases) do
      for _, e in ipairs(engines) do
        local label = c.type .. " with " .. c.fill .. " entries (max_entries " .. c.entries .. ")"
        it("yields every entry of a " .. label .. " exactly once, as bpftool dumps them" .. e.label,
          function()
          local path = fs:bpftool_map{ type = c.type, key = 4, value = 8, entries = c.entries }
          bpftool_fill(path, rows(0, c.fill - 1, function(k) return k * 7 + 3 end))
          local want, nwant = helpers.dump(path)
          local m = ebpf.open(path)
          finally(function() m:close() end)
          local got, n, dups = collect(m:pairs(e.opts))
          assert.are.same({}, dups)
          assert.are.equal(nwant, n)
          assert.are.same(want, got)
          assert.are.equal(e.fallback, m:last_read().fallback)
          if c.type:find("array") then
            assert.are.equal(c.entries, n)
          else
            assert.is_true(n > 0)
          end
          local keys, nk, kdups = collect(m:keys(e.opts))
          assert.are.same({}, kdups)
          assert.are.equal(nwant, nk)
          assert.are.same(keyset(want), keys)
        end)
      end
    end

    it("yields distinct per-CPU values of a percpu_hash in CPU order, as bpftool dumps them", function()
      local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 4, entries = 8 }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u32" })
      finally(function() m:close() end)
      local per = {}
      for cpu = 1, ebpf.ncpus() do per[cpu] = cpu * 100 end
      assert.is_true(m:update(5, per))
      local want = helpers.dump(path)[le(5, 4)]
      local got = collect(m:pairs())
      assert.are.equal(1, count(got))
      assert.are.equal(ebpf.ncpus(), #want)
      for cpu = 1, ebpf.ncpus() do
        assert.are.equal(hex(want[cpu]), hex(le(got[5][cpu], 4)))
      end
    end)

    it("decodes keys and values with the map's codecs", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 16 }
      bpftool_fill(path, rows(1, 5))
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      assert.are.same({ [1] = 10, [2] = 20, [3] = 30, [4] = 40, [5] = 50 }, (collect(m:pairs())))
    end)
  end)

  describe("on empty maps", function()
    for _, t in ipairs{ "hash", "lru_hash", "percpu_hash", "lru_percpu_hash" } do
      it("yields nothing from an empty " .. t, function()
        local path = fs:bpftool_map{ type = t, key = 4, value = 8, entries = 16 }
        local m = ebpf.open(path)
        finally(function() m:close() end)
        local _, n = collect(m:pairs())
        assert.are.equal(0, n)
        local _, nk = collect(m:keys())
        assert.are.equal(0, nk)
      end)
    end

    it("yields nothing from a hash whose entries were all deleted", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 16,
        fill = { [1] = 1, [2] = 2 } }
      helpers.run("bpftool map delete pinned " .. path .. " key 1 0 0 0")
      helpers.run("bpftool map delete pinned " .. path .. " key 2 0 0 0")
      local m = ebpf.open(path)
      finally(function() m:close() end)
      local _, n = collect(m:pairs())
      assert.are.equal(0, n)
    end)
  end)

  describe("key 0", function()
    it("yields key 0 when it is the only key of a hash", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 16, fill = { [0] = 5 } }
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      assert.are.same({ [0] = 5 }, (collect(m:pairs())))
      assert.are.same({ [0] = true }, (collect(m:keys())))
    end)

    it("yields key 0 among other keys of a hash", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 16,
        fill = { [0] = 5, [1] = 6, [2] = 7 } }
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      assert.are.same({ [0] = 5, [1] = 6, [2] = 7 }, (collect(m:pairs())))
    end)

    it("yields an all-zero 8-byte struct key of a percpu_hash", function()
      local path = fs:bpftool_map{ type = "percpu_hash", key = 8, value = 8, entries = 16,
        fill = { [string.rep("\0", 8)] = 9, [le(3, 8)] = 4 } }
      local m = ebpf.open(path, { key = { { "a", "u32" }, { "b", "u32" } }, value = "u64" })
      finally(function() m:close() end)
      local seen = {}
      for k, v in m:pairs() do seen[k.a .. ":" .. k.b] = v[1] end
      assert.are.same({ ["0:0"] = 9, ["3:0"] = 4 }, seen)
    end)

    it("yields index 0 of an array", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 3, fill = { [0] = 11 } }
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      assert.are.same({ [0] = 11, [1] = 0, [2] = 0 }, (collect(m:pairs())))
    end)
  end)

  describe("with batches that must grow", function()
    it("yields every entry once with n = 1 on a hash with many entries, growing the batch", function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 4096 }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      finally(function() m:close() end)
      for k = 0, 3999 do assert(m:update(k, k)) end
      local got, n, dups = collect(m:pairs{ n = 1 })
      assert.are.same({}, dups)
      assert.are.equal(4000, n)
      for k = 0, 3999 do assert(got[k] == k, "key " .. k .. " missing or wrong") end
      local lr = m:last_read()
      assert.is_true(lr.grows > 0, "no ENOSPC grow on 4000 entries in 4096 buckets")
      assert.is_true(lr.batch_size > 1)
      assert.are.equal(4000, lr.entries)
      assert.is_false(lr.fallback)
    end)
  end)

  describe("deleting from the loop body", function()
    local function hash_map(n, max)
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = max or 2 * n }
      bpftool_fill(path, rows(0, n - 1))
      return ebpf.open(path, { access = "rw", key = "u32", value = "u64" }), path
    end

    it("yields every key once when the body deletes each current key", function()
      local m, path = hash_map(200)
      finally(function() m:close() end)
      local walk = m:pairs()
      local got, n, dups = collect(function()
        local k, v = walk()
        if k ~= nil then assert.is_true(m:delete(k)) end
        return k, v
      end)
      assert.are.same({}, dups)
      assert.are.equal(200, n)
      for k = 0, 199 do assert.are.equal(k * 10, got[k]) end
      local _, left = helpers.dump(path)
      assert.are.equal(0, left)
    end)

    it("yields every key once when the body deletes every other current key (50 keys)", function()
      local m, path = hash_map(50)
      finally(function() m:close() end)
      local seen, dups, i = {}, {}, 0
      for k, v in m:pairs() do
        if seen[k] then dups[#dups + 1] = k end
        seen[k] = v
        i = i + 1
        if i % 2 == 0 then m:delete(k) end
      end
      assert.are.same({}, dups)
      assert.are.equal(50, count(seen))
      local _, left = helpers.dump(path)
      assert.are.equal(25, left)
    end)

    it("yields every key once when the body deletes every other current key (1000 keys)", function()
      local m, path = hash_map(1000, 1024)
      finally(function() m:close() end)
      local seen, dups, i = {}, {}, 0
      local ok, err = pcall(function()
        for k in m:keys() do
          if seen[k] then dups[#dups + 1] = k end
          seen[k] = true
          i = i + 1
          if i % 2 == 0 then m:delete(k) end
        end
      end)
      assert.is_true(ok, tostring(err))
      assert.are.same({}, dups)
      assert.are.equal(1000, count(seen))
      local _, left = helpers.dump(path)
      assert.are.equal(500, left)
    end)

    it("yields every key of a percpu_hash once when the body deletes each current key", function()
      local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 8, entries = 64 }
      bpftool_fill(path, rows(0, 39))
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      finally(function() m:close() end)
      local seen, n = {}, 0
      for k, v in m:pairs() do
        assert.is_nil(seen[k])
        seen[k] = v[1]
        n = n + 1
        m:delete(k)
      end
      assert.are.equal(40, n)
      for k = 0, 39 do assert.are.equal(k * 10, seen[k]) end
    end)

    -- get_next_key walks the live map; a batch walk may yield an entry from a
    -- batch it already read (DESIGN: changes during a walk may or may not be seen)
    it("on get_next_key, does not yield a key the body deleted before the walk reached it", function()
      local m, path = hash_map(50)
      finally(function() m:close() end)
      local order = {}
      for k in m:keys() do order[#order + 1] = k end -- the walk's order
      local victim = order[30]
      local seen, n, first = {}, 0, true
      for k, v in m:pairs{ batch = false } do
        if first then
          first = false
          assert.is_true(m:delete(victim))
        end
        assert.is_nil(seen[k])
        seen[k] = v
        n = n + 1
      end
      assert.is_nil(seen[victim])
      assert.are.equal(49, n)
      local want = keyset((helpers.dump(path)))
      local got = {}
      for k in pairs(seen) do got[le(k, 4)] = true end
      assert.are.same(want, got)
    end)

    it("on get_next_key, does not yield a key bpftool deleted before the walk reached it", function()
      local m, path = hash_map(20)
      finally(function() m:close() end)
      local order = {}
      for k in m:keys() do order[#order + 1] = k end
      local victims = { order[5], order[20] }
      local seen, n, first = {}, 0, true
      for k in m:keys{ batch = false } do
        if first then
          first = false
          for _, v in ipairs(victims) do
            helpers.run("bpftool map delete pinned " .. path .. " key " .. helpers.hex_args(le(v, 4)))
          end
        end
        assert.is_nil(seen[k])
        seen[k] = true
        n = n + 1
      end
      assert.is_nil(seen[victims[1]])
      assert.is_nil(seen[victims[2]])
      assert.are.equal(18, n)
    end)

    it("on get_next_key, does not yield a key deleted after the body deleted the current key", function()
      local m = hash_map(30)
      finally(function() m:close() end)
      local order = {}
      for k in m:keys() do order[#order + 1] = k end
      local seen, n, step = {}, 0, 0
      for k in m:keys{ batch = false } do
        step = step + 1
        if step == 3 then
          m:delete(k)                -- the walk restarts from the first key
          m:delete(order[25])        -- and this one must not come round
        end
        assert.is_nil(seen[k])
        seen[k] = true
        n = n + 1
      end
      assert.is_nil(seen[order[25]])
      assert.are.equal(29, n)
    end)

    it("never yields an lpm_trie key twice when the walk deletes the key it stands on", function()
      local ok, t = pcall(ebpf.create, { type = "lpm_trie", max_entries = 64, flags = { "no_prealloc" },
        key = { { "prefixlen", "u32" }, { "addr", "be32" } }, value = "u32" })
      if not ok then return pending("needs lpm_trie maps: " .. tostring(t)) end
      finally(function() t:close() end)
      for i = 0, 19 do assert(t:update({ prefixlen = 24, addr = 0x0a000000 + i * 256 }, i)) end
      local seen, n = {}, 0
      for k in t:keys{ n = 3 } do
        assert.is_nil(seen[k.addr], "key yielded twice")
        seen[k.addr] = true
        n = n + 1
        assert(t:delete(k)) -- the kernel restarts a trie walk at its leftmost key
      end
      assert.are.equal(20, n)
      local keys = t:read_batch(nil, 3)
      assert.are.equal(0, #keys)
    end)
  end)

  describe("while a second process churns the map", function()
    it("completes every walk without error or duplicate and yields every stable key", function()
      local STABLE, CHURN = 300, 100
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, entries = 1024 }
      bpftool_fill(path, rows(0, STABLE - 1))
      -- the churner: one bpftool process per round adds then deletes 100 keys
      local file = os.tmpname()
      local f = assert(io.open(file, "w"))
      for k = 100000, 100000 + CHURN - 1 do
        f:write(string.format("map update pinned %s key %s value %s\n", path,
          helpers.hex_args(le(k, 4)), helpers.hex_args(le(1, 8))))
      end
      for k = 100000, 100000 + CHURN - 1 do
        f:write(string.format("map delete pinned %s key %s\n", path, helpers.hex_args(le(k, 4))))
      end
      f:close()
      local p = assert(io.popen("setsid sh -c 'while :; do bpftool batch file " .. file ..
        "; done' >/dev/null 2>&1 & echo $!"))
      local pid = tonumber((p:read("*a"):gsub("%s", "")))
      p:close()
      assert.is_number(pid)
      local m
      finally(function() -- one finally per it: busted keeps only the last
        if m then m:close() end
        os.execute("kill -TERM -" .. pid .. " 2>/dev/null") -- the churner's process group
        for _ = 1, 200 do
          local _, alive = helpers.sh("kill -0 " .. pid)
          if not alive then break end
          helpers.sh("sleep 0.02")
        end
        os.remove(file)
      end)
      m = ebpf.open(path, { key = "u32", value = "u64" })
      local walks, errors, partial, churn_seen = 0, {}, 0, 0
      local deadline = os.clock() + 1.5
      while os.clock() < deadline or walks < 50 do
        walks = walks + 1
        local seen, dups, bad = {}, {}, {}
        local ok, err = pcall(function()
          for k, v in m:pairs() do
            if seen[k] then dups[#dups + 1] = k end
            seen[k] = true
            if k < STABLE then
              if v ~= k * 10 then bad[#bad + 1] = k end
            elseif k < 100000 or k >= 100000 + CHURN then
              bad[#bad + 1] = k
            end
          end
        end)
        if not ok then errors[#errors + 1] = tostring(err) end
        assert.are.same({}, dups)
        assert.are.same({}, bad)
        local c = 0
        for k = 0, STABLE - 1 do
          if ok and not seen[k] then bad[#bad + 1] = k end
        end
        for k = 100000, 100000 + CHURN - 1 do
          if seen[k] then c = c + 1 end
        end
        assert.are.same({}, bad)
        if c > 0 then churn_seen = churn_seen + 1 end
        if c > 0 and c < CHURN then partial = partial + 1 end
        if walks > 100000 then break end
      end
      assert.are.same({}, errors)
      -- the churn overlapped the walks (else this test proves nothing)
      assert.is_true(churn_seen > 0, "no walk saw a churned key")
      assert.is_true(partial > 0, "no walk saw the churn half done")
    end)
  end)

  describe("breaking out of a loop", function()
    it("leaves the map walkable: after break and collectgarbage later walks are complete", function()
      local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 2048,
        key = "u32", value = "u64" }
      finally(function() m:close() end)
      for k = 0, 1499 do assert(m:update(k, k + 3)) end
      for round = 1, 20 do
        local n = 0
        for _ in m:pairs{ n = 16 } do
          n = n + 1
          if n == round then break end
        end
        assert.are.equal(round, n)
        for _ in m:keys() do break end
      end
      collectgarbage()
      collectgarbage()
      local got, n, dups = collect(m:pairs())
      assert.are.same({}, dups)
      assert.are.equal(1500, n)
      for k = 0, 1499 do assert(got[k] == k + 3) end
      local keys = m:dump()
      assert.are.equal(1500, #keys)
    end)

    it("ends or raises, never crashes, when a broken-out-of iterator is called again", function()
      if _VERSION ~= "Lua 5.4" then return pending("needs Lua 5.4's to-be-closed loop value") end
      -- in a child process: a crash there must fail this test, not the whole run
      local out, ok = helpers.child([[
        local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 64,
          key = "u32", value = "u64" }
        for k = 1, 50 do assert(m:update(k, k)) end
        local f, s, c, t = m:pairs{ n = 4 }
        for _ in f, s, c, t do break end
        local ok, r = pcall(f, s, nil)
        io.write("first ", tostring(ok), " ", tostring(r), "\n")
        ok, r = pcall(f, s, nil)
        io.write("second ", tostring(ok), " ", tostring(r), "\n")
        m:close()
        io.write("done\n")
      ]])
      assert.is_true(ok, "the child died: " .. out)
      assert.matches("done", out, 1, true)
      -- it either ended (nil) or raised an error: no garbage key
      local first = out:match("first (%S+ [^\n]*)")
      assert.is_truthy(first ~= nil and (first == "true nil" or first:match("^false ")), "first call gave " .. tostring(first))
    end)

    it("keeps an abandoned iterator harmless after its map was closed and collected", function()
      local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 64,
        key = "u32", value = "u64" }
      for k = 1, 50 do assert(m:update(k, k)) end
      local step, state, ctl = m:pairs{ n = 4 }
      local k1 = step(state, ctl)
      assert.is_not_nil(k1)
      m:close()
      local err = raised(step, state, k1)
      assert.are.equal("closed", err.class)
      step, state, ctl = nil, nil, nil
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("errors", function()
    it("raises class 'closed' from pairs and keys on a closed map", function()
      local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 4 }
      m:update(1, 1)
      m:close()
      local err = raised(function() return m:pairs() end)
      assert.are.equal("closed", err.class)
      err = raised(function() return m:keys() end)
      assert.are.equal("closed", err.class)
    end)

    it("raises class 'closed' on the next step after the body closes the map", function()
      local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 8 }
      for k = 1, 5 do m:update(k, k) end
      local steps = 0
      local err = raised(function()
        for _ in m:pairs() do
          steps = steps + 1
          m:close()
        end
      end)
      assert.are.equal(1, steps)
      assert.are.equal("closed", err.class)
      assert.are.equal("EBADF", err.code)
    end)

    it("raises class 'closed' from keys() on the next step after close", function()
      local m = ebpf.create{ type = "array", key = "u32", value = "u64", max_entries = 8 }
      local it = m:keys()
      assert.are.equal(0, it())
      m:close()
      local err = raised(function() return it() end)
      assert.are.equal("closed", err.class)
    end)

    for _, t in ipairs{ "queue", "stack" } do
      it("raises an error from pairs and keys on a " .. t .. " (no keys to walk)", function()
        local m = ebpf.create{ type = t, key_size = 0, value_size = 4, max_entries = 4 }
        finally(function() m:close() end)
        assert.is_true(m:update(nil, "\1\0\0\0"))
        local steps = 0
        local function walk(method)
          for _ in m[method](m) do
            steps = steps + 1
            if steps > 10 then error("still walking after 10 steps") end
          end
        end
        local err = raised(function() walk("pairs") end)
        assert.are.equal("table", type(err))
        assert.are.equal("unsupported", err.class)
        assert.are.equal("pairs", err.op)
        err = raised(function() walk("keys") end)
        assert.are.equal("unsupported", err.class)
        assert.are.equal(0, steps)
      end)
    end

    it("keeps raising, never yielding, once a step has raised", function()
      local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 8 }
      m:update(1, 1); m:update(2, 2)
      local it = m:pairs()
      it()
      m:close()
      raised(function() return it() end)
      local err = raised(function() return it() end)
      assert.are.equal("closed", err.class)
    end)
  end)
end)

-- spec/mmap_spec.lua: zero-copy views of BPF_F_MMAPABLE arrays (m:mmap(),
-- view:get(i), #view, view:close()), checked against m:lookup and bpftool.
-- Shared by every Lua version: 5.1 syntax.
local ebpf, helpers = require "luaebpf", require "spec.helpers"

local le = helpers.le
local MMAPABLE = 1024 -- BPF_F_MMAPABLE, for bpftool

local raised = helpers.raised

local TRIPLE = { { "a", "u32" }, { "b", "u32" }, { "c", "u32" } } -- 12 bytes

describe("Map:mmap", function()
  local fs
  setup(function() fs = helpers.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- an mmapable array made by ebpf.create (read-write)
  local function created(value_size, entries, value)
    local m = ebpf.create{ type = "array", key_size = 4, value_size = value_size,
      max_entries = entries, flags = { "mmapable" }, key = "u32", value = value }
    finally(function() m:close() end)
    return m
  end

  describe("on an array created with flags { \"mmapable\" }", function()
    it("has #view == max_entries and view:get(i) == m:lookup(i) for every i", function()
      local m = created(8, 100, "u64")
      for i = 0, 99 do assert(m:update(i, i * i + 3)) end
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(100, #view)
      for i = 0, 99 do
        assert.are.equal(m:lookup(i), view:get(i))
        assert.are.equal(i * i + 3, view:get(i))
      end
    end)

    it("sees a write through m:update at once", function()
      local m = created(8, 16, "u64")
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(0, view:get(5))
      assert(m:update(5, 123456789))
      assert.are.equal(123456789, view:get(5))
      assert(m:update(5, 7))
      assert.are.equal(7, view:get(5))
      assert.are.equal(0, view:get(4))
      assert.are.equal(0, view:get(6))
    end)

    it("reads 4-byte values at a stride of 8", function()
      local m = created(4, 33, "u32")
      for i = 0, 32 do assert(m:update(i, 0xdead0000 + i)) end
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(33, #view)
      for i = 0, 32 do
        assert.are.equal(0xdead0000 + i, view:get(i))
        assert.are.equal(m:lookup(i), view:get(i))
      end
    end)

    it("reads 12-byte struct values at a stride of 16, field by field", function()
      local m = created(12, 50, TRIPLE)
      for i = 0, 49 do assert(m:update(i, { a = i, b = i * 2 + 1, c = 0xffffffff - i })) end
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(50, #view)
      for i = 0, 49 do
        assert.are.same({ a = i, b = i * 2 + 1, c = 0xffffffff - i }, view:get(i))
        assert.are.same(m:lookup(i), view:get(i))
      end
    end)

    it("decodes a struct with padding as its codec lays it out", function()
      local codec = { { "pid", "u32" }, { "comm", "char[8]" }, { "count", "u64" } } -- 24 bytes
      local m = created(24, 4, codec)
      assert(m:update(2, { pid = 42, comm = "lua", count = 99 }))
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.same({ pid = 42, comm = "lua", count = 99 }, view:get(2))
      assert.are.same({ pid = 0, comm = "", count = 0 }, view:get(3))
    end)

    it("spans more than one page", function()
      local m = created(8, 1000, "u64") -- 8000 bytes
      assert(m:update(0, 1))
      assert(m:update(511, 511))
      assert(m:update(512, 512))
      assert(m:update(999, 999))
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(1, view:get(0))
      assert.are.equal(511, view:get(511))
      assert.are.equal(512, view:get(512))
      assert.are.equal(999, view:get(999))
    end)
  end)

  describe("on a bpftool-created mmapable array (flags 1024) opened \"rw\"", function()
    it("reads what bpftool wrote and what luaebpf writes", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 12, entries = 20,
        flags = MMAPABLE, fill = { [3] = le(7, 4) .. le(8, 4) .. le(9, 4), [19] = string.rep("\255", 12) } }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = TRIPLE })
      finally(function() m:close() end)
      assert.are.same({ "mmapable" }, m:info().flags)
      local view = m:mmap()
      finally(function() view:close() end)
      assert.are.equal(20, #view)
      assert.are.same({ a = 7, b = 8, c = 9 }, view:get(3))
      assert.are.same({ a = 0xffffffff, b = 0xffffffff, c = 0xffffffff }, view:get(19))
      for i = 0, 19 do assert.are.same(m:lookup(i), view:get(i)) end
      -- bpftool writes, the view sees it at once
      fs:bpftool_update(path, le(4, 4), le(1, 4) .. le(2, 4) .. le(3, 4))
      assert.are.same({ a = 1, b = 2, c = 3 }, view:get(4))
    end)

    it("agrees with bpftool's dump for every element", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 64, flags = MMAPABLE }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "raw" })
      finally(function() m:close() end)
      for i = 0, 63, 5 do assert(m:update(i, le(i * 1000 + 1, 8))) end
      local view = m:mmap()
      finally(function() view:close() end)
      local dump, n = helpers.dump(path)
      assert.are.equal(64, n)
      for i = 0, 63 do assert.are.equal(dump[le(i, 4)], view:get(i)) end
    end)
  end)

  describe("a view's lifetime", function()
    it("keeps working after m:close(), seeing later writes", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8, flags = MMAPABLE }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      assert(m:update(1, 11))
      local view = m:mmap()
      finally(function() view:close() end)
      m:close()
      assert.are.equal(11, view:get(1))
      fs:bpftool_update(path, le(1, 4), le(12, 8))
      assert.are.equal(12, view:get(1))
      assert.are.equal(8, #view)
    end)

    it("keeps working after the map handle is garbage collected", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8, flags = MMAPABLE }
      local view
      do
        local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
        assert(m:update(2, 22))
        view = m:mmap()
      end
      finally(function() view:close() end)
      collectgarbage()
      collectgarbage()
      assert.are.equal(22, view:get(2))
      fs:bpftool_update(path, le(2, 4), le(23, 8))
      assert.are.equal(23, view:get(2))
    end)

    it("keeps an array whose pin is gone mapped and readable", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8, flags = MMAPABLE,
        fill = { [6] = 66 } }
      local m = ebpf.open(path, { access = "rw", key = "u32", value = "u64" })
      local view = m:mmap()
      finally(function() view:close() end)
      m:close()
      os.remove(path)
      collectgarbage()
      assert.are.equal(66, view:get(6))
    end)

    it("stays safe to read after the map's value codec is replaced and collected", function()
      local m = created(12, 4, TRIPLE)
      assert(m:update(1, { a = 1, b = 2, c = 3 }))
      local view = m:mmap()
      finally(function() view:close() end)
      m:codec{ value = "raw" }
      collectgarbage()
      collectgarbage()
      local junk = {}
      for i = 1, 10000 do junk[i] = { i } end
      local v = view:get(1)
      -- the codec of the mmap call, or the map's new one: never garbage
      if type(v) == "table" then
        assert.are.same({ a = 1, b = 2, c = 3 }, v)
      else
        assert.are.equal(le(1, 4) .. le(2, 4) .. le(3, 4), v)
      end
    end)

    it("raises class 'closed' from view:get after view:close(), and close can be repeated", function()
      local m = created(8, 4, "u64")
      local view = m:mmap()
      view:close()
      view:close()
      local err = raised(view.get, view, 0)
      assert.are.equal("table", type(err))
      assert.are.equal("closed", err.class)
      -- the map itself is fine
      assert(m:update(0, 1))
      assert.are.equal(1, m:lookup(0))
    end)

    it("maps a second view independently of a closed first one", function()
      local m = created(8, 4, "u64")
      assert(m:update(3, 33))
      local v1 = m:mmap()
      local v2 = m:mmap()
      finally(function() v2:close() end)
      v1:close()
      assert.are.equal(33, v2:get(3))
    end)

    it("raises class 'closed' when mmap is called on a closed map", function()
      local m = ebpf.create{ type = "array", key_size = 4, value_size = 8, max_entries = 4,
        flags = { "mmapable" } }
      m:close()
      local err = raised(m.mmap, m)
      assert.are.equal("closed", err.class)
    end)
  end)

  describe("errors", function()
    it("raises class 'permission' on a read-only handle, saying to open with access \"rw\"", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8, flags = MMAPABLE }
      local m = ebpf.open(path, { key = "u32", value = "u64" })
      finally(function() m:close() end)
      local err = raised(m.mmap, m)
      assert.are.equal("table", type(err))
      assert.are.equal("permission", err.class)
      assert.matches('access = "rw"', tostring(err), 1, true)
    end)

    it("raises class 'permission' on a write-only handle", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8, flags = MMAPABLE }
      local m = ebpf.open(path, { access = "w", key = "u32", value = "u64" })
      finally(function() m:close() end)
      local err = raised(m.mmap, m)
      assert.are.equal("permission", err.class)
      assert.matches('access = "rw"', tostring(err), 1, true)
    end)

    it("raises class 'unsupported' on a hash", function()
      local m = ebpf.create{ type = "hash", key_size = 4, value_size = 8, max_entries = 8 }
      finally(function() m:close() end)
      local err = raised(m.mmap, m)
      assert.are.equal("unsupported", err.class)
      assert.matches("mmapable", tostring(err), 1, true)
    end)

    it("raises class 'unsupported' on an array without the mmapable flag", function()
      local path = fs:bpftool_map{ type = "array", key = 4, value = 8, entries = 8 }
      local m = ebpf.open(path, { access = "rw" })
      finally(function() m:close() end)
      local err = raised(m.mmap, m)
      assert.are.equal("unsupported", err.class)
      assert.matches("mmapable", tostring(err), 1, true)
    end)

    it("raises class 'unsupported' on a percpu_array", function()
      local m = ebpf.create{ type = "percpu_array", key_size = 4, value_size = 8, max_entries = 8 }
      finally(function() m:close() end)
      local err = raised(m.mmap, m)
      assert.are.equal("unsupported", err.class)
    end)

    describe("view:get", function()
      local m, view
      before_each(function()
        m = ebpf.create{ type = "array", key_size = 4, value_size = 8, max_entries = 10,
          flags = { "mmapable" }, key = "u32", value = "u64" }
        view = m:mmap()
      end)
      after_each(function()
        view:close()
        m:close()
      end)

      it("raises an argument error for index -1, naming the range and the index", function()
        local err = raised(view.get, view, -1)
        assert.are.equal("string", type(err))
        assert.matches("bad argument", err, 1, true)
        assert.matches("0..9", err, 1, true)
        assert.matches("got -1", err, 1, true)
      end)

      it("raises an argument error for index max_entries", function()
        local err = raised(view.get, view, 10)
        assert.are.equal("string", type(err))
        assert.matches("0..9", err, 1, true)
        assert.matches("got 10", err, 1, true)
      end)

      it("raises an argument error for the string \"1\"", function()
        local err = raised(view.get, view, "1")
        assert.are.equal("string", type(err))
        assert.matches("0..9", err, 1, true)
        assert.matches("got string", err, 1, true)
      end)

      it("raises an argument error for a missing index", function()
        local err = raised(view.get, view)
        assert.are.equal("string", type(err))
        assert.matches("0..9", err, 1, true)
      end)

      it("reads the last element, index max_entries - 1", function()
        assert(m:update(9, 99))
        assert.are.equal(99, view:get(9))
      end)
    end)
  end)

  it("prints a view as luaebpf.View with its element count", function()
    local m = created(8, 7, "u64")
    local view = m:mmap()
    assert.matches("^luaebpf.View: 7 elements", tostring(view))
    view:close()
    assert.matches("closed", tostring(view), 1, true)
  end)
end)

-- spec/meta_spec.lua: the repository keeps its promises about itself: every
-- name the core registers is documented, and the rockspec builds every C file.
local ebpf = require "luaebpf"
local helpers = require "spec.helpers"

local read = helpers.read_file

describe("README.md", function()
  local readme = read("README.md")

  it("documents every function of the module table", function()
    for name in pairs(ebpf) do
      assert.is_truthy(readme:find("ebpf." .. name, 1, true),
        "README.md does not mention ebpf." .. name)
    end
  end)

  it("documents every Object, Link, Program, View, Ringbuf and Perfbuf method", function()
    for prefix, methods in pairs{ ["obj:"] = ebpf.Object, ["link:"] = ebpf.Link,
                                  ["prog:"] = ebpf.Program,
                                  ["view:"] = ebpf.View, ["rb:"] = ebpf.Ringbuf or {},
                                  ["pb:"] = ebpf.Perfbuf or {} } do
      for name in pairs(methods) do
        assert.is_truthy(readme:find(prefix .. name, 1, true),
          "README.md does not mention " .. prefix .. name)
      end
    end
  end)

  it("documents every Map method", function()
    for name in pairs(ebpf.Map) do
      assert.is_truthy(readme:find("m:" .. name, 1, true),
        "README.md does not mention m:" .. name)
    end
  end)
end)

describe("rockspec", function()
  it("lists exactly the C sources in luaebpf/", function()
    local rock = read("rockspec/luaebpf-scm-1.rockspec")
    local listed = {}
    for src in rock:gmatch('"(luaebpf/[%w_]+%.c)"') do listed[#listed + 1] = src end
    table.sort(listed)
    local present = {}
    for src in helpers.run("ls luaebpf/*.c"):gmatch("%S+") do present[#present + 1] = src end
    table.sort(present)
    assert.are.same(present, listed)
  end)
end)

-- spec/tooling_defects_spec.lua: what issue 10 found around the module rather
-- than in it: Prometheus names that collide and types that are not real
-- (item 10), the make and LuaRocks builds (17), README's first example (18),
-- examples/maps.lua's unsigned values (19), what each make target installs
-- (21), the licence and the rockspec's source (22). Builds, installs and
-- examples run for real, in temporary directories where they write files.
-- Shared by every Lua version: 5.1 syntax.
local ebpf, H = require "luaebpf", require "spec.helpers"
local prom = require "luaebpf.prometheus"

local U64MAX = "18446744073709551615"

-- a make run from a spec must not inherit the make that runs busted
-- (MAKEFLAGS and the environment carry its command-line variables: LUA=, ...)
local MAKE_ENV = "unset MAKEFLAGS MFLAGS MAKELEVEL LUA LUA_PC LUA_INCDIR BUSTED_ARGS; "

local read, write, has = H.read_file, H.write_file, H.has

local lines = H.lines

local function tmpdir() return H.tmpdir("luaebpf-tooling-") end

-- ------------------------------------------------------------ item 10

-- `promtool check metrics` on an exposition text: true, or false and why
local function promtool(text)
  local file = os.tmpname()
  write(file, text)
  local out, ok = H.sh("promtool check metrics < " .. file)
  os.remove(file)
  return ok, out
end

describe("luaebpf.prometheus names and types", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  -- a u32 x u32 -> u64 x u64 hash whose field names collide once made valid
  local function colliding_map(key, value)
    local path = fs:bpftool_map{ type = "hash", key = 8, value = 16,
      fill = { [H.le(1, 4) .. H.le(2, 4)] = H.le(3, 8) .. H.le(4, 8) } }
    return ebpf.open(path, { key = key, value = value })
  end

  -- the cases, each the text of one map: prom.text(colliding or plain map, opts)
  local PLAIN_KEY = { { "k", "u32" }, { "l", "u32" } }
  local PLAIN_VALUE = { { "v", "u64" }, { "w", "u64" } }
  local cases = {
    keys = function()
      return colliding_map({ { "a_b", "u32" }, { "a.b", "u32" } }, PLAIN_VALUE),
        { name = "tooling_keys", value = "v" }
    end,
    const = function()
      local path = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [7] = 9 } }
      return ebpf.open(path, { key = "u32", value = "u64" }),
        { name = "tooling_const", const_labels = { key = "x" } }
    end,
    values = function()
      return colliding_map(PLAIN_KEY, { { "x_y", "u64" }, { "x.y", "u64" } }), { name = "tooling_vals" }
    end,
    dotted = function()
      return colliding_map(PLAIN_KEY, { { "x_y", "u64" }, { "x.y", "u64" } }),
        { name = "tooling_dotted", value = "x.y" }
    end,
    labels = function()
      return colliding_map(PLAIN_KEY, PLAIN_VALUE), { name = "tooling_fn", value = "v",
        labels = function(k) return { ["p.q"] = k.k, p_q = k.l } end }
    end,
  }
  local function text_of(case)
    local m, opts = cases[case]()
    local ok, text = pcall(prom.text, m, opts)
    m:close()
    if not ok then error(text, 0) end
    return text
  end

  it("gives struct key fields whose label names collide distinct labels, _2 in field order", function()
    local text = text_of("keys")
    assert.is_true(lines(text)['tooling_keys{a_b="1",a_b_2="2"} 3'], text)
  end)

  it("keeps constant labels' names and suffixes a key label that takes one", function()
    local text = text_of("const")
    assert.is_true(lines(text)['tooling_const{key="x",key_2="7"} 9'], text)
  end)

  it("makes one family per field of a struct value even when field names collide", function()
    local text = text_of("values")
    local l = lines(text)
    assert.is_true(l['tooling_vals_x_y{k="1",l="2"} 3'], text)
    assert.is_true(l['tooling_vals_x_y_2{k="1",l="2"} 4'], text)
    assert.is_truthy(text:find("\n# HELP tooling_vals_x_y_2 [^\n]*, field x%.y\n"), text)
    -- opts.value names the field "x.y" itself
    local dotted = text_of("dotted")
    assert.is_true(lines(dotted)['tooling_dotted{k="1",l="2"} 4'], dotted)
  end)

  it("suffixes colliding names from an opts.labels table in name order", function()
    local text = text_of("labels")
    assert.is_true(lines(text)['tooling_fn{p_q="1",p_q_2="2"} 3'], text)
  end)

  it("writes text that promtool check metrics accepts in every case", function()
    if not has("promtool") then return pending("needs promtool (Debian's prometheus: make deps-test)") end
    -- the check catches what used to come out
    assert.is_false((promtool('# HELP t t\n# TYPE t gauge\nt{a_b="1",a_b="2"} 3\n')))
    local names = {}
    for case in pairs(cases) do names[#names + 1] = case end
    table.sort(names)
    for _, case in ipairs(names) do
      local text = text_of(case)
      local ok, out = promtool(text)
      assert(ok, case .. ": promtool refused:\n" .. out .. "\n" .. text)
    end
  end)

  it("refuses the summary type; a histogram is never a plain sample per entry", function()
    local _, msg = H.raised(prom.family, { name = "tooling_h", type = "summary" })
    H.mentions(msg, { "summary", "not supported" })
    local m = colliding_map(PLAIN_KEY, PLAIN_VALUE)
    local ok, err = pcall(prom.text, m, { name = "tooling_h", value = "v", type = "summary" })
    assert.is_false(ok)
    H.mentions(err, { "type 'summary' is not supported" })
    -- histogram families are real now (spec/histogram_spec.lua); asking for
    -- one value per entry under that type is refused, not printed as samples
    ok, err = pcall(prom.text, m, { name = "tooling_h", value = "v", type = "histogram" })
    m:close()
    assert.is_false(ok)
    H.mentions(err, { "histogram", "value and labels do not apply" })
    local fam = prom.family{ name = "tooling_h", type = "histogram" }
    _, msg = H.raised(fam.add, fam, {}, 5)
    H.mentions(msg, { "tooling_h", "buckets", "expected" })
    assert.has_no_error(function() prom.family{ name = "tooling_c", type = "counter" } end)
  end)
end)

-- ------------------------------------------------------------ item 17

-- the symbols a shared object exports (defined, text)
local function exported(so)
  local out = H.run("nm -D --defined-only " .. so)
  local names = {}
  for name in out:gmatch("%x+ T ([%w_]+)") do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- object files and shared objects in the source directory luaebpf/
local function in_tree_builds(root)
  local out = H.run("cd " .. root .. " && ls luaebpf")
  local found = {}
  for name in out:gmatch("%S+") do
    if name:find("%.o$") or name:find("%.so$") then found[#found + 1] = name end
  end
  return found
end

describe("the make build and the LuaRocks build", function()
  it("stay apart: luarocks make leaves make's module and its flags alone", function()
    if _VERSION ~= "Lua 5.4" then return pending("runs under Lua 5.4, the version both build") end
    if not has("luarocks") then return pending("needs luarocks (make deps-test)") end
    local root, rocks = tmpdir(), tmpdir()
    finally(function() H.run("rm -rf " .. root .. " " .. rocks) end)
    -- a copy of the checkout (the BPF objects too, with their times: not rebuilt)
    H.run("git ls-files -co --exclude-standard -z | xargs -0 cp -p --parents -t " .. root)
    H.run("cp -p bpf/*.bpf.o " .. root .. "/bpf/")
    local make = MAKE_ENV .. "cd " .. root .. " && make --no-print-directory -j4 "
    H.run(make)
    assert.are.same({}, in_tree_builds(root))

    -- the module make test loads: by the cpath it gives busted
    local cpath = H.run(make .. "-n test"):match("%-%-cpath='%./([^']+)'")
    assert.is_truthy(cpath)
    local so = root .. "/" .. cpath:gsub("%?", "luaebpf/core")
    assert.are.same({ "luaopen_luaebpf_core" }, exported(so))

    H.run(MAKE_ENV .. "cd " .. root .. " && luarocks --lua-version=5.4 make "
      .. "rockspec/luaebpf-scm-1.rockspec --tree " .. rocks)
    -- the rock works on its own, from elsewhere
    local out = H.run(string.format("cd / && lua5.4 -e 'package.path = %q; package.cpath = %q; "
      .. "print(require(\"luaebpf\").ncpus())'", rocks .. "/share/lua/5.4/?.lua;"
      .. rocks .. "/share/lua/5.4/?/init.lua", rocks .. "/lib/lua/5.4/?.so"))
    assert.are.equal(tostring(ebpf.ncpus()), (out:gsub("%s+$", "")))
    -- built without -fvisibility=hidden, it still exports only its luaopen
    assert.are.same({ "luaopen_luaebpf_core" }, exported(rocks .. "/lib/lua/5.4/luaebpf/core.so"))

    H.run(make)
    assert.are.same({ "luaopen_luaebpf_core" }, exported(so))
    -- make clean takes what luarocks left in the tree too
    H.run(make .. "clean")
    assert.are.same({}, in_tree_builds(root))
  end)
end)

-- ------------------------------------------------------------ item 18

describe("README's first example", function()
  local readme = read("README.md")

  it("opens the README, and says how long make test takes", function()
    local first = readme:match("\n## ([^\n]+)")
    assert.are.equal("Try it", first)
    assert.is_truthy(readme:find("`make test` takes about %d+ s"))
  end)

  it("runs verbatim on this machine: a bpffs of its own, a map made, read from a script", function()
    local block = readme:match("\n## Try it\n.-```sh\n(.-)```")
    assert.is_truthy(block)
    local file = os.tmpname()
    write(file, "set -e\n" .. block .. 'echo "dir=$dir"\n')
    local out, ok = H.sh(MAKE_ENV .. "bash " .. file)
    os.remove(file)
    assert(ok, out)
    local l = lines(out)
    assert.is_true(l["1\t10"], out)
    assert.is_true(l["2\t20"], out)
    -- nothing left mounted, nor the directory
    local dir = out:match("\ndir=(/[^\n]+)\n")
    assert.is_truthy(dir, out)
    assert.is_nil(read("/proc/mounts"):find(" " .. dir .. " ", 1, true))
    local _, exists = H.sh("test -e " .. dir)
    assert.is_false(exists)
    -- the script it shows is the one it runs
    local shown = readme:match("\n## Try it\n.-```lua\n(.-)```")
    assert.are.equal(shown, (read("examples/try.lua"):gsub("^%-%-[^\n]*\n%-%-[^\n]*\n", "")))
  end)
end)

-- ------------------------------------------------------------ item 19

describe("examples/maps.lua", function()
  local fs
  setup(function() fs = H.mount_bpffs() end)
  teardown(function() fs:unmount() end)

  local function dump(path, args)
    return H.run(H.lua_bin() .. " examples/maps.lua " .. path .. " " .. args)
  end

  it("prints a u64 of all ones as the unsigned value, alone and in a struct", function()
    local ones = string.rep("\255", 8)
    local path = fs:bpftool_map{ type = "hash", key = 4, value = 16, fill = { [1] = ones .. ones } }
    local out = dump(path, "--key u32 --value '{{\"a\",\"u64\"},{\"b\",\"i64\"}}'")
    assert.is_true(lines(out)["1 => { a = " .. U64MAX .. ", b = -1 }"], out)
    local scalar = fs:bpftool_map{ type = "hash", key = 4, value = 8, fill = { [1] = ones } }
    out = dump(scalar, "--key u32 --value u64")
    assert.is_true(lines(out)["1 => " .. U64MAX], out)
    out = dump(scalar, "--key u32 --value be64")
    assert.is_true(lines(out)["1 => " .. U64MAX], out)
    out = dump(scalar, "--key u32 --value i64")
    assert.is_true(lines(out)["1 => -1"], out)
  end)

  it("prints per-CPU u64 values and array elements unsigned", function()
    local ones = string.rep("\255", 8)
    local path = fs:bpftool_map{ type = "percpu_hash", key = 4, value = 8, fill = { [2] = ones } }
    local out = dump(path, "--key u32 --value u64")
    assert.is_truthy(out:find("\n2 => cpu0 " .. U64MAX, 1, true), out)
    local arr = fs:bpftool_map{ type = "hash", key = 4, value = 16, fill = { [3] = ones .. H.le(5, 8) } }
    out = dump(arr, "--key u32 --value '{\"u64\",2}'")
    assert.is_true(lines(out)["3 => [" .. U64MAX .. ", 5]"], out)
  end)
end)

-- ------------------------------------------------------------ item 21

-- the packages `make -n <args>` would check for and install, as a set
local function packages(args)
  local out = H.run(MAKE_ENV .. "make --no-print-directory -n " .. args)
  local list = out:match("for p in ([^;]*);")
  assert(list, "no package list in make -n " .. args .. ":\n" .. out)
  local set = {}
  for p in list:gmatch("%S+") do set[p] = true end
  return set
end

local function assert_has(set, names, what)
  for _, n in ipairs(names) do assert(set[n], what .. " should install " .. n) end
end

local function assert_lacks(set, names, what)
  for _, n in ipairs(names) do assert(not set[n], what .. " should not install " .. n) end
end

describe("what each make target installs", function()
  local BUILD = { "gcc", "make", "pkg-config", "libbpf-dev", "clang" }
  local SERVER = { "nginx", "libnginx-mod-http-lua", "lua-resty-core", "wrk", "curl" }

  it("make run and make maps: only what the build and the main job need", function()
    for _, target in ipairs{ "run", "maps", "soak" } do
      local p = packages(target)
      assert_has(p, BUILD, target)
      assert_has(p, { "lua5.4", "liblua5.4-dev" }, target)
      assert_lacks(p, SERVER, target)
      assert_lacks(p, { "lua-busted", "valgrind", "python3-prometheus-client", "prometheus",
        "lua5.3", "luajit2" }, target)
    end
  end)

  it("make test: the build, the specs' tools and this Lua, no server", function()
    local p = packages("test")
    assert_has(p, BUILD, "test")
    assert_has(p, { "lua5.4", "liblua5.4-dev", "lua-busted", "lua-cjson", "bpftool",
      "python3-prometheus-client", "prometheus", "luarocks" }, "test")
    assert_lacks(p, SERVER, "test")
    assert_lacks(p, { "valgrind", "lua5.3", "luajit2" }, "test")
    local jit = packages("test LUA=luajit")
    assert_has(jit, { "luajit2", "libluajit2-5.1-dev", "lua-busted" }, "test LUA=luajit")
    assert_lacks(jit, { "lua5.4", "lua5.3" }, "test LUA=luajit")
  end)

  it("the CI steps and make deps: what each of them runs", function()
    assert_has(packages("test-valgrind"), { "valgrind", "lua-busted" }, "test-valgrind")
    assert_has(packages("test-asan"), { "gcc", "lua-busted" }, "test-asan")
    assert_has(packages("deps-openresty"), { "nginx", "libnginx-mod-http-lua", "lua-resty-core",
      "curl", "luajit2", "libluajit2-5.1-dev", "bpftool", "python3-prometheus-client", "prometheus" },
      "deps-openresty")
    assert_has(packages("bench"), { "wrk", "nginx" }, "bench")
    local all = packages("deps")
    for _, target in ipairs{ "run", "test", "test LUA=lua5.3", "test LUA=luajit", "test-valgrind",
                             "deps-openresty", "bench" } do
      for name in pairs(packages(target)) do assert(all[name], "make deps lacks " .. name) end
    end
    assert_has(all, { "libclang-rt-dev", "llvm", "valgrind" }, "deps (make fuzz)")
    assert.is_truthy(read("examples/openresty/test.sh"):find("make [^\n]*deps%-openresty"))
  end)

  it("installs the packages that hold the tools the specs run", function()
    local p = packages("test")
    local tools = { "bpftool", "busted", "clang", "luarocks", "promtool", "strace" }
    for _, tool in ipairs(tools) do
      local path, found = H.sh("command -v " .. tool)
      if found then
        local owner = H.run("dpkg -S " .. path:gsub("%s+$", "")):match("^([^:]+):")
        assert(p[owner], tool .. " comes from " .. tostring(owner) .. ", which make test does not install")
      end
    end
    local owner = H.run("dpkg -S /usr/lib/python3/dist-packages/prometheus_client/parser.py")
    assert.is_truthy(p[owner:match("^([^:]+):")])
  end)

  it("names packages Debian has", function()
    local _, lists = H.sh("apt-cache show gcc >/dev/null")
    if not lists then return pending("needs apt's package lists (apt-get update)") end
    local names = {}
    for name in pairs(packages("deps")) do names[#names + 1] = name end
    table.sort(names)
    local out, ok = H.sh("apt-cache show --no-all-versions " .. table.concat(names, " ") .. " >/dev/null")
    assert(ok, out)
  end)
end)

-- ------------------------------------------------------------ item 22

describe("the licence and the rockspec", function()
  it("has the MIT licence the rockspec names", function()
    local license = read("LICENSE")
    assert.is_truthy(license:find("^MIT License\n"))
    assert.is_truthy(license:find("Copyright (c) 2026 the luaebpf authors", 1, true))
    assert.is_truthy(license:find("THE SOFTWARE IS PROVIDED \"AS IS\"", 1, true))
  end)

  it("gives a source a rock can be built from, and passes luarocks lint", function()
    local env = {}
    local chunk = assert((loadstring or load)(read("rockspec/luaebpf-scm-1.rockspec")))
    if setfenv then setfenv(chunk, env) else
      chunk = assert(load(read("rockspec/luaebpf-scm-1.rockspec"), "rockspec", "t", env))
    end
    chunk()
    assert.are.equal("MIT", env.description.license)
    assert.is_truthy(env.source.url:find("^git%+https://github%.com/[%w_-]+/luaebpf%.git$"), env.source.url)
    if not has("luarocks") then return pending("needs luarocks (make deps-test)") end
    H.run("luarocks lint rockspec/luaebpf-scm-1.rockspec")
  end)
end)

-- examples/openresty/page_fixture.lua DIR create|bump: the maps the live
-- page's browser test (test_page.sh) adds to fixture.lua's, in DIR (a bpffs):
--   lat_hist  percpu_array u32 -> u64 (no BTF) of 24 slots, named "...hist":
--             a log2 histogram by its layout, different counts per CPU
--   proc_lat  hash, BTF struct proc_key { pid, comm } -> struct proc_hist
--             { slots[20], sum } (bpf/slots.bpf.o): one log2 histogram per
--             entry, by its layout; one comm is "<img src=x>" (markup as text)
-- "bump" and "hist" change what the page shows while it is open: bump adds
-- 1000 to counts[1]; hist adds 5 to lat_hist's slot 3 on CPU 0 and fills a
-- new last slot (14).
-- Runs under any Lua luaebpf builds for (5.1 syntax); needs root.
local root = (arg and arg[0] or ""):match("^(.*)/examples/openresty/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = root .. "/build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
package.cpath = build .. "/?.so;" .. package.cpath

local ebpf = require "luaebpf"

local dir, what = arg[1], arg[2] or "create"
assert(dir, "usage: page_fixture.lua DIR create|bump|hist")
local ncpus = ebpf.ncpus()

if what == "create" then
  local h = ebpf.create{ type = "percpu_array", key = "u32", value = "u64", max_entries = 24,
    name = "lx_pg_lat_hist" }
  for slot = 0, 11 do
    local per = {}
    for c = 1, ncpus do per[c] = (slot * 7 + c * 3) % 40 + (slot == 9 and 100 or 0) end
    assert(h:update(slot, per))
  end
  assert(h:pin(dir .. "/lat_hist"))

  local obj = ebpf.load(root .. "/bpf/slots.bpf.o")
  local p = obj:map("proc_lat")
  for _, e in ipairs({ { 100, "nginx", { [2] = 4, [5] = 30, [6] = 12 } },
                       { 200, "curl", { [0] = 1, [10] = 9, [11] = 2, [13] = 1 } },
                       -- markup in a key: the page must show it as text
                       { 300, "<img src=x>", { [1] = 3 } } }) do
    local slots, sum = {}, 0
    for i = 0, 19 do slots[i + 1] = e[3][i] or 0; sum = sum + slots[i + 1] * 2 ^ i end
    assert(p:update({ pid = e[1], comm = e[2] }, { slots = slots, sum = sum }))
  end
  assert(p:pin(dir .. "/proc_lat"))
  obj:close()
elseif what == "bump" then
  local counts = ebpf.open(dir .. "/counts", { key = "u32", value = "u64", access = "rw" })
  assert(counts:update(1, counts:lookup(1) + 1000))
elseif what == "hist" then
  local h = ebpf.open(dir .. "/lat_hist", { key = "u32", value = "u64", access = "rw" })
  local per = h:lookup(3)
  per[1] = per[1] + 5
  assert(h:update(3, per))
  local last = {}
  for c = 1, ncpus do last[c] = c end
  assert(h:update(14, last))
else
  error("page_fixture.lua: expected create, bump or hist, got " .. tostring(what))
end

-- examples/try.lua DIR: README's first example. Makes a hash map, fills it,
-- pins it in DIR (a bpffs), then opens the pin and prints every entry.
local ebpf = require "luaebpf"
local m = ebpf.create{ type = "hash", key = "u32", value = "u64", max_entries = 16, name = "counts" }
m:update(1, 10); m:update(2, 20); m:pin(arg[1] .. "/counts"); m:close()
local counts = ebpf.open(arg[1] .. "/counts", { key = "u32", value = "u64" })
for pid, count in counts:pairs() do print(pid, count) end

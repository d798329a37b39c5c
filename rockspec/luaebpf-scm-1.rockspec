rockspec_format = "3.0"
package = "luaebpf"
version = "scm-1"
-- `luarocks make rockspec/luaebpf-scm-1.rockspec` builds the checkout it runs
-- in and ignores source.url; `luarocks build` of this file alone clones it
source = {
  url = "git+https://github.com/luaebpf/luaebpf.git",
  branch = "main",
}
description = {
  summary = "Read and write eBPF maps of the running kernel from Lua, through libbpf",
  detailed = [[
luaebpf opens eBPF maps (pinned paths, ids, names, or new maps), decodes keys
and values with typed codecs (integers, big-endian, floats, strings, arrays,
C structs), and iterates them safely under concurrent change.
]],
  homepage = "https://github.com/luaebpf/luaebpf",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  LIBBPF = { header = "bpf/libbpf.h", library = "bpf" },
  LIBELF = { header = "libelf.h", library = "elf" },
}
build = {
  type = "builtin",
  modules = {
    ["luaebpf.core"] = {
      sources = {
        "luaebpf/auxlib.c", "luaebpf/batch.c", "luaebpf/btf.c", "luaebpf/codec.c",
        "luaebpf/core.c", "luaebpf/decode.c", "luaebpf/decoders.c", "luaebpf/elfsym.c",
        "luaebpf/encode.c", "luaebpf/err.c", "luaebpf/events.c", "luaebpf/expect.c",
        "luaebpf/fdinfo.c", "luaebpf/globals.c", "luaebpf/hint.c", "luaebpf/holders.c",
        "luaebpf/inner.c", "luaebpf/iter.c", "luaebpf/ksym.c", "luaebpf/layout.c",
        "luaebpf/libbpflog.c", "luaebpf/link.c", "luaebpf/map.c", "luaebpf/mmap.c",
        "luaebpf/names.c", "luaebpf/object.c", "luaebpf/percpu.c", "luaebpf/perfbuf.c",
        "luaebpf/pinned.c", "luaebpf/pins.c", "luaebpf/print.c", "luaebpf/program.c",
        "luaebpf/ringbuf.c", "luaebpf/shape.c", "luaebpf/stack.c", "luaebpf/sysnames.c",
        "luaebpf/system.c",
      },
      libraries = { "bpf", "elf" },
      incdirs = { "$(LIBBPF_INCDIR)", "$(LIBELF_INCDIR)" },
      libdirs = { "$(LIBBPF_LIBDIR)", "$(LIBELF_LIBDIR)" },
    },
    ["luaebpf"] = "lua/luaebpf/init.lua",
    ["luaebpf.aggregate"] = "lua/luaebpf/aggregate.lua",
    ["luaebpf.format"] = "lua/luaebpf/format.lua",
    ["luaebpf.prometheus"] = "lua/luaebpf/prometheus.lua",
    ["luaebpf.histogram"] = "lua/luaebpf/histogram.lua",
    ["luaebpf.stack"] = "lua/luaebpf/stack.lua",
  },
}

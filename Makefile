# luaebpf: make (build), make run (the main job), make test, make bench, make deps.
# Lua version: make LUA=lua5.4 (default). Overrides for LuaRocks and odd
# installs: LUA_INCDIR, CFLAGS, LIBFLAG.

LUA        ?= lua5.4
LUA_PC     ?= $(LUA)
LUA_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)))
BUILD      := build/$(LUA)
SO         := $(if $(filter lua5.4,$(LUA)),luaebpf/core.so,$(BUILD)/luaebpf/core.so)
CFLAGS     ?= -O2 -g
LIBFLAG    ?= -shared
WARN       := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CPPFLAGS   += $(if $(LUA_INCDIR),-I$(LUA_INCDIR)) $(shell pkg-config --cflags libbpf 2>/dev/null)
BPF_LIBS   := $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf)
SRCS       := $(wildcard luaebpf/*.c)
OBJS       := $(patsubst luaebpf/%.c,$(BUILD)/%.o,$(SRCS))
BUSTED     := $(LUA) /usr/bin/busted

# Debian packages a fresh machine needs; `make deps` installs the missing ones.
DEB_PKGS   := gcc make pkg-config libbpf-dev libelf-dev zlib1g-dev lua5.4 liblua5.4-dev \
              lua-busted lua-cjson luarocks bpftool clang llvm

# BPF programs for the specs, the examples and the main job
BPF_CFLAGS := -target bpf -g -O2 -Wall -I/usr/include/x86_64-linux-gnu
BPF_OBJS   := $(patsubst %.c,%.o,$(wildcard bpf/*.bpf.c))

.PHONY: all deps run maps test bench clean
all: $(SO) $(BPF_OBJS)

bpf/%.bpf.o: bpf/%.bpf.c
	clang $(BPF_CFLAGS) -c -o $@ $<

spec/fixtures/%.bpf.o: spec/fixtures/%.bpf.c
	clang $(BPF_CFLAGS) -c -o $@ $<

$(SO): $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) -o $@ $(OBJS) $(BPF_LIBS)

$(BUILD)/%.o: luaebpf/%.c $(wildcard luaebpf/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -c -o $@ $<

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -z "$$missing" ]; then echo "deps: all installed"; \
	elif [ "$$(id -u)" != 0 ]; then echo "deps: missing $$missing (run make deps as root)"; exit 1; \
	else echo "deps: installing $$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) \
	    >/tmp/luaebpf-deps.log 2>&1 || { tail -20 /tmp/luaebpf-deps.log; exit 1; }; fi

# the main job: a live per-process syscall top for DURATION seconds
DURATION ?= 5
run: deps
	@$(MAKE) --no-print-directory all
	$(LUA) examples/syscount.lua $(DURATION)

# every map on the machine with entry counts (ARGS=... to dump one map)
maps: deps
	@$(MAKE) --no-print-directory all
	$(LUA) examples/maps.lua $(ARGS)

test: deps
	@$(MAKE) --no-print-directory all bench/cbench.so spec/churn spec/fixtures/unsafe.bpf.o
	$(BUSTED) $(BUSTED_ARGS)

# a second process that inserts and deletes keys while the specs read
spec/churn: spec/churn.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(BPF_LIBS)

bench/cbench.so: bench/cbench.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC $(LIBFLAG) -o $@ $< $(BPF_LIBS)

bench: deps
	@$(MAKE) --no-print-directory all bench/cbench.so
	$(LUA) bench/lookup.lua

clean:
	rm -rf build luaebpf/core.so bench/cbench.so spec/churn bpf/*.bpf.o spec/fixtures/*.bpf.o

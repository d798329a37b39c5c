# luaebpf: make (build), make run (the main job), make test, make bench, make deps.
# Lua version: make LUA=lua5.4 (default), LUA=lua5.3 or LUA=luajit (OpenResty's
# LuaJIT 2.1); make test-all runs the specs under all three. Overrides for
# odd installs: LUA_INCDIR, CFLAGS, LIBFLAG.
# Every build goes to build/$(LUA)/ (the module: build/$(LUA)/luaebpf/core.so).
# Targets that run something (run, test, bench, ...) first install the Debian
# packages they need, then build what they use, in one make: see GOAL_DEPS.
# The source tree is LuaRocks': `luarocks make` compiles in place (luaebpf/*.o,
# luaebpf/core.so), and nothing here reads or writes those files but `make clean`.

SHELL      := /bin/bash
LUA        ?= lua5.4
LUA_PC     ?= $(LUA)
# Whatever asks pkg-config or the compiler is a recursive variable (=, ?=),
# expanded when a recipe runs: on a fresh machine, after deps-* installed them.
LUA_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)))
BUILD      := build/$(LUA)
SO         := $(BUILD)/luaebpf/core.so
CFLAGS     ?= -O2 -g
LIBFLAG    ?= -shared
WARN       := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CPPFLAGS   += $(if $(LUA_INCDIR),-I$(LUA_INCDIR)) $(shell pkg-config --cflags libbpf 2>/dev/null)
# libelf too: elfsym.c reads ELF symbol tables itself (libbpf links it privately)
BPF_LIBS    = $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf) \
              $(shell pkg-config --libs libelf 2>/dev/null || echo -lelf)
CBENCH     := $(BUILD)/cbench.so
SRCS       := $(wildcard luaebpf/*.c)
OBJS       := $(patsubst luaebpf/%.c,$(BUILD)/%.o,$(SRCS))
BUSTED     := $(LUA) /usr/bin/busted
# busted loads luaebpf.core from this Lua version's build only
TEST_CPATH := ./$(BUILD)/?.so
TEST_LUAS  := lua5.4 lua5.3 luajit

# Debian packages, by what needs them. Each target that needs packages
# installs the missing ones of its own set first (as root; as another user it
# names them and stops): run, maps, soak DEPS_RUN; test, test-asan DEPS_TEST;
# test-valgrind DEPS_VALGRIND; bench DEPS_BENCH; examples/openresty/test.sh
# DEPS_OPENRESTY, and its live page's browser test (examples/openresty/test_page.sh)
# DEPS_PAGE; make deps all of them, for every Lua version (fuzz uses it).
LUA_PKGS_lua5.4 := lua5.4 liblua5.4-dev
LUA_PKGS_lua5.3 := lua5.3 liblua5.3-dev
LUA_PKGS_luajit := luajit2 libluajit2-5.1-dev
# the module and the BPF programs, for $(LUA)
# (bpftool writes bpf/vmlinux.h, the kernel's types for CO-RE programs)
DEPS_BUILD     := gcc make pkg-config libbpf-dev libelf-dev zlib1g-dev clang bpftool $(LUA_PKGS_$(LUA))
DEPS_RUN       := $(DEPS_BUILD)
# bpftool is the specs' oracle; python3-prometheus-client and prometheus
# (promtool; in the OpenResty test, a real server scraping /metrics) check the
# exposition text; luarocks builds the rockspec; strace
# watches the flags a spec sends
DEPS_TEST      := $(DEPS_BUILD) lua-busted lua-cjson bpftool python3-prometheus-client prometheus \
                  luarocks strace
DEPS_VALGRIND  := $(DEPS_TEST) valgrind
DEPS_OPENRESTY := $(DEPS_BUILD) $(LUA_PKGS_luajit) nginx libnginx-mod-http-lua lua-resty-core curl \
                  bpftool python3-prometheus-client prometheus
# headless Chromium loads the example's live page (examples/openresty/test_page.sh)
DEPS_PAGE      := $(DEPS_OPENRESTY) chromium
DEPS_BENCH     := $(DEPS_OPENRESTY) wrk valgrind
# libFuzzer's runtime; llvm for llvm-symbolizer's stack traces
DEPS_FUZZ      := $(DEPS_BUILD) libclang-rt-dev llvm
DEPS_ALL       := $(sort $(DEPS_VALGRIND) $(DEPS_BENCH) $(DEPS_PAGE) $(DEPS_FUZZ) \
                  $(LUA_PKGS_lua5.4) $(LUA_PKGS_lua5.3) $(LUA_PKGS_luajit))

# BPF programs for the specs, the examples and the main job. clang -target bpf
# does not search the host's multiarch directory, where <asm/types.h> (which
# <linux/bpf.h> includes) lives: the compiler names it (x86_64-linux-gnu,
# aarch64-linux-gnu, ...). bpf_tracing.h (BPF_PROG, PT_REGS_*) wants the
# kernel's name of the architecture, derived from the same triplet.
BPF_MULTIARCH = $(shell $(CC) -print-multiarch)
BPF_ARCH    = $(shell echo '$(BPF_MULTIARCH)' | sed -e 's/-.*//' -e 's/^x86_64$$\|^i[3-6]86$$/x86/' \
                -e 's/^aarch64.*/arm64/' -e 's/^arm.*/arm/' -e 's/^riscv.*/riscv/' -e 's/^s390.*/s390/' \
                -e 's/^powerpc.*\|^ppc.*/powerpc/' -e 's/^mips.*/mips/' -e 's/^loongarch.*/loongarch/')
BPF_CFLAGS  = -target bpf -g -O2 -Wall -I/usr/include/$(BPF_MULTIARCH) -D__TARGET_ARCH_$(BPF_ARCH) -Ibpf
BPF_OBJS   := $(patsubst %.c,%.o,$(wildcard bpf/*.bpf.c))
SPEC_BPF   := $(patsubst %.c,%.o,$(wildcard spec/fixtures/*.bpf.c))

DEPS_TARGETS := deps-run deps-test deps-valgrind deps-openresty deps-page deps-bench deps-fuzz

# The deps-* targets of the goals on the command line. Every file make builds
# waits for them (an order-only prerequisite, at the end of this file), so the
# packages are there before the first compiler runs, with -j too; `make` or
# `make all` alone installs nothing.
DEPS_OF_run           := deps-run
DEPS_OF_maps          := deps-run
DEPS_OF_soak          := deps-run
DEPS_OF_test          := deps-test
DEPS_OF_test-asan     := deps-test
DEPS_OF_test-valgrind := deps-valgrind
DEPS_OF_bench         := deps-bench
DEPS_OF_fuzz          := deps
GOAL_DEPS := $(sort $(filter deps $(DEPS_TARGETS),$(MAKECMDGOALS)) \
                    $(foreach g,$(MAKECMDGOALS),$(DEPS_OF_$(g))))
.PHONY: all deps $(DEPS_TARGETS) run maps test test-all test-asan test-valgrind soak bench clean
all: $(SO) $(BPF_OBJS)

# The running kernel's types, for programs that read kernel structs with CO-RE
# (bpf/execsnoop.bpf.c): generated, not committed (.gitignore). CO-RE relocates
# each field access when the program loads, so a header from another kernel
# of the same architecture does too; `make clean` removes it.
VMLINUX_H     := bpf/vmlinux.h
VMLINUX_USERS := $(patsubst %.c,%.o,$(shell grep -l '"vmlinux.h"' bpf/*.bpf.c spec/fixtures/*.bpf.c 2>/dev/null))
$(VMLINUX_H):
	bpftool btf dump file /sys/kernel/btf/vmlinux format c >$@.tmp && mv $@.tmp $@
$(VMLINUX_USERS): $(VMLINUX_H)

bpf/%.bpf.o: bpf/%.bpf.c
	clang $(BPF_CFLAGS) -c -o $@ $<

spec/fixtures/%.bpf.o: spec/fixtures/%.bpf.c
	clang $(BPF_CFLAGS) -c -o $@ $<

# a process with a function to put uprobes on, for spec/attach_spec.lua
spec/fixtures/uprobe_target: spec/fixtures/uprobe_target.c
	$(CC) $(CFLAGS) $(WARN) -o $@ $<

# fails chosen bpf() calls on purpose (LD_PRELOAD), for spec/fault_spec.lua
spec/fixtures/libfault.so: spec/fixtures/fault.c
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -o $@ $< -ldl

# This architecture's syscall and errno names (luaebpf/sysnames.c), from the
# C library's kernel headers as the compiler sees them for its target
# (<asm/unistd.h> includes the multiarch unistd_64.h, <asm/errno.h> the
# asm-generic ones). Only plain numbers name a number; an errno alias
# (EWOULDBLOCK for EAGAIN) is a name writes take too.
GEN        := $(BUILD)/gen
SYSNAMES_H := $(GEN)/luaebpf_sysnames.h
CPPFLAGS   += -I$(GEN)
$(SYSNAMES_H):
	@mkdir -p $(@D)
	{ echo '/* generated by make from <asm/unistd.h> and <asm/errno.h>: do not edit */'; \
	  echo '#define LUAEBPF_SYSCALL_ARCH "$(BPF_MULTIARCH)"'; \
	  echo 'static const luaebpf_sysname gen_syscalls[] = {'; \
	  echo '#include <asm/unistd.h>' | $(CC) -dM -E - \
	    | sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/    {\2, "\1"},/p' | sort -t'{' -k2,2n; \
	  echo '};'; \
	  echo 'static const luaebpf_sysname gen_errnos[] = {'; \
	  echo '#include <asm/errno.h>' | $(CC) -dM -E - \
	    | sed -n 's/^#define \(E[A-Z0-9]*\) \([0-9][0-9]*\)$$/    {\2, "\1"},/p' | sort -t'{' -k2,2n; \
	  echo '};'; \
	  echo '#include <asm/errno.h> /* the aliases name their numbers by macro */'; \
	  echo 'static const luaebpf_sysname gen_errno_aliases[] = {'; \
	  echo '#include <asm/errno.h>' | $(CC) -dM -E - \
	    | sed -n 's/^#define \(E[A-Z0-9]*\) \(E[A-Z0-9]*\)$$/    {\2, "\1"},/p'; \
	  echo '    {-1, NULL}};'; } >$@.tmp && mv $@.tmp $@
$(BUILD)/sysnames.o: $(SYSNAMES_H)

# makes the Lua state's allocator fail on demand, for spec/events_defects_spec.lua
$(BUILD)/failalloc.so: spec/fixtures/failalloc.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC $(LIBFLAG) -Wl,-z,nodelete -o $@ $<

# two Lua states in two threads (libbpf's print callback), for spec/events_defects_spec.lua
$(BUILD)/printrace: spec/fixtures/printrace.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(shell pkg-config --libs $(LUA_PC)) $(BPF_LIBS) -lpthread

$(SO): $(OBJS)
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) -o $@ $(OBJS) $(BPF_LIBS)

$(BUILD)/%.o: luaebpf/%.c $(wildcard luaebpf/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -c -o $@ $<

deps:           PKGS = $(DEPS_ALL)
deps-run:       PKGS = $(DEPS_RUN)
deps-test:      PKGS = $(DEPS_TEST)
deps-valgrind:  PKGS = $(DEPS_VALGRIND)
deps-openresty: PKGS = $(DEPS_OPENRESTY)
deps-page:      PKGS = $(DEPS_PAGE)
deps-bench:     PKGS = $(DEPS_BENCH)
deps-fuzz:      PKGS = $(DEPS_FUZZ)
# checks with dpkg first: does nothing when all are there
deps $(DEPS_TARGETS):
	@missing=$$(for p in $(sort $(PKGS)); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -z "$$missing" ]; then echo "$@: all installed"; \
	elif [ "$$(id -u)" != 0 ]; then echo "$@: missing $$missing (run make $@ as root)"; exit 1; \
	else echo "$@: installing $$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) \
	    >/tmp/luaebpf-deps.log 2>&1 || { tail -20 /tmp/luaebpf-deps.log; exit 1; }; fi

# the main job: a live per-process syscall top for DURATION seconds
DURATION ?= 5
run: deps-run all
	$(LUA) examples/syscount.lua $(DURATION)

# every map on the machine with entry counts (ARGS=... to dump one map)
maps: deps-run all
	$(LUA) examples/maps.lua $(ARGS)

# what the specs use besides the module: the C baseline, the churn process, the
# fixtures' BPF programs, the fault injectors
SPEC_FILES := all $(CBENCH) spec/churn $(SPEC_BPF) spec/fixtures/libfault.so spec/fixtures/stackbin \
              spec/fixtures/stackbin-nopie \
              spec/fixtures/uprobe_target \
              $(BUILD)/failalloc.so $(BUILD)/printrace

test: deps-test $(SPEC_FILES)
	$(BUSTED) --cpath='$(TEST_CPATH)' $(BUSTED_ARGS)

# the suite under every Lua version; fails when any of them fails (a make per
# version: LUA decides every path and flag)
test-all:
	@rc=0; for lua in $(TEST_LUAS); do \
	  echo "== make test LUA=$$lua"; \
	  $(MAKE) --no-print-directory test LUA=$$lua || rc=1; \
	done; exit $$rc

# The suite against a build with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc's runtimes, preloaded into the uninstrumented interpreter). Leak checks
# are valgrind's job: the interpreter exits without freeing its own state.
# allocator_may_return_null: a huge malloc returns NULL, as libc's does, instead
# of aborting (spec/permission_spec.lua asks for a 1 TiB batch).
ASAN_BUILD := $(BUILD)/asan
ASAN_SO    := $(ASAN_BUILD)/luaebpf/core.so
$(ASAN_SO): $(SRCS) $(wildcard luaebpf/*.h) $(SYSNAMES_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined $(WARN) -fPIC -shared -o $@ $(SRCS) $(BPF_LIBS)

test-asan: deps-test $(SPEC_FILES) $(ASAN_SO)
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  $(BUSTED) --cpath='./$(ASAN_BUILD)/?.so' $(BUSTED_ARGS)

# A representative subset under valgrind memcheck (a few minutes): zero errors
# and no definitely lost block. spec/valgrind.supp explains each suppression.
VALGRIND_SPECS := spec/map_spec.lua spec/pairs_spec.lua spec/dump_spec.lua spec/read_batch_spec.lua \
                  spec/mmap_spec.lua spec/codec_spec.lua spec/btf_spec.lua spec/object_spec.lua \
                  spec/percpu_spec.lua spec/map_defects_spec.lua spec/err_defects_spec.lua \
                  spec/codec_defects_spec.lua spec/object_defects_spec.lua spec/events_spec.lua \
                  spec/stack_spec.lua spec/globals_spec.lua spec/link_spec.lua spec/around_spec.lua \
                  spec/decoders_spec.lua spec/lookup_fn_spec.lua \
                  spec/events_defects_spec.lua
test-valgrind: deps-valgrind $(SPEC_FILES)
	valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite --suppressions=spec/valgrind.supp \
	  $(BUSTED) $(BUSTED_ARGS) $(VALGRIND_SPECS) 2>&1 | grep -v 'unhandled eBPF command'; \
	  exit $${PIPESTATUS[0]}

# a process with a known user stack, for spec/stack_spec.lua: frame pointers
# kept (the kernel walks user stacks by them), symbols and a build id
spec/fixtures/stackbin: spec/fixtures/stackbin.c
	$(CC) -O2 -g -fno-omit-frame-pointer $(WARN) -Wl,--build-id -o $@ $<
# the same at a fixed address, where file offsets and symbol addresses differ
spec/fixtures/stackbin-nopie: spec/fixtures/stackbin.c
	$(CC) -O2 -g -fno-omit-frame-pointer $(WARN) -Wl,--build-id -fno-pie -no-pie -o $@ $<

# a second process that inserts and deletes keys while the specs read
spec/churn: spec/churn.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(BPF_LIBS)

# the concurrency soak: spec/churn changes a pinned map for SOAK_SECONDS while
# reader processes walk it (spec/soak.lua); fails on any missed or repeated key
SOAK_SECONDS ?= 60
soak: deps-run all spec/churn
	$(LUA) spec/soak.lua $(SOAK_SECONDS)

# built per Lua version, like the core: bench/benchlib.lua looks in build/<its Lua>/
$(CBENCH): bench/cbench.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC $(LIBFLAG) -o $@ $< $(BPF_LIBS)

bench: deps-bench all $(CBENCH)
	$(LUA) bench/lookup.lua
	sh bench/lookup_then.sh $(LUA)
	$(LUA) bench/batch.lua
	$(LUA) bench/iterate.lua
	$(LUA) bench/percpu.lua
	sh bench/callgrind.sh $(LUA)
	$(LUA) bench/mmap.lua
	$(LUA) bench/btf.lua
	$(LUA) bench/events.lua
	sh bench/http.sh

clean:
	rm -rf build spec/churn bpf/*.bpf.o $(VMLINUX_H) spec/fixtures/*.bpf.o spec/fixtures/libfault.so \
	  spec/fixtures/stackbin spec/fixtures/stackbin-nopie spec/fixtures/uprobe_target
	rm -f luaebpf/*.o luaebpf/core.so # what `luarocks make` leaves in the tree

include fuzz/fuzz.mk

# last, when every file's name is known (fuzz.mk's too): see GOAL_DEPS
$(OBJS) $(SO) $(BPF_OBJS) $(SPEC_BPF) $(VMLINUX_H) $(CBENCH) $(ASAN_SO) $(SYSNAMES_H) spec/churn spec/fixtures/libfault.so \
spec/fixtures/stackbin spec/fixtures/stackbin-nopie spec/fixtures/uprobe_target \
$(FUZZERS): | $(GOAL_DEPS)

# fuzz/fuzz.mk: libFuzzer harnesses (included by the Makefile).
#   make fuzz                     each harness for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=10     a short pass (what CI runs)
# The harnesses link the module's sources and liblua themselves: they own the
# VM. They run on a copy of the seed corpus, so the repository's stays small;
# a crash leaves its input in fuzz/crash-* for a regression test.
FUZZ_SECONDS ?= 60
FUZZ_CC      := clang
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -I$(LUA_INCDIR) $(shell pkg-config --cflags libbpf 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs $(LUA_PC) libbpf 2>/dev/null)
FUZZERS      := fuzz/fuzz_codec fuzz/fuzz_btf

fuzz/fuzz_%: fuzz/fuzz_%.c $(SRCS) $(wildcard luaebpf/*.h)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(SRCS) $(FUZZ_LIBS)

.PHONY: fuzz
fuzz: deps $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
	  name=$$(basename $$f); corpus=$$(mktemp -d /tmp/luaebpf-corpus-XXXXXX); \
	  cp fuzz/corpus/$${name#fuzz_}/* $$corpus/; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/crash-$$name- \
	      $$corpus 2>&1 | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|SUMMARY|Done)' \
	      || true; \
	  rm -rf $$corpus; \
	  if ls fuzz/crash-$$name-* >/dev/null 2>&1; then echo "fuzz: $$name found a crash"; exit 1; fi; \
	done

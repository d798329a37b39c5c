# fuzz/fuzz.mk: libFuzzer harnesses (included by the Makefile).
#   make fuzz                     replays fuzz/slow/, then runs each harness for
#                                 FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=10     a short pass (what CI runs)
#   make fuzz-replay              only the replay of fuzz/slow/
# The harnesses link the module's sources ($(SRCS): every luaebpf/*.c, so a new
# file needs no entry here) and liblua themselves: they own the VM. They run
# on a copy of the seed corpus (fuzz/corpus/<harness>/ and fuzz/slow/<harness>/),
# so the repository's stays small.
#
# Two kinds of finding, told apart because only one may turn CI red:
# - a crash (or sanitizer report, leak, out-of-memory) leaves its input in
#   fuzz/crash-* and fails the run: it is a bug whatever the machine;
# - a slow unit (over libFuzzer's -report_slow_units, 10 s, or over
#   FUZZ_TIMEOUT) is copied to fuzz/found/ and reported, not failed: a busy
#   machine makes units slow too. Once fixed, it goes into fuzz/slow/<harness>/,
#   which every `make fuzz` replays first with a bound of FUZZ_REPLAY_SECONDS
#   per input, far above what a normal build needs (milliseconds): a slow unit
#   that came back fails there, however busy the machine.
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 60
FUZZ_REPLAY_SECONDS ?= 5
FUZZ_CC      := clang
FUZZ_CFLAGS  = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -I$(LUA_INCDIR) $(shell pkg-config --cflags libbpf 2>/dev/null)
FUZZ_LIBS    = $(shell pkg-config --libs $(LUA_PC) libbpf libelf 2>/dev/null)
FUZZERS      := fuzz/fuzz_codec fuzz/fuzz_btf

fuzz/fuzz_%: fuzz/fuzz_%.c $(SRCS) $(wildcard luaebpf/*.h)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(SRCS) $(FUZZ_LIBS)

.PHONY: fuzz fuzz-replay
fuzz-replay: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
	  name=$$(basename $$f); units=$$(ls fuzz/slow/$${name#fuzz_}/* 2>/dev/null || true); \
	  [ -n "$$units" ] || continue; \
	  if $$f -timeout=$(FUZZ_REPLAY_SECONDS) -error_exitcode=77 -timeout_exitcode=78 \
	       $$units >fuzz/replay.log 2>&1; then \
	    echo "fuzz: $$name replays $$(echo $$units | wc -w) slow unit(s)," \
	         "each under $(FUZZ_REPLAY_SECONDS) s:"; \
	    sed -n 's/^Executed /  /p' fuzz/replay.log; \
	  else \
	    grep -E 'ALARM|ERROR|SUMMARY|^Running' fuzz/replay.log | head -20; \
	    echo "fuzz: $$name is slow again on a unit of fuzz/slow/" \
	         "(over $(FUZZ_REPLAY_SECONDS) s) or crashed on it"; \
	    rm -f fuzz/replay.log; exit 1; \
	  fi; \
	  rm -f fuzz/replay.log; \
	done

fuzz: deps $(FUZZERS) fuzz-replay
	@set -e; for f in $(FUZZERS); do \
	  name=$$(basename $$f); corpus=$$(mktemp -d /tmp/luaebpf-corpus-XXXXXX); \
	  found=$$(mktemp -d /tmp/luaebpf-found-XXXXXX); \
	  cp fuzz/corpus/$${name#fuzz_}/* $$corpus/; \
	  cp fuzz/slow/$${name#fuzz_}/* $$corpus/ 2>/dev/null || true; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	      -artifact_prefix=$$found/ $$corpus 2>&1 \
	      | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|SUMMARY|Done)' \
	      || true; \
	  rm -rf $$corpus; \
	  for a in $$found/slow-unit-* $$found/timeout-*; do \
	    [ -e "$$a" ] || continue; mkdir -p fuzz/found; \
	    cp $$a fuzz/found/$$name-$$(basename $$a); \
	    echo "fuzz: $$name found a slow unit, fuzz/found/$$name-$$(basename $$a): not a failure;" \
	         "fix it and add it to fuzz/slow/$${name#fuzz_}/"; \
	  done; \
	  for a in $$found/*; do \
	    case $$(basename "$$a") in slow-unit-*|timeout-*|'*') continue;; esac; \
	    cp $$a fuzz/crash-$$name-$$(basename $$a); \
	  done; \
	  rm -rf $$found; \
	  if ls fuzz/crash-$$name-* >/dev/null 2>&1; then echo "fuzz: $$name found a crash"; exit 1; fi; \
	done

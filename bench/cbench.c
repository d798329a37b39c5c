/* cbench.c: the C side of the benchmarks. A raw libbpf loop timed in C, so
 * the bench/ scripts can compare luaebpf against it in the same process:
 *   cbench.now()                              CLOCK_MONOTONIC seconds (ns resolution)
 *   cbench.lookup_loop(fd, nkeys, iterations [, value_bytes])   CPU ns, misses
 *   cbench.fill(fd, n)                        u32 k -> u64 k * 2654435761 + 7, k < n
 *   cbench.batch_loop(fd, key_size, value_bytes, batch)  CPU ns, entries, sum
 *   cbench.next_key_loop(fd, key_size, value_bytes)      CPU ns, entries, sum
 *   cbench.update_batch_loop(fd, n, calls)    CPU ns: calls times, u32 keys 0..n-1
 *       -> u64 k * 2654435761 + 7 written into arrays and by one bpf_map_update_batch
 * lookup_loop looks up u32 keys 0..nkeys-1 in turn with bpf_map_lookup_elem
 * into a value buffer of value_bytes (default 8, a u64; a per-CPU map needs
 * round_up(value_size, 8) * ncpus); misses counts ENOENT answers, any other
 * failure raises. The two walks read the whole map, with BPF_MAP_LOOKUP_BATCH
 * (batch entries per call, doubled on ENOSPC) or get_next_key + lookup, and
 * touch every entry: sum adds the first min(size, 8) bytes of each key and of
 * each value as little-endian integers, wrapping at 2^64 (for a u32 -> u64 map,
 * the sum of k + v as Lua 5.3+ integers add it).
 * For bench/events.lua (struct bench_event of bpf/bench_events.bpf.c):
 *   cbench.cputime()                          this thread's CPU time, seconds
 *   cbench.getpid()
 *   cbench.fill_events(prog_fd, count, base, pid)  runs the SEC("syscall")
 *       program fill once (BPF_PROG_TEST_RUN): count records, seq from base,
 *       into its ring; returns how many it sent (fewer: the ring was full)
 *   cbench.ringbuf(map_fd) -> rb; rb:consume(fn) -> n; rb:poll(timeout_ms, fn) -> n;
 *   rb:close()
 *       the floor of a Lua ring buffer consumer: libbpf's ring_buffer__consume,
 *       whose sample callback builds the record's table (lua_createtable and
 *       lua_setfield, the 6 fields) and calls fn(rec) with lua_call (an error
 *       in fn unwinds through libbpf: the record stays unconsumed)
 *   cbench.syscall_loop(seconds) -> calls     getppid() as fast as it can
 * The floors (see below), Lua C functions to set beside luaebpf's calls:
 *   cbench.lookup_floor(fd, key) -> value | nil
 *   cbench.percpu_sum_floor(fd, key), percpu_into_floor(fd, key, t),
 *   percpu_table_floor(fd, key)
 *   cbench.dump_floor(fd, batch, hint) -> keys, values
 *   cbench.pairs_floor(fd, batch) -> step (a generic for's iterator)
 * The loops' times are this thread's CPU time, in ns.
 * Links libbpf only: the Lua symbols come from the host interpreter. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <lua.h>
#include <lauxlib.h>

int luaopen_cbench(lua_State *L);

/* the loops time themselves in this thread's CPU time, as the Lua sides do
 * (benchlib's B.cpu): other work on a shared machine then costs neither side */
static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void push_u64(lua_State *L, uint64_t v) {
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
}

/* cbench.now() */
static int cb_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* cbench.lookup_loop(fd, nkeys, iterations [, value_bytes]) -> CPU ns, misses */
static int cb_lookup_loop(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer nkeys = luaL_checkinteger(L, 2);
    lua_Integer iterations = luaL_checkinteger(L, 3);
    lua_Integer value_bytes = luaL_optinteger(L, 4, 8);
    luaL_argcheck(L, fd >= 0, 1, "a map fd (>= 0) expected");
    luaL_argcheck(L, nkeys >= 1 && nkeys <= (lua_Integer)UINT32_MAX, 2,
                  "a key count in 1..2^32-1 expected");
    luaL_argcheck(L, iterations >= 0, 3, "an iteration count >= 0 expected");
    luaL_argcheck(L, value_bytes >= 1 && value_bytes <= (1 << 24), 4,
                  "a value buffer size in 1..2^24 expected");
    uint64_t small[64];
    unsigned char *value = value_bytes <= (lua_Integer)sizeof small
                               ? (unsigned char *)small : malloc((size_t)value_bytes);
    if (!value)
        return luaL_error(L, "lookup_loop: out of memory");
    uint32_t key = 0, n = (uint32_t)nkeys;
    uint64_t misses = 0;
    int failed = 0;
    uint64_t t0 = cpu_ns();
    for (lua_Integer i = 0; i < iterations; i++) {
        if (bpf_map_lookup_elem(fd, &key, value) != 0) {
            if (errno != ENOENT) {
                failed = errno;
                break;
            }
            misses++;
        }
        if (++key == n)
            key = 0;
    }
    uint64_t elapsed = cpu_ns() - t0;
    if (value != (unsigned char *)small)
        free(value);
    if (failed)
        return luaL_error(L, "lookup_loop: lookup of key %d failed: %s", (int)key,
                          strerror(failed));
    push_u64(L, elapsed);
    push_u64(L, misses);
    return 2;
}

/* cbench.fill(fd, n): u32 keys 0..n-1 -> u64 k * 2654435761 + 7, with
 * BPF_MAP_UPDATE_BATCH in slices (update_elem one by one where a type has none) */
static int cb_fill(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, fd >= 0, 1, "a map fd (>= 0) expected");
    luaL_argcheck(L, n >= 0 && n <= (lua_Integer)UINT32_MAX, 2, "a count in 0..2^32-1 expected");
    enum { SLICE = 4096 };
    uint32_t keys[SLICE];
    uint64_t values[SLICE];
    int failed = 0;
    for (uint64_t base = 0; base < (uint64_t)n && !failed; base += SLICE) {
        uint32_t count = (uint64_t)n - base < SLICE ? (uint32_t)((uint64_t)n - base) : SLICE;
        for (uint32_t i = 0; i < count; i++) {
            keys[i] = (uint32_t)(base + i);
            values[i] = (uint64_t)keys[i] * 2654435761u + 7;
        }
        uint32_t done = count;
        if (bpf_map_update_batch(fd, keys, values, &done, NULL) == 0)
            continue;
        for (uint32_t i = 0; i < count && !failed; i++) /* no batch update: one by one */
            if (bpf_map_update_elem(fd, &keys[i], &values[i], BPF_ANY) != 0)
                failed = errno;
    }
    if (failed)
        return luaL_error(L, "fill: update failed: %s", strerror(failed));
    return 0;
}

/* cbench.update_batch_loop(fd, n, calls) -> CPU ns. Each call fills the
 * key and value arrays (what encoding is to the Lua side) and writes them
 * with one BPF_MAP_UPDATE_BATCH; any failure raises. */
static int cb_update_batch_loop(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    lua_Integer calls = luaL_checkinteger(L, 3);
    luaL_argcheck(L, fd >= 0, 1, "a map fd (>= 0) expected");
    luaL_argcheck(L, n >= 1 && n <= (1 << 24), 2, "a count in 1..2^24 expected");
    luaL_argcheck(L, calls >= 0, 3, "a call count >= 0 expected");
    uint32_t *keys = malloc((size_t)n * sizeof *keys);
    uint64_t *values = malloc((size_t)n * sizeof *values);
    int failed = keys && values ? 0 : ENOMEM;
    uint64_t t0 = cpu_ns();
    for (lua_Integer c = 0; c < calls && !failed; c++) {
        for (uint32_t i = 0; i < (uint32_t)n; i++) {
            keys[i] = i;
            values[i] = (uint64_t)i * 2654435761u + 7;
        }
        uint32_t count = (uint32_t)n;
        if (bpf_map_update_batch(fd, keys, values, &count, NULL) != 0)
            failed = errno;
    }
    uint64_t elapsed = cpu_ns() - t0;
    free(keys);
    free(values);
    if (failed)
        return luaL_error(L, "update_batch_loop: %s", strerror(failed));
    push_u64(L, elapsed);
    return 1;
}

/* the first min(size, 8) bytes at p, little-endian */
static uint64_t head_u64(const unsigned char *p, size_t size) {
    uint64_t v = 0;
    memcpy(&v, p, size < 8 ? size : 8);
    return v;
}

static void check_sizes(lua_State *L, lua_Integer key_size, lua_Integer value_bytes) {
    luaL_argcheck(L, key_size >= 1 && key_size <= 512, 2, "a key size in 1..512 expected");
    luaL_argcheck(L, value_bytes >= 1 && value_bytes <= (1 << 24), 3,
                  "a value size in 1..2^24 expected");
}

/* cbench.batch_loop(fd, key_size, value_bytes, batch) -> CPU ns, entries, sum */
static int cb_batch_loop(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer key_size = luaL_checkinteger(L, 2);
    lua_Integer value_bytes = luaL_checkinteger(L, 3);
    lua_Integer batch = luaL_checkinteger(L, 4);
    check_sizes(L, key_size, value_bytes);
    luaL_argcheck(L, batch >= 1 && batch <= (1 << 24), 4, "a batch size in 1..2^24 expected");
    size_t ks = (size_t)key_size, vs = (size_t)value_bytes, cap = (size_t)batch;
    /* the cursors in_batch, out_batch: max(key_size, 4) bytes each, 8-aligned */
    uint64_t cursor[2 * 64];
    size_t csize = ((ks > 4 ? ks : 4) + 7) / 8 * 8;
    unsigned char *in = (unsigned char *)cursor, *out = in + csize;
    unsigned char *keys = malloc(cap * ks), *values = malloc(cap * vs);
    uint64_t entries = 0, sum = 0;
    int started = 0, failed = 0;
    uint64_t t0 = cpu_ns();
    while (keys && values) {
        uint32_t count = (uint32_t)cap;
        int r = bpf_map_lookup_batch(fd, started ? in : NULL, out, keys, values, &count, NULL);
        int no = r ? errno : 0;
        if (no == ENOSPC) { /* a bucket larger than the batch: grow, same in_batch */
            cap *= 2;
            free(keys);
            free(values);
            keys = malloc(cap * ks);
            values = malloc(cap * vs);
            continue;
        }
        if (no && no != ENOENT) {
            failed = no;
            break;
        }
        for (uint32_t i = 0; i < count; i++)
            sum += head_u64(keys + i * ks, ks) + head_u64(values + i * vs, vs);
        entries += count;
        if (no == ENOENT)
            break;
        memcpy(in, out, csize);
        started = 1;
    }
    uint64_t elapsed = cpu_ns() - t0;
    int oom = !keys || !values;
    free(keys);
    free(values);
    if (oom)
        return luaL_error(L, "batch_loop: out of memory");
    if (failed)
        return luaL_error(L, "batch_loop: lookup_batch failed: %s", strerror(failed));
    push_u64(L, elapsed);
    push_u64(L, entries);
    push_u64(L, sum);
    return 3;
}

/* cbench.next_key_loop(fd, key_size, value_bytes) -> CPU ns, entries, sum
 * the naive walk: get_next_key, then lookup; an entry deleted in between is skipped */
static int cb_next_key_loop(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer key_size = luaL_checkinteger(L, 2);
    lua_Integer value_bytes = luaL_checkinteger(L, 3);
    check_sizes(L, key_size, value_bytes);
    size_t ks = (size_t)key_size, vs = (size_t)value_bytes;
    unsigned char *buf = malloc(2 * ks + vs);
    if (!buf)
        return luaL_error(L, "next_key_loop: out of memory");
    unsigned char *prev = buf, *key = buf + ks, *value = buf + 2 * ks;
    uint64_t entries = 0, sum = 0;
    int started = 0, failed = 0;
    uint64_t t0 = cpu_ns();
    for (;;) {
        if (bpf_map_get_next_key(fd, started ? prev : NULL, key) != 0) {
            if (errno != ENOENT)
                failed = errno;
            break;
        }
        started = 1;
        if (bpf_map_lookup_elem(fd, key, value) == 0) {
            sum += head_u64(key, ks) + head_u64(value, vs);
            entries++;
        } else if (errno != ENOENT) {
            failed = errno;
            break;
        }
        memcpy(prev, key, ks);
    }
    uint64_t elapsed = cpu_ns() - t0;
    free(buf);
    if (failed)
        return luaL_error(L, "next_key_loop: %s", strerror(failed));
    push_u64(L, elapsed);
    push_u64(L, entries);
    push_u64(L, sum);
    return 3;
}

/* cbench.cputime() */
static int cb_cputime(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static int cb_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* struct fill_args and struct bench_event of bpf/bench_events.bpf.c */
struct fill_args {
    uint32_t count, base, pid, sent;
};
struct bench_event {
    uint32_t pid, seq;
    uint64_t ts, value;
    char comm[16];
    uint32_t flags;
};

/* cbench.fill_events(prog_fd, count, base, pid) -> sent */
static int cb_fill_events(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    struct fill_args a = {(uint32_t)luaL_checkinteger(L, 2), (uint32_t)luaL_checkinteger(L, 3),
                          (uint32_t)luaL_checkinteger(L, 4), 0};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &a, .ctx_size_in = sizeof a);
    if (bpf_prog_test_run_opts(fd, &opts) != 0)
        return luaL_error(L, "fill_events: test run failed: %s", strerror(errno));
    lua_pushinteger(L, (lua_Integer)a.sent);
    return 1;
}

#define CB_RINGBUF "cbench.ringbuf"
typedef struct {
    struct ring_buffer *rb;
    lua_State *L; /* the consume call's state, for the sample callback */
} cb_ringbuf;

static int rb_sample(void *ctx, void *data, size_t size) {
    cb_ringbuf *r = ctx;
    lua_State *L = r->L;
    struct bench_event e;
    if (size < sizeof e)
        return -EINVAL;
    memcpy(&e, data, sizeof e);
    lua_pushvalue(L, 2); /* fn */
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)e.pid);
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, (lua_Integer)e.seq);
    lua_setfield(L, -2, "seq");
    push_u64(L, e.ts);
    lua_setfield(L, -2, "ts");
    push_u64(L, e.value);
    lua_setfield(L, -2, "value");
    lua_pushlstring(L, e.comm, strnlen(e.comm, sizeof e.comm));
    lua_setfield(L, -2, "comm");
    lua_pushinteger(L, (lua_Integer)e.flags);
    lua_setfield(L, -2, "flags");
    lua_call(L, 1, 0);
    return 0;
}

/* cbench.ringbuf(map_fd) -> rb */
static int cb_ringbuf_new(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    cb_ringbuf *r = lua_newuserdata(L, sizeof *r);
    r->rb = NULL;
    r->L = NULL;
    luaL_getmetatable(L, CB_RINGBUF);
    lua_setmetatable(L, -2);
    r->rb = ring_buffer__new(fd, rb_sample, r, NULL);
    if (!r->rb)
        return luaL_error(L, "ringbuf: ring_buffer__new failed: %s", strerror(errno));
    return 1;
}

/* rb:consume(fn) -> n; rb:poll(timeout_ms, fn) -> n */
static int ringbuf_run(lua_State *L, int timeout_ms) {
    cb_ringbuf *r = luaL_checkudata(L, 1, CB_RINGBUF);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    if (!r->rb)
        return luaL_error(L, "ringbuf: closed");
    r->L = L;
    int n = timeout_ms < 0 ? ring_buffer__consume(r->rb) : ring_buffer__poll(r->rb, timeout_ms);
    if (n < 0 && n != -EINTR)
        return luaL_error(L, "ringbuf: %s failed: %s", timeout_ms < 0 ? "consume" : "poll",
                          strerror(-n));
    lua_pushinteger(L, n < 0 ? 0 : n);
    return 1;
}

static int cb_ringbuf_consume(lua_State *L) { return ringbuf_run(L, -1); }

static int cb_ringbuf_poll(lua_State *L) {
    int timeout_ms = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, timeout_ms >= 0, 2, "a timeout >= 0 expected");
    lua_remove(L, 2);
    return ringbuf_run(L, timeout_ms);
}

static int cb_ringbuf_close(lua_State *L) {
    cb_ringbuf *r = luaL_checkudata(L, 1, CB_RINGBUF);
    if (r->rb)
        ring_buffer__free(r->rb);
    r->rb = NULL;
    return 0;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* cbench.syscall_loop(seconds) -> calls: getppid() until seconds have passed */
static int cb_syscall_loop(lua_State *L) {
    lua_Number seconds = luaL_checknumber(L, 1);
    uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), calls = 0;
    do {
        for (int i = 0; i < 256; i++)
            syscall(SYS_getppid);
        calls += 256;
    } while (mono_ns() < end);
    push_u64(L, calls);
    return 1;
}

/* ---- floors: the least a Lua C function can do for each luaebpf read ----
 * Each does the syscall work of the luaebpf call it stands beside, with a
 * u32 key and u64 values hard-coded, no argument checks beyond what keeps it
 * safe, no codecs: what a Lua call of that read cannot go below. */

/* cbench.lookup_floor(fd, key) -> value | nil */
/* the lookup of the u32 key at key_idx in the u32 -> u64 map fd */
static int lookup_floor_at(lua_State *L, int fd, int key_idx) {
    uint32_t key = (uint32_t)lua_tointeger(L, key_idx);
    uint64_t v;
    if (bpf_map_lookup_elem(fd, &key, &v) != 0) {
        if (errno != ENOENT)
            return luaL_error(L, "lookup_floor: %s", strerror(errno));
        lua_pushnil(L);
        return 1;
    }
    push_u64(L, v);
    return 1;
}

static int cb_lookup_floor(lua_State *L) {
    return lookup_floor_at(L, (int)lua_tointeger(L, 1), 2);
}

/* cbench.floor_map(fd) -> fm, with fm:lookup(key): lookup_floor as a method,
 * self checked as a plain C method checks it (luaL_checkudata). Against it,
 * m:lookup's ratio leaves out what every method call costs (the method's
 * lookup through the metatable's __index, a self check) and shows what
 * luaebpf's own code adds. */
#define CB_FLOOR_MAP "cbench.floor_map"
static int cb_floor_map_lookup(lua_State *L) {
    return lookup_floor_at(L, *(int *)luaL_checkudata(L, 1, CB_FLOOR_MAP), 2);
}

static int cb_floor_map(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    *(int *)lua_newuserdata(L, sizeof(int)) = fd;
    luaL_setmetatable(L, CB_FLOOR_MAP);
    return 1;
}

#define FLOOR_MAX_CPUS 512
static int floor_ncpus(lua_State *L) {
    static int n;
    if (n <= 0)
        n = libbpf_num_possible_cpus();
    if (n <= 0 || n > FLOOR_MAX_CPUS)
        luaL_error(L, "cbench: %d possible CPUs, at most %d supported", n, FLOOR_MAX_CPUS);
    return n;
}

/* a per-CPU u64 lookup into buf (ncpus values); 0 when absent (nil pushed) */
static int percpu_lookup(lua_State *L, uint64_t *buf) {
    int fd = (int)lua_tointeger(L, 1);
    uint32_t key = (uint32_t)lua_tointeger(L, 2);
    if (bpf_map_lookup_elem(fd, &key, buf) == 0)
        return 1;
    if (errno != ENOENT)
        luaL_error(L, "percpu floor: %s", strerror(errno));
    lua_pushnil(L);
    return 0;
}

/* cbench.percpu_sum_floor(fd, key) -> the u64 values of all CPUs summed | nil */
static int cb_percpu_sum_floor(lua_State *L) {
    uint64_t buf[FLOOR_MAX_CPUS], sum = 0;
    int n = floor_ncpus(L);
    if (!percpu_lookup(L, buf))
        return 1;
    for (int i = 0; i < n; i++)
        sum += buf[i];
    push_u64(L, sum);
    return 1;
}

/* cbench.percpu_into_floor(fd, key, t) -> t, t[i] the value of CPU i - 1 | nil */
static int cb_percpu_into_floor(lua_State *L) {
    uint64_t buf[FLOOR_MAX_CPUS];
    int n = floor_ncpus(L);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!percpu_lookup(L, buf))
        return 1;
    for (int i = 0; i < n; i++) {
        push_u64(L, buf[i]);
        lua_rawseti(L, 3, i + 1);
    }
    lua_settop(L, 3);
    return 1;
}

/* cbench.percpu_table_floor(fd, key) -> a new table of the ncpus values | nil
 * (what a plain per-CPU lookup does) */
static int cb_percpu_table_floor(lua_State *L) {
    uint64_t buf[FLOOR_MAX_CPUS];
    int n = floor_ncpus(L);
    if (!percpu_lookup(L, buf))
        return 1;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_u64(L, buf[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* a batch walk of a u32 -> u64 hash, for dump_floor and pairs_floor */
typedef struct floor_walk {
    int fd, started, done;
    uint32_t cap, count, pos;
    uint64_t in, out; /* the hash cursor: a bucket number, 8-byte slots as luaebpf's */
    uint32_t *keys;
    uint64_t *values;
} floor_walk;

static void floor_free(floor_walk *w) {
    free(w->keys);
    free(w->values);
    w->keys = NULL;
    w->values = NULL;
    w->done = 1;
}

static int floor_alloc(floor_walk *w, uint32_t cap) {
    free(w->keys);
    free(w->values);
    w->keys = malloc((size_t)cap * sizeof *w->keys);
    w->values = malloc((size_t)cap * sizeof *w->values);
    w->cap = cap;
    return w->keys && w->values;
}

/* the next batch into w: entries fetched (0 at the end); raises on failure */
static uint32_t floor_fetch(lua_State *L, floor_walk *w) {
    for (;;) {
        uint32_t count = w->cap;
        int r = bpf_map_lookup_batch(w->fd, w->started ? &w->in : NULL, &w->out, w->keys,
                                     w->values, &count, NULL);
        int no = r ? errno : 0;
        if (no == ENOSPC) {
            if (!floor_alloc(w, w->cap * 2)) {
                floor_free(w);
                luaL_error(L, "floor walk: out of memory");
            }
            continue;
        }
        if (no && no != ENOENT) {
            floor_free(w);
            luaL_error(L, "floor walk: lookup_batch failed: %s", strerror(no));
        }
        w->started = 1;
        w->in = w->out;
        w->done = no == ENOENT;
        w->count = count;
        w->pos = 0;
        if (count || w->done)
            return count;
    }
}

#define CB_FLOOR_WALK "cbench.floor_walk"
static int floor_walk_gc(lua_State *L) {
    floor_free(luaL_checkudata(L, 1, CB_FLOOR_WALK));
    return 0;
}

static floor_walk *floor_walk_new(lua_State *L, int fd, lua_Integer batch) {
    luaL_argcheck(L, batch >= 1 && batch <= (1 << 24), 2, "a batch size in 1..2^24 expected");
    floor_walk *w = lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    luaL_getmetatable(L, CB_FLOOR_WALK);
    lua_setmetatable(L, -2);
    w->fd = fd;
    if (!floor_alloc(w, (uint32_t)batch)) {
        floor_free(w);
        luaL_error(L, "floor walk: out of memory");
    }
    return w;
}

/* cbench.dump_floor(fd, batch, hint) -> keys, values: the arrays made hint large */
static int cb_dump_floor(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer batch = luaL_checkinteger(L, 2);
    int hint = (int)luaL_optinteger(L, 3, 0);
    floor_walk *w = floor_walk_new(L, fd, batch); /* 4 */
    lua_createtable(L, hint, 0);                  /* 5 keys */
    lua_createtable(L, hint, 0);                  /* 6 values */
    lua_Integer i = 0;
    while (!w->done) {
        uint32_t n = floor_fetch(L, w);
        for (uint32_t j = 0; j < n; j++) {
            i++;
            lua_pushinteger(L, (lua_Integer)w->keys[j]);
            lua_rawseti(L, 5, i);
            push_u64(L, w->values[j]);
            lua_rawseti(L, 6, i);
        }
    }
    floor_free(w);
    return 2;
}

/* upvalue 1: the walk */
static int floor_pairs_step(lua_State *L) {
    floor_walk *w = lua_touserdata(L, lua_upvalueindex(1));
    while (w->pos >= w->count) {
        if (w->done || floor_fetch(L, w) == 0) {
            floor_free(w);
            lua_pushnil(L);
            return 1;
        }
    }
    lua_pushinteger(L, (lua_Integer)w->keys[w->pos]);
    push_u64(L, w->values[w->pos]);
    w->pos++;
    return 2;
}

/* cbench.pairs_floor(fd, batch) -> step: for k, v in cbench.pairs_floor(fd, batch) do */
static int cb_pairs_floor(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    floor_walk_new(L, fd, luaL_checkinteger(L, 2));
    lua_pushcclosure(L, floor_pairs_step, 1);
    return 1;
}

int luaopen_cbench(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"now", cb_now},           {"lookup_loop", cb_lookup_loop},
        {"fill", cb_fill},         {"batch_loop", cb_batch_loop},
        {"next_key_loop", cb_next_key_loop}, {"cputime", cb_cputime},
        {"getpid", cb_getpid},     {"fill_events", cb_fill_events},
        {"ringbuf", cb_ringbuf_new}, {"syscall_loop", cb_syscall_loop},
        {"lookup_floor", cb_lookup_floor}, {"floor_map", cb_floor_map},
        {"percpu_sum_floor", cb_percpu_sum_floor},
        {"percpu_into_floor", cb_percpu_into_floor},
        {"percpu_table_floor", cb_percpu_table_floor},
        {"dump_floor", cb_dump_floor}, {"pairs_floor", cb_pairs_floor},
        {"update_batch_loop", cb_update_batch_loop}, {NULL, NULL}};
    static const luaL_Reg rb_methods[] = {
        {"consume", cb_ringbuf_consume}, {"poll", cb_ringbuf_poll},
        {"close", cb_ringbuf_close}, {NULL, NULL}};
    luaL_newmetatable(L, CB_FLOOR_MAP);
    lua_newtable(L);
    lua_pushcfunction(L, cb_floor_map_lookup);
    lua_setfield(L, -2, "lookup");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, CB_FLOOR_WALK);
    lua_pushcfunction(L, floor_walk_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, CB_RINGBUF);
    lua_newtable(L);
#if LUA_VERSION_NUM >= 502
    luaL_setfuncs(L, rb_methods, 0);
#else
    luaL_register(L, NULL, rb_methods);
#endif
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, cb_ringbuf_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
#if LUA_VERSION_NUM >= 502
    luaL_newlib(L, funcs);
#else
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
#endif
    return 1;
}

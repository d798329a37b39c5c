/* cbench.c: the C side of the benchmarks. A raw libbpf loop timed in C, so
 * the bench/ scripts can compare luaebpf against it in the same process:
 *   cbench.now()                              CLOCK_MONOTONIC seconds (ns resolution)
 *   cbench.lookup_loop(fd, nkeys, iterations) elapsed ns, misses
 * lookup_loop looks up u32 keys 0..nkeys-1 in turn (u64 values) with
 * bpf_map_lookup_elem; misses counts ENOENT answers, any other failure raises.
 * Links libbpf only: the Lua symbols come from the host interpreter. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <lua.h>
#include <lauxlib.h>

int luaopen_cbench(lua_State *L);

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
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

/* cbench.lookup_loop(fd, nkeys, iterations) -> elapsed ns, misses */
static int cb_lookup_loop(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer nkeys = luaL_checkinteger(L, 2);
    lua_Integer iterations = luaL_checkinteger(L, 3);
    luaL_argcheck(L, fd >= 0, 1, "a map fd (>= 0) expected");
    luaL_argcheck(L, nkeys >= 1 && nkeys <= (lua_Integer)UINT32_MAX, 2,
                  "a key count in 1..2^32-1 expected");
    luaL_argcheck(L, iterations >= 0, 3, "an iteration count >= 0 expected");
    uint32_t key = 0, n = (uint32_t)nkeys;
    uint64_t value, misses = 0;
    uint64_t t0 = mono_ns();
    for (lua_Integer i = 0; i < iterations; i++) {
        if (bpf_map_lookup_elem(fd, &key, &value) != 0) {
            int no = errno;
            if (no != ENOENT)
                return luaL_error(L, "lookup_loop: lookup of key %d failed: %s", (int)key,
                                  strerror(no));
            misses++;
        }
        if (++key == n)
            key = 0;
    }
    uint64_t elapsed = mono_ns() - t0;
    push_u64(L, elapsed);
    push_u64(L, misses);
    return 2;
}

int luaopen_cbench(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"now", cb_now}, {"lookup_loop", cb_lookup_loop}, {NULL, NULL}};
#if LUA_VERSION_NUM >= 502
    luaL_newlib(L, funcs);
#else
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
#endif
    return 1;
}

/* fuzz_btf.c: libFuzzer harness for btf.c, with encode.c and decode.c. The
 * input is a raw BTF blob (the seed corpus holds real ones from the bpf/
 * objects, which the fuzzer mutates).
 * libbpf's btf__new validates it as the kernel would not have to; for every
 * type it accepts, the harness builds the "btf" codec, decodes bytes of the
 * type's size, encodes the result again and decodes that. Any crash or
 * sanitizer report is a finding; Lua errors are answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/btf.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "../luaebpf/luaebpf.h"

int luaopen_luaebpf_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

/* protected: args btf (light), type id; builds, decodes, encodes, decodes */
static int exercise(lua_State *S) {
    const struct btf *btf = lua_touserdata(S, 1);
    uint32_t id = (uint32_t)lua_tointeger(S, 2);
    luaebpf_codec *c = luaebpf_codec_from_btf(S, btf, id);
    uint32_t n = c->nodes[0].size;
    if (n == 0 || n > 1 << 16)
        return 0;
    unsigned char *buf = lua_newuserdata(S, n), *out = lua_newuserdata(S, n);
    for (uint32_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 37 + id);
    luaebpf_decode(S, c, buf);
    luaebpf_encode(S, c, -1, out, "value", 0);
    luaebpf_decode(S, c, out);
    luaebpf_push_layout(S, c);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaL_requiref(L, "luaebpf.core", luaopen_luaebpf_core, 0);
        lua_pop(L, 1);
    }
    struct btf *btf = btf__new(data, (uint32_t)size);
    if (!btf)
        return 0;
    uint32_t n = btf__type_cnt(btf);
    for (uint32_t id = 1; id < n && id < 512; id++) {
        lua_pushcfunction(L, exercise);
        lua_pushlightuserdata(L, btf);
        lua_pushinteger(L, id);
        lua_pcall(L, 2, 0, 0);
        lua_settop(L, 0);
    }
    btf__free(btf);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

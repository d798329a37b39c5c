/* fuzz_codec.c: libFuzzer harness for the codecs: codec.c compiles specs,
 * encode.c and decode.c walk them. The first byte picks a codec spec written
 * as Lua data (the table below, or the fuzz input itself read as a Lua
 * expression in an empty environment); the rest is bytes to decode.
 * Every decoded value is encoded again and must give back the bytes it came
 * from wherever the codec is canonical; any crash, sanitizer report or
 * mismatch is a finding. Built with clang -fsanitize=fuzzer,address,undefined
 * against the module's own sources and liblua (the harness owns the VM). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_luaebpf_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* specs whose decode -> encode round trip is exact (no bool, char or padding) */
static const char *const canonical[] = {
    "'u8'", "'i16'", "'u32'", "'i64'", "'be16'", "'be32'", "'be64'", "'f64'",
    "{ 'u32', 3 }", "'u16[5]'", "'raw[7]'",
    "{ { 'a', 'u32' }, { 'b', 'i16' }, { 'c', 'u16' } }",
    "{ { 'a', 'u8' }, { 'b', 'u64' }, packed = true }",
    "{ { 'x', { { 'y', 'i32' }, { 'z', { 'u8', 4 } } } }, { 'w', 'be64' } }",
};
/* specs where only decode -> encode -> decode is stable */
static const char *const lossy[] = {
    "'bool'", "'char[16]'", "'f32'", "{ { 'a', 'u8' }, { 'b', 'u64' } }",
    "{ { 'pid', 'u32' }, { 'comm', 'char[16]' }, { 'ok', 'bool' } }",
};
#define NCANON (sizeof canonical / sizeof canonical[0])
#define NLOSSY (sizeof lossy / sizeof lossy[0])

static lua_State *L;

/* runs with the fuzz bytes as `...`; returns "mismatch" when decode and
 * encode disagree. Errors (a spec or value refused) are fine: they are answers. */
static const char *const driver =
    "local core, spec_src, bytes, exact = ...\n"
    "local spec = assert(load('return ' .. spec_src, 'spec', 't', {}))()\n"
    "local ok, size = pcall(core.sizeof, spec)\n"
    "if not ok or #bytes < size then return 'ok' end\n"
    "local chunk = bytes:sub(1, size)\n"
    "local v = core.decode(spec, chunk)\n"
    "local again = core.encode(spec, v)\n"
    "if #again ~= size then return 'mismatch' end\n"
    "if exact and not spec_src:find('f64') then\n" /* NaN payloads do not survive Lua numbers */
    "  if again ~= chunk then return 'mismatch' end\n"
    "else\n"
    "  local v2 = core.decode(spec, again)\n"
    "  if core.encode(spec, v2) ~= again then return 'mismatch' end\n"
    "end\n"
    "return 'ok'\n";

/* a spec given as Lua text may loop: stop it after a bounded amount of work */
static void budget(lua_State *S, lua_Debug *ar) {
    (void)ar;
    luaL_error(S, "instruction budget exhausted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaL_requiref(L, "luaebpf.core", luaopen_luaebpf_core, 0);
        lua_setglobal(L, "core");
    }
    if (size < 1)
        return 0;
    int top = lua_gettop(L);
    uint8_t pick = data[0];
    const uint8_t *rest = data + 1;
    size_t nrest = size - 1;
    if (luaL_loadstring(L, driver) != LUA_OK)
        abort();
    lua_getglobal(L, "core");
    int exact = 0;
    if (pick < 0x80) {
        const char *src = pick % (NCANON + NLOSSY) < NCANON ? canonical[pick % (NCANON + NLOSSY)]
                                                             : lossy[pick % (NCANON + NLOSSY) - NCANON];
        exact = pick % (NCANON + NLOSSY) < NCANON;
        lua_pushstring(L, src);
        lua_pushlstring(L, (const char *)rest, nrest);
    } else { /* the input is the spec: first NUL splits it from the bytes */
        const uint8_t *nul = memchr(rest, 0, nrest);
        size_t slen = nul ? (size_t)(nul - rest) : nrest;
        lua_pushlstring(L, (const char *)rest, slen);
        lua_pushlstring(L, (const char *)rest + (nul ? slen + 1 : slen),
                        nul ? nrest - slen - 1 : 0);
    }
    lua_pushboolean(L, exact);
    lua_sethook(L, budget, LUA_MASKCOUNT, 1000000);
    if (lua_pcall(L, 4, 1, 0) == LUA_OK && lua_isstring(L, -1) &&
        strcmp(lua_tostring(L, -1), "mismatch") == 0)
        abort(); /* a real finding: decode and encode disagree */
    lua_sethook(L, NULL, 0, 0);
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}

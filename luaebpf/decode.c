/* decode.c: bytes -> Lua values, by a compiled codec (layout.c). One small
 * function per kind of node; luaebpf_decode and luaebpf_decode_entry take the
 * u64 counter, the commonest map value, without a walk. Reads only: the
 * bytes, of the codec's size, were checked by the caller. A value Lua cannot
 * hold exactly (5.1/LuaJIT: an integer beyond 2^53, see compat.h) reads as a
 * decimal string with int64 = "string", else raises naming where it sits. */
#include <stdio.h>
#include <string.h>
#include "luaebpf.h"

/* where a decoded value sits: a chain from the field up to the root */
typedef struct dpath {
    const struct dpath *up;
    const char *name;   /* field name, or NULL for an array element */
    uint32_t index;     /* 1-based, for an array element */
    int key_idx;        /* only on the root of a map entry's bytes: -1 when they are
                         * the key, else the stack index of the entry's decoded key */
} dpath;

/* --------------------------------------------- integers beyond a number */

/* pushes ".a.b[3]" for the field at; "" at an entry's root, which names no field */
static void push_dpath(lua_State *L, const dpath *at) {
    if (!at || at->key_idx) {
        lua_pushliteral(L, "");
        return;
    }
    push_dpath(L, at->up);
    if (at->name)
        lua_pushfstring(L, "%s%s", at->up && !at->up->key_idx ? "." : "", at->name);
    else
        lua_pushfstring(L, "[%d]", (int)at->index);
    lua_concat(L, 2);
}

/* pushes a short text of the decoded key at idx: its number or string, or a
 * struct's scalar fields ({pid=1, comm="sh"}); nested tables show as {...} */
static void push_key_text(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
        return;
    }
    if (!lua_istable(L, idx)) {
        luaL_tolstring(L, idx, NULL);
        return;
    }
    int n = 1; /* pieces of text so far, under the lua_next key */
    lua_pushliteral(L, "{");
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* pieces..., key, value */
        int key = lua_gettop(L) - 1;
        luaL_checkstack(L, 6, "key text");
        if (n > 8) { /* enough to tell the entry: stop */
            lua_settop(L, key - 1);
            lua_pushliteral(L, ", ...");
            n++;
            break;
        }
        const char *v = lua_istable(L, -1) ? "{...}"
                        : lua_type(L, -1) == LUA_TSTRING ? lua_pushfstring(L, "\"%s\"",
                                                                           lua_tostring(L, -1))
                                                         : luaL_tolstring(L, -1, NULL);
        const char *k = luaL_tolstring(L, key, NULL);
        lua_pushfstring(L, "%s%s=%s", n > 1 ? ", " : "", k, v);
        lua_insert(L, key); /* pieces..., piece, key, ... */
        lua_settop(L, key + 1);
        n++;
    }
    lua_pushliteral(L, "}");
    lua_concat(L, n + 1);
}

/* an integer a Lua number cannot hold (only 5.1 has them): its decimal
 * string when the codec asks for one, else an error naming the field, and
 * the entry when the bytes came from a map's */
static void push_beyond(lua_State *L, const luaebpf_codec *c, uint64_t bits, int is_signed,
                        const luaebpf_node *n, const dpath *at) {
    char dec[24], hex[24];
    if (is_signed && (int64_t)bits < 0)
        snprintf(dec, sizeof dec, "%lld", (long long)(int64_t)bits);
    else
        snprintf(dec, sizeof dec, "%llu", (unsigned long long)bits);
    if (c->int64_string) {
        lua_pushstring(L, dec);
        return;
    }
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)bits);
    const dpath *root = at;
    while (root && root->up)
        root = root->up;
    int key_idx = root ? root->key_idx : 0;
    int field = at && !at->key_idx;
    push_dpath(L, at);
    const char *path = lua_tostring(L, -1);
    if (key_idx > 0 && !lua_isnoneornil(L, key_idx)) {
        push_key_text(L, key_idx);
        lua_pushfstring(L, " of the entry with key %s", lua_tostring(L, -1));
    } else {
        lua_pushstring(L, key_idx < 0 && field ? " of the key" : "");
    }
    const char *entry = lua_tostring(L, -1);
    luaL_error(L, "%s %s%s%s%s holds %s (%s), beyond 2^53: a Lua number cannot hold it exactly; "
               "set int64 = \"string\" (open options, m:codec{} or decode's options) to read "
               "such values as decimal strings", luaebpf_kind_name(n), field ? "field '"
               : key_idx < 0 ? "key" : "value", path, field ? "'" : "", entry, dec, hex);
}

/* pushes the integer with these 64 bits (signed or not) of node n */
static inline void int_push(lua_State *L, const luaebpf_codec *c, uint64_t bits, int is_signed,
                            const luaebpf_node *n, const dpath *at) {
    if (!luaebpf_push_exact(L, bits, is_signed)) /* inline: 5.3+ always pushes */
        push_beyond(L, c, bits, is_signed, n, at);
}

/* ---------------------------------------------------------------- nodes */

static uint64_t load_uint(const unsigned char *p, uint32_t size, int big_endian) {
    if (big_endian) {
        uint64_t v = 0;
        for (uint32_t i = 0; i < size; i++)
            v = v << 8 | p[i];
        return v;
    }
    switch (size) {
    case 1: return p[0];
    case 2: { uint16_t t; memcpy(&t, p, 2); return t; }
    case 4: { uint32_t t; memcpy(&t, p, 4); return t; }
    default: { uint64_t t; memcpy(&t, p, 8); return t; }
    }
}

static int64_t sign_extend(uint64_t u, int bits) {
    int shift = 64 - bits;
    return shift > 0 ? (int64_t)(u << shift) >> shift : (int64_t)u;
}

static void decode_node(lua_State *L, const luaebpf_codec *c, uint32_t ni,
                        const unsigned char *p, const dpath *at);

static void decode_array(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                         const unsigned char *p, const dpath *at) {
    const luaebpf_node *e = &c->nodes[n->first];
    luaL_checkstack(L, 4, "codec nesting");
    lua_createtable(L, (int)n->count, 0);
    for (uint32_t i = 0; i < n->count; i++) {
        dpath here = {at, NULL, i + 1, 0};
        decode_node(L, c, n->first, p + (size_t)i * e->size, &here);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* the fields of struct n into the table on top; anonymous members' fields too */
static void decode_fields(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                          const unsigned char *p, const dpath *at) {
    for (uint32_t i = 0; i < n->count; i++) {
        const luaebpf_node *f = &c->nodes[n->first + i];
        if (!f->name) {
            decode_fields(L, c, f, p + f->offset, at);
            continue;
        }
        dpath here = {at, f->name, 0, 0};
        decode_node(L, c, n->first + i, p + f->offset, &here);
        lua_setfield(L, -2, f->name);
    }
}

/* an enumerator's name; the number when none has this value */
static void decode_enum(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                        const unsigned char *p, const dpath *at) {
    uint64_t u = load_uint(p, n->size, 0);
    int64_t v = n->is_signed ? sign_extend(u, 8 * (int)n->size) : (int64_t)u;
    for (uint32_t i = 0; i < n->count; i++) {
        if (c->nodes[n->first + i].value == v) {
            lua_pushstring(L, c->nodes[n->first + i].name);
            return;
        }
    }
    int_push(L, c, (uint64_t)v, n->is_signed, n, at);
}

static void decode_bitfield(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                            const unsigned char *p, const dpath *at) {
    unsigned __int128 word = 0;
    memcpy(&word, p, ((size_t)n->bit_offset + n->bit_size + 7) / 8);
    uint64_t u = (uint64_t)(word >> n->bit_offset);
    if (n->bit_size < 64)
        u &= ((uint64_t)1 << n->bit_size) - 1;
    if (n->is_signed)
        u = (uint64_t)sign_extend(u, n->bit_size);
    int_push(L, c, u, n->is_signed, n, at);
}

/* a decoder's text or float; when the bytes map to nothing, their integer,
 * as a decimal string where a Lua number cannot hold it (LuaJIT, beyond
 * 2^53): a read never raises for a value it cannot map. Apart from
 * decode_node so that its buffer (a cgroup path may be long) costs the
 * plain kinds nothing. */
static __attribute__((noinline)) void decode_decoded(lua_State *L, const luaebpf_node *n,
                                                     const unsigned char *p) {
    char buf[4352];
    uint64_t num = 0;
    double f = 0;
    buf[0] = '\0';
    switch (luaebpf_decoded_read(n, p, buf, sizeof buf, &num, &f)) {
    case LUAEBPF_READ_TEXT:
        lua_pushstring(L, buf);
        return;
    case LUAEBPF_READ_FLOAT:
        lua_pushnumber(L, (lua_Number)f);
        return;
    default:
        break;
    }
    int is_signed = n->decoder == LUAEBPF_DEC_ERRNO;
    if (luaebpf_push_exact(L, num, is_signed))
        return;
    if (is_signed && (int64_t)num < 0)
        lua_pushfstring(L, "-%s", LUAEBPF_UTEXT(-(uint64_t)num));
    else
        lua_pushstring(L, LUAEBPF_UTEXT(num));
}

static void decode_node(lua_State *L, const luaebpf_codec *c, uint32_t ni,
                        const unsigned char *p, const dpath *at) {
    const luaebpf_node *n = &c->nodes[ni];
    switch (n->kind) {
    case LUAEBPF_UINT:
    case LUAEBPF_BE:
        int_push(L, c, load_uint(p, n->size, n->kind == LUAEBPF_BE), 0, n, at);
        return;
    case LUAEBPF_INT:
        int_push(L, c, (uint64_t)sign_extend(load_uint(p, n->size, 0), 8 * (int)n->size), 1,
                 n, at);
        return;
    case LUAEBPF_BOOL:
        lua_pushboolean(L, p[0] != 0);
        return;
    case LUAEBPF_F32: {
        float f;
        memcpy(&f, p, 4);
        lua_pushnumber(L, (lua_Number)f);
        return;
    }
    case LUAEBPF_F64: {
        double d;
        memcpy(&d, p, 8);
        lua_pushnumber(L, (lua_Number)d);
        return;
    }
    case LUAEBPF_CHAR: { /* up to the first NUL */
        const unsigned char *nul = memchr(p, 0, n->size);
        lua_pushlstring(L, (const char *)p, nul ? (size_t)(nul - p) : n->size);
        return;
    }
    case LUAEBPF_RAW:
        lua_pushlstring(L, (const char *)p, n->size);
        return;
    case LUAEBPF_ARRAY:
        decode_array(L, c, n, p, at);
        return;
    case LUAEBPF_STRUCT:
        luaL_checkstack(L, 4, "codec nesting");
        lua_createtable(L, 0, (int)n->count);
        decode_fields(L, c, n, p, at);
        return;
    case LUAEBPF_ENUM:
        decode_enum(L, c, n, p, at);
        return;
    case LUAEBPF_BITFIELD:
        decode_bitfield(L, c, n, p, at);
        return;
    case LUAEBPF_DECODED:
        decode_decoded(L, n, p);
        return;
    }
}

/* decodes buf; root: where the bytes come from, for messages (NULL: nowhere said) */
static void decode_root(lua_State *L, const luaebpf_codec *c, const unsigned char *buf,
                        const dpath *root) {
    /* the hot cases, a plain 4- or 8-byte integer (u64 counters, u32 keys):
     * straight to the push, no walk of the node tree (luaebpf.h) */
    if (!luaebpf_decode_fast(L, c, buf))
        decode_node(L, c, 0, buf, root);
}

void luaebpf_decode(lua_State *L, const luaebpf_codec *c, const unsigned char *buf) {
    decode_root(L, c, buf, NULL);
}

/* as luaebpf_decode, for bytes of a map entry: its key (key_idx 0) or its
 * value (key_idx: the absolute stack index of the entry's decoded key), so
 * that a value Lua cannot hold (LuaJIT, beyond 2^53) says which entry */
void luaebpf_decode_entry(lua_State *L, const luaebpf_codec *c, const unsigned char *buf,
                          int key_idx) {
    dpath root = {NULL, NULL, 0, key_idx ? key_idx : -1};
    decode_root(L, c, buf, &root);
}

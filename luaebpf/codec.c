/* codec.c: codec specs -> layouts, and the two directions between Lua values
 * and the bytes the kernel stores. A spec ("u32", "char[16]", { "u32", 4 },
 * { { "pid", "u32" }, ..., packed = true }) compiles into a flat array of
 * nodes held by a "luaebpf.Codec" userdata; the node array is owned by that
 * userdata from the first allocation, so a spec error raised halfway through
 * compiling leaks nothing. Structs follow C's natural alignment. */
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "luaebpf.h"

#define MAX_DEPTH 32
#define MAX_SIZE (1u << 30) /* far above any map's key or value size */

/* ---------------------------------------------------------------- compile */

static const struct {
    const char *name;
    uint8_t kind;
    uint8_t size;
} scalars[] = {
    {"u8", LUAEBPF_UINT, 1},  {"u16", LUAEBPF_UINT, 2}, {"u32", LUAEBPF_UINT, 4},
    {"u64", LUAEBPF_UINT, 8}, {"i8", LUAEBPF_INT, 1},   {"i16", LUAEBPF_INT, 2},
    {"i32", LUAEBPF_INT, 4},  {"i64", LUAEBPF_INT, 8},  {"be16", LUAEBPF_BE, 2},
    {"be32", LUAEBPF_BE, 4},  {"be64", LUAEBPF_BE, 8},  {"bool", LUAEBPF_BOOL, 1},
    {"f32", LUAEBPF_F32, 4},  {"f64", LUAEBPF_F64, 8},
};
#define NSCALARS (sizeof scalars / sizeof scalars[0])

static int codec_gc(lua_State *L) {
    luaebpf_codec *c = luaL_checkudata(L, 1, LUAEBPF_CODEC);
    if (c->nodes) {
        for (uint32_t i = 0; i < c->n; i++) {
            free(c->nodes[i].name);
            free(c->nodes[i].type_name);
        }
        free(c->nodes);
    }
    c->nodes = NULL;
    c->n = c->cap = 0;
    return 0;
}

/* reserve `count` zeroed, contiguous nodes; returns the index of the first */
uint32_t luaebpf_codec_reserve(lua_State *L, luaebpf_codec *c, uint32_t count) {
    if (c->n + count > c->cap) {
        uint32_t cap = c->cap ? c->cap : 8;
        while (cap < c->n + count)
            cap *= 2;
        if (cap > (1u << 20))
            luaL_error(L, "codec has too many fields (more than %d)", 1 << 20);
        luaebpf_node *nodes = realloc(c->nodes, cap * sizeof *nodes);
        if (!nodes)
            luaL_error(L, "out of memory compiling a codec");
        c->nodes = nodes;
        c->cap = cap;
    }
    memset(c->nodes + c->n, 0, count * sizeof *c->nodes);
    c->n += count;
    return c->n - count;
}

/* "name[N]" -> name (into buf) and N; 0 when s has no such suffix */
static int parse_count(const char *s, char *buf, size_t bufsize, uint32_t *count) {
    const char *lb = strchr(s, '[');
    size_t len = strlen(s);
    if (!lb || len < 3 || s[len - 1] != ']' || (size_t)(lb - s) >= bufsize)
        return 0;
    char *end;
    unsigned long v = strtoul(lb + 1, &end, 10);
    if (end != s + len - 1 || end == lb + 1 || lb[1] == '-' || lb[1] == '+')
        return -1;
    memcpy(buf, s, (size_t)(lb - s));
    buf[lb - s] = '\0';
    *count = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return 1;
}

static void compile_node(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth);

/* pushes the string at idx with each NUL byte written as \0: messages quote
 * names through %s, which would stop at the first NUL and hide it */
static const char *push_shown(lua_State *L, int idx) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            luaL_addstring(&b, "\\0");
        else
            luaL_addchar(&b, s[i]);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* the string at idx when it holds no NUL byte, else NULL: C compares names up
 * to the first NUL, so "pid\0junk" would pass for "pid" */
static const char *tostring_nonul(lua_State *L, int idx) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return s && strlen(s) == len ? s : NULL;
}

static void check_count(lua_State *L, uint32_t count, uint32_t elem_size, const char *spec) {
    if (count == 0)
        luaL_error(L, "bad codec '%s': an array needs at least one element", spec);
    if (elem_size && count > MAX_SIZE / elem_size)
        luaL_error(L, "bad codec '%s': larger than %d bytes", spec, (int)MAX_SIZE);
}

static void compile_string(lua_State *L, luaebpf_codec *c, uint32_t slot, const char *s) {
    luaebpf_node *n = &c->nodes[slot];
    for (size_t i = 0; i < NSCALARS; i++) {
        if (strcmp(s, scalars[i].name) == 0) {
            n->kind = scalars[i].kind;
            n->size = n->align = scalars[i].size;
            return;
        }
    }
    if (strcmp(s, "raw") == 0) { /* the map's whole key or value: sized when attached */
        if (slot != 0)
            luaL_error(L, "bad codec 'raw': inside a struct or array, give a size: 'raw[N]'");
        n->kind = LUAEBPF_RAW;
        n->align = 1;
        return;
    }
    char base[16];
    uint32_t count;
    int r = parse_count(s, base, sizeof base, &count);
    if (r == 1 && (strcmp(base, "char") == 0 || strcmp(base, "raw") == 0)) {
        check_count(L, count, 1, s);
        n->kind = base[0] == 'c' ? LUAEBPF_CHAR : LUAEBPF_RAW;
        n->size = count;
        n->align = 1;
        return;
    }
    if (r == 1) {
        for (size_t i = 0; i < NSCALARS; i++) {
            if (strcmp(base, scalars[i].name) == 0) {
                check_count(L, count, scalars[i].size, s);
                uint32_t child = luaebpf_codec_reserve(L, c, 1);
                n = &c->nodes[slot]; /* reserve may move the array */
                c->nodes[child].kind = scalars[i].kind;
                c->nodes[child].size = c->nodes[child].align = scalars[i].size;
                n->kind = LUAEBPF_ARRAY;
                n->first = child;
                n->count = count;
                n->size = count * scalars[i].size;
                n->align = scalars[i].size;
                return;
            }
        }
    }
    luaL_error(L, "unknown codec '%s' (expected raw, u8..u64, i8..i64, be16/be32/be64, bool, "
               "f32, f64, char[N], a type with [N], an array { type, N } or a struct "
               "{ { name, type }, ... })", s);
}

static void compile_struct(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth) {
    uint32_t nfields = (uint32_t)lua_rawlen(L, idx);
    lua_Integer at;
    int packed = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* only [1..n] and `packed` belong in a struct spec */
        const char *k = lua_type(L, -2) == LUA_TSTRING ? tostring_nonul(L, -2) : NULL;
        if (k && strcmp(k, "packed") == 0) {
            if (!lua_isboolean(L, -1))
                luaL_error(L, "bad struct codec: 'packed' must be a boolean, got %s",
                           luaL_typename(L, -1));
            packed = lua_toboolean(L, -1);
        } else if (!luaebpf_tointeger_in(L, -2, 1, nfields, &at)) {
            lua_pop(L, 1);
            luaL_error(L, "bad struct codec: unknown entry '%s' (expected fields "
                       "{ name, type } at 1..n and 'packed')",
                       lua_type(L, -1) == LUA_TSTRING ? push_shown(L, -1)
                                                      : luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
    }
    if (nfields == 0)
        luaL_error(L, "bad struct codec: no fields (expected { { name, type }, ... })");
    uint32_t first = luaebpf_codec_reserve(L, c, nfields);
    uint32_t offset = 0, align = 1;
    for (uint32_t i = 0; i < nfields; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1); /* field spec */
        if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
            luaL_error(L, "bad struct codec: field %d must be { name, type }, got %s",
                       (int)i + 1, luaL_typename(L, -1));
        lua_rawgeti(L, -1, 1); /* field spec, name */
        if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "bad struct codec: field %d needs a name string, got %s",
                       (int)i + 1, luaL_typename(L, -1));
        const char *fname = tostring_nonul(L, -1);
        if (!fname)
            luaL_error(L, "bad struct codec: field %d name \"%s\" holds a NUL byte", (int)i + 1,
                       push_shown(L, -1));
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(c->nodes[first + j].name, fname) == 0)
                luaL_error(L, "bad struct codec: field '%s' appears twice", fname);
        c->nodes[first + i].name = strdup(fname);
        if (!c->nodes[first + i].name)
            luaL_error(L, "out of memory compiling a codec");
        lua_pop(L, 1);
        lua_rawgeti(L, -1, 2); /* field spec, type */
        compile_node(L, c, first + i, lua_gettop(L), depth + 1);
        lua_pop(L, 2);
        luaebpf_node *f = &c->nodes[first + i];
        if (f->kind == LUAEBPF_RAW && f->size == 0)
            luaL_error(L, "bad struct codec: field '%s' is 'raw' without a size", f->name);
        uint32_t a = packed ? 1 : f->align;
        offset = (offset + a - 1) / a * a;
        f->offset = offset;
        if (f->size > MAX_SIZE - offset)
            luaL_error(L, "bad struct codec: larger than %d bytes", (int)MAX_SIZE);
        offset += f->size;
        if (a > align)
            align = a;
    }
    luaebpf_node *n = &c->nodes[slot];
    n->kind = LUAEBPF_STRUCT;
    n->first = first;
    n->count = nfields;
    n->align = align;
    n->size = (offset + align - 1) / align * align; /* trailing padding, as C adds */
}

static void compile_node(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth) {
    if (depth > MAX_DEPTH)
        luaL_error(L, "bad codec: nested deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 8, "codec nesting");
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = tostring_nonul(L, idx);
        if (!s)
            luaL_error(L, "bad codec \"%s\": a NUL byte in a codec name", push_shown(L, idx));
        compile_string(L, c, slot, s);
        return;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "bad codec: a name such as \"u32\" or a table expected, got %s",
                   luaL_typename(L, idx));
    lua_rawgeti(L, idx, 2);
    int is_array = lua_type(L, -1) == LUA_TNUMBER;
    lua_pop(L, 1);
    if (!is_array) {
        compile_struct(L, c, slot, idx, depth);
        return;
    }
    /* { type, N } */
    lua_rawgeti(L, idx, 2);
    lua_Integer v;
    if (!luaebpf_tointeger_in(L, -1, 1, MAX_SIZE, &v))
        luaL_error(L, "bad array codec: the count must be an integer >= 1, got %s",
                   luaL_tolstring(L, -1, NULL));
    uint32_t count = (uint32_t)v;
    lua_pop(L, 1);
    if (lua_rawlen(L, idx) != 2)
        luaL_error(L, "bad array codec: expected { type, N }, got %d entries",
                   (int)lua_rawlen(L, idx));
    uint32_t child = luaebpf_codec_reserve(L, c, 1);
    lua_rawgeti(L, idx, 1);
    compile_node(L, c, child, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    luaebpf_node *e = &c->nodes[child];
    if (e->kind == LUAEBPF_RAW && e->size == 0)
        luaL_error(L, "bad array codec: 'raw' elements need a size: 'raw[N]'");
    if (e->size > MAX_SIZE / count)
        luaL_error(L, "bad array codec: larger than %d bytes", (int)MAX_SIZE);
    luaebpf_node *n = &c->nodes[slot];
    n->kind = LUAEBPF_ARRAY;
    n->first = child;
    n->count = count;
    n->size = count * e->size;
    n->align = e->align;
}

void luaebpf_codec_describe(luaebpf_codec *c) {
    luaebpf_node *r = &c->nodes[0];
    switch (r->kind) {
    case LUAEBPF_RAW:
        snprintf(c->desc, sizeof c->desc, "raw");
        break;
    case LUAEBPF_CHAR:
        snprintf(c->desc, sizeof c->desc, "char[%u]", r->size);
        break;
    case LUAEBPF_ARRAY:
        snprintf(c->desc, sizeof c->desc, "array[%u] (%u bytes)", r->count, r->size);
        break;
    case LUAEBPF_STRUCT:
    case LUAEBPF_ENUM:
        if (r->type_name)
            snprintf(c->desc, sizeof c->desc, "%s", r->type_name);
        else
            snprintf(c->desc, sizeof c->desc, "struct (%u bytes)", r->size);
        break;
    default:
        for (size_t i = 0; i < NSCALARS; i++)
            if (scalars[i].kind == r->kind && scalars[i].size == r->size)
                snprintf(c->desc, sizeof c->desc, "%s", scalars[i].name);
    }
}

luaebpf_codec *luaebpf_codec_new(lua_State *L) {
    luaebpf_codec *c = luaebpf_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUAEBPF_CODEC);
    return c;
}

/* compile the spec at idx; pushes the Codec userdata. `what` names it in errors. */
luaebpf_codec *luaebpf_codec_compile(lua_State *L, int idx, const char *what) {
    idx = lua_absindex(L, idx);
    luaebpf_codec *c = luaebpf_codec_new(L);
    int top = lua_gettop(L);
    luaebpf_codec_reserve(L, c, 1);
    (void)what;
    compile_node(L, c, 0, idx, 0);
    lua_settop(L, top);
    luaebpf_codec_describe(c);
    return c;
}

luaebpf_codec *luaebpf_codec_raw(lua_State *L, uint32_t size) {
    luaebpf_codec *c = luaebpf_codec_new(L);
    luaebpf_codec_reserve(L, c, 1);
    c->nodes[0].kind = LUAEBPF_RAW;
    c->nodes[0].size = size;
    c->nodes[0].align = 1;
    luaebpf_codec_describe(c);
    return c;
}

/* -------------------------------------------------------- 64-bit integers */

/* The one rule for integers a Lua number may not hold; every read and write
 * of an integer field goes through int_push (decode) or int_get (encode).
 * 5.3/5.4: lua_Integer is 64 bits, so every value is exact: a u64 from 2^63
 * up reads as the negative integer with the same bits, and a negative
 * integer writes its two's complement.
 * 5.1/LuaJIT: numbers are doubles, exact in -2^53..2^53. A value in that
 * range reads as a number. One beyond it never reads as a nearby number: it
 * reads as a decimal string when the codec has int64 = "string", and
 * otherwise raises, naming the field and the value. Writing takes a number
 * with an integer value in -2^53..2^53, or (for fields wider than that) a
 * decimal string. */
#define EXACT ((uint64_t)1 << 53)
#if LUAEBPF_HAS_INTEGERS
#define WIDE_FORM "an integer"
#else
#define WIDE_FORM "an integer in -2^53..2^53 or a decimal string"
#endif

/* where a decoded value sits: a chain from the field up to the root */
typedef struct dpath {
    const struct dpath *up;
    const char *name;   /* field name, or NULL for an array element */
    uint32_t index;     /* 1-based, for an array element */
    int key_idx;        /* only on the root of a map entry's bytes: -1 when they are
                         * the key, else the stack index of the entry's decoded key */
} dpath;

#if !LUAEBPF_HAS_INTEGERS
static void push_dpath(lua_State *L, const dpath *at) {
    if (!at || at->key_idx) { /* an entry's root names no field */
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
#endif

static const char *kind_name(const luaebpf_node *n);

/* pushes the integer with these 64 bits (signed or not) of node n, by the rule above */
static void int_push(lua_State *L, const luaebpf_codec *c, uint64_t bits, int is_signed,
                     const luaebpf_node *n, const dpath *at) {
#if LUAEBPF_HAS_INTEGERS
    (void)c, (void)is_signed, (void)n, (void)at;
    lua_pushinteger(L, (lua_Integer)bits);
#else
    int neg = is_signed && (int64_t)bits < 0;
    uint64_t mag = neg ? 0 - bits : bits;
    if (mag <= EXACT) {
        lua_pushnumber(L, neg ? -(lua_Number)mag : (lua_Number)mag);
        return;
    }
    char dec[24], hex[24];
    if (neg)
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
    int key_idx = root ? root->key_idx : 0; /* read from a map entry: name it */
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
               "such values as decimal strings", kind_name(n), field ? "field '"
               : key_idx < 0 ? "key" : "value", path, field ? "'" : "", entry, dec, hex);
#endif
}

/* the integer at idx into *v; 0 when it is not one Lua can give exactly.
 * `wide`: the field goes beyond 2^53, so 5.1 takes a decimal string too */
static int int_get(lua_State *L, int idx, int wide, __int128 *v) {
#if LUAEBPF_HAS_INTEGERS
    (void)wide;
    int isnum = 0;
    if (lua_type(L, idx) == LUA_TNUMBER)
        *v = lua_tointegerx(L, idx, &isnum);
    return isnum;
#else
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number d = lua_tonumber(L, idx);
        if (!(d >= -(lua_Number)EXACT && d <= (lua_Number)EXACT) || d != floor(d))
            return 0;
        *v = (__int128)(int64_t)d;
        return 1;
    }
    if (!wide || lua_type(L, idx) != LUA_TSTRING)
        return 0;
    const char *s = lua_tostring(L, idx);
    int neg = *s == '-';
    s += neg;
    unsigned __int128 mag = 0;
    size_t ndigits = 0;
    for (; *s >= '0' && *s <= '9'; s++, ndigits++) {
        mag = mag * 10 + (unsigned)(*s - '0');
        if (mag > UINT64_MAX)
            return 0;
    }
    if (*s != '\0' || ndigits == 0)
        return 0;
    *v = neg ? -(__int128)mag : (__int128)mag;
    return 1;
#endif
}

/* opts.int64 of the table at idx (none or nil: dflt): 1 for "string", 0 for "number" */
int luaebpf_opt_int64(lua_State *L, int idx, int dflt) {
    if (lua_isnoneornil(L, idx))
        return dflt;
    lua_getfield(L, idx, "int64");
    /* shown: "string\0x" reads "string\\0x", which is not "string" */
    const char *s = lua_type(L, -1) == LUA_TSTRING ? push_shown(L, -1) : NULL;
    int r = dflt;
    if (s && strcmp(s, "string") == 0)
        r = 1;
    else if (s && strcmp(s, "number") == 0)
        r = 0;
    else if (!lua_isnil(L, -1))
        luaL_error(L, "bad option 'int64': \"number\" or \"string\" expected, got %s%s%s",
                   s ? "\"" : "", s ? s : luaL_typename(L, -1), s ? "\"" : "");
    lua_pop(L, s ? 2 : 1);
    return r;
}

/* ----------------------------------------------------------------- encode */

typedef struct encode_ctx {
    lua_State *L;
    const luaebpf_codec *c;
    const char *what;             /* "key", "value" */
    int arg;                      /* the argument being encoded, for the message; 0: none */
    int none;                     /* the argument was not given (its slot may hold ours now) */
    int depth;
    const char *names[MAX_DEPTH + 1]; /* field name, or NULL for an array index */
    lua_Integer index[MAX_DEPTH + 1];
} encode_ctx;

static void push_path(encode_ctx *x) {
    lua_State *L = x->L;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, x->what);
    for (int i = 0; i < x->depth; i++) {
        if (x->names[i]) {
            luaL_addchar(&b, '.');
            luaL_addstring(&b, x->names[i]);
        } else {
            lua_pushfstring(L, "[%d]", (int)x->index[i]);
            luaL_addvalue(&b);
        }
    }
    luaL_pushresult(&b);
}

/* raises the message on top of the stack, as an argument error when there is one */
static void raise_at(encode_ctx *x) {
    if (x->arg > 0)
        luaL_argerror(x->L, x->arg, lua_tostring(x->L, -1));
    lua_error(x->L);
}

/* raises "<path>: <expected> expected, got <the number given, or its type>" */
static void bad_value(encode_ctx *x, int idx, const char *expected) {
    lua_State *L = x->L;
    push_path(x);
    const char *path = lua_tostring(L, -1);
    const char *got = x->none ? "no value"
                      : lua_type(L, idx) == LUA_TNUMBER ? luaL_tolstring(L, idx, NULL)
                                                        : luaL_typename(L, idx);
    lua_pushfstring(L, "%s: %s expected, got %s", path, expected, got);
    raise_at(x);
}

static const char *int_range(const luaebpf_node *n) {
    static const char *const u[] = {"u8 (0..255)", "u16 (0..65535)", "u32 (0..4294967295)",
                                    "u64 (" WIDE_FORM ")"};
    static const char *const s[] = {"i8 (-128..127)", "i16 (-32768..32767)",
                                    "i32 (-2147483648..2147483647)", "i64 (" WIDE_FORM ")"};
    static const char *const b[] = {"", "be16 (0..65535)", "be32 (0..4294967295)",
                                    "be64 (" WIDE_FORM ")"};
    int i = n->size == 1 ? 0 : n->size == 2 ? 1 : n->size == 4 ? 2 : 3;
    return n->kind == LUAEBPF_INT ? s[i] : n->kind == LUAEBPF_BE ? b[i] : u[i];
}

static uint64_t check_integer(encode_ctx *x, const luaebpf_node *n, int idx) {
    int bits = (int)n->size * 8;
    __int128 v = 0, half = (__int128)1 << (bits - 1);
    /* u64 takes negative integers too: their two's complement, the values >= 2^63 */
    __int128 lo = n->kind == LUAEBPF_INT || bits == 64 ? -half : 0;
    __int128 hi = n->kind == LUAEBPF_INT ? half - 1 : 2 * half - 1;
    if (!int_get(x->L, idx, bits == 64, &v) || v < lo || v > hi)
        bad_value(x, idx, int_range(n));
    return (uint64_t)v;
}

static void store_uint(unsigned char *p, uint64_t v, uint32_t size, int big_endian) {
    if (big_endian) {
        for (uint32_t i = 0; i < size; i++)
            p[i] = (unsigned char)(v >> (8 * (size - 1 - i)));
        return;
    }
    switch (size) { /* host order, unaligned-safe */
    case 1: { uint8_t t = (uint8_t)v; memcpy(p, &t, 1); break; }
    case 2: { uint16_t t = (uint16_t)v; memcpy(p, &t, 2); break; }
    case 4: { uint32_t t = (uint32_t)v; memcpy(p, &t, 4); break; }
    default: memcpy(p, &v, 8);
    }
}

static void encode_node(encode_ctx *x, uint32_t ni, int idx, unsigned char *p);

/* the names of struct n (its anonymous members' too) as keys of the table on top */
static void add_field_set(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n) {
    for (uint32_t i = 0; i < n->count; i++) {
        const luaebpf_node *f = &c->nodes[n->first + i];
        if (!f->name) {
            add_field_set(L, c, f);
            continue;
        }
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, f->name);
    }
}

static void add_field_names(luaL_Buffer *b, lua_State *L, const luaebpf_codec *c,
                            const luaebpf_node *n) {
    for (uint32_t i = 0; i < n->count; i++) {
        const luaebpf_node *f = &c->nodes[n->first + i];
        if (!f->name) {
            add_field_names(b, L, c, f);
            continue;
        }
        lua_pushfstring(L, " %s", f->name);
        luaL_addvalue(b);
    }
}

/* raises "<path>: unknown field 'k' (expected one of: a b c)"; the key is on top */
static void unknown_field(encode_ctx *x, const luaebpf_node *n) {
    lua_State *L = x->L;
    luaL_Buffer b;
    const char *k = lua_type(L, -1) == LUA_TSTRING ? push_shown(L, -1)
                                                   : luaL_tolstring(L, -1, NULL);
    push_path(x);
    const char *path = lua_tostring(L, -1);
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "%s: unknown field '%s' (expected one of:", path, k);
    luaL_addvalue(&b);
    add_field_names(&b, L, x->c, n);
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    raise_at(x);
}

/* the fields of struct n from the table at idx; anonymous members read the same
 * table. Returns how many fields the table gave. */
static size_t encode_fields(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    lua_State *L = x->L;
    size_t given = 0;
    for (uint32_t i = 0; i < n->count; i++) {
        const luaebpf_node *f = &x->c->nodes[n->first + i];
        if (!f->name) {
            given += encode_fields(x, f, idx, p + f->offset);
            continue;
        }
        if (x->depth >= MAX_DEPTH)
            luaL_error(L, "value nested deeper than %d levels", MAX_DEPTH);
        x->names[x->depth++] = f->name;
        lua_pushstring(L, f->name);
        lua_rawget(L, idx); /* raw: no __index of the caller's runs while encoding */
        if (!lua_isnil(L, -1)) { /* a missing field stays zero, as in C initializers */
            encode_node(x, n->first + i, lua_gettop(L), p + f->offset);
            given++;
        }
        lua_pop(L, 1);
        x->depth--;
    }
    return given;
}

/* an integer that fits bit_size bits, signed or not */
static uint64_t check_bits(encode_ctx *x, const luaebpf_node *n, int idx) {
    int bits = n->bit_size;
    __int128 v = 0, half = (__int128)1 << (bits - 1);
    __int128 lo = n->is_signed ? -half : 0, hi = n->is_signed ? half - 1 : 2 * half - 1;
    /* as for u64: an unsigned 64-bit field takes the two's complement of negatives */
    __int128 lo_taken = !n->is_signed && bits == 64 ? -half : lo;
    if (!int_get(x->L, idx, bits > 53, &v) || v < lo_taken || v > hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "%s %d-bit bitfield (%lld..%llu)",
                 n->is_signed ? "a signed" : "an unsigned", bits, (long long)lo,
                 (unsigned long long)hi);
        bad_value(x, idx, expected);
    }
    return (uint64_t)v;
}

static void encode_node(encode_ctx *x, uint32_t ni, int idx, unsigned char *p) {
    lua_State *L = x->L;
    const luaebpf_node *n = &x->c->nodes[ni];
    switch (n->kind) {
    case LUAEBPF_UINT:
    case LUAEBPF_INT:
    case LUAEBPF_BE:
        store_uint(p, check_integer(x, n, idx), n->size, n->kind == LUAEBPF_BE);
        return;
    case LUAEBPF_BOOL:
        if (!lua_isboolean(L, idx))
            bad_value(x, idx, "boolean");
        p[0] = (unsigned char)lua_toboolean(L, idx);
        return;
    case LUAEBPF_F32:
    case LUAEBPF_F64:
        if (lua_type(L, idx) != LUA_TNUMBER)
            bad_value(x, idx, n->kind == LUAEBPF_F32 ? "f32 (a number)" : "f64 (a number)");
        if (n->kind == LUAEBPF_F32) {
            float f = (float)lua_tonumber(L, idx);
            memcpy(p, &f, 4);
        } else {
            double d = (double)lua_tonumber(L, idx);
            memcpy(p, &d, 8);
        }
        return;
    case LUAEBPF_CHAR:
    case LUAEBPF_RAW: {
        size_t len;
        if (lua_type(L, idx) != LUA_TSTRING) {
            lua_pushfstring(L, n->kind == LUAEBPF_RAW ? "a string of %d bytes"
                            : "a string of at most %d bytes", (int)n->size);
            bad_value(x, idx, lua_tostring(L, -1));
        }
        const char *s = lua_tolstring(L, idx, &len);
        if (n->kind == LUAEBPF_RAW ? len != n->size : len > n->size) {
            lua_pushfstring(L, n->kind == LUAEBPF_RAW ? "a string of %d bytes"
                            : "a string of at most %d bytes", (int)n->size);
            lua_pushfstring(L, "a string of %s bytes", LUAEBPF_UTEXT(len));
            push_path(x);
            lua_pushfstring(L, "%s: %s expected, got %s", lua_tostring(L, -1),
                            lua_tostring(L, -3), lua_tostring(L, -2));
            raise_at(x);
        }
        memcpy(p, s, len); /* the rest stays zero: the buffer was cleared */
        return;
    }
    case LUAEBPF_ARRAY: {
        if (!lua_istable(L, idx)) {
            lua_pushfstring(L, "a table of %d elements", (int)n->count);
            bad_value(x, idx, lua_tostring(L, -1));
        }
        size_t len = lua_rawlen(L, idx);
        if (len != n->count) {
            push_path(x);
            lua_pushfstring(L, "%s: a table of %d elements expected, got %d elements",
                            lua_tostring(L, -1), (int)n->count, (int)len);
            raise_at(x);
        }
        luaL_checkstack(L, 4, "codec nesting");
        const luaebpf_node *e = &x->c->nodes[n->first];
        x->names[x->depth] = NULL;
        x->depth++;
        for (uint32_t i = 0; i < n->count; i++) {
            x->index[x->depth - 1] = (lua_Integer)i + 1;
            lua_rawgeti(L, idx, (lua_Integer)i + 1);
            encode_node(x, n->first, lua_gettop(L), p + (size_t)i * e->size);
            lua_pop(L, 1);
        }
        x->depth--;
        return;
    }
    case LUAEBPF_STRUCT: {
        if (!lua_istable(L, idx))
            bad_value(x, idx, "a table of fields");
        luaL_checkstack(L, 6, "codec nesting");
        size_t given = encode_fields(x, n, idx, p), keys = 0;
        /* Every key of the table must be a field. Field names are distinct (compile
         * and btf.c refuse twins), so the table has a key no field read exactly when
         * it has more keys than fields were given: linear, where testing each key
         * against each field was quadratic in wide structs. A key is compared as a
         * whole Lua string, so "pid\0junk" is not "pid". */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            keys++;
        }
        if (keys == given)
            return;
        lua_newtable(L); /* the error path: find the key */
        add_field_set(L, x->c, n);
        int set = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawget(L, set);
            int known = lua_type(L, -2) == LUA_TSTRING && !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!known)
                unknown_field(x, n);
        }
        return;
    }
    case LUAEBPF_ENUM: {
        int64_t v;
        if (lua_type(L, idx) == LUA_TSTRING) {
            const char *name = tostring_nonul(L, idx); /* NULL: no enumerator has a NUL */
            uint32_t i;
            for (i = 0; name && i < n->count; i++)
                if (strcmp(x->c->nodes[n->first + i].name, name) == 0)
                    break;
            if (!name || i == n->count) {
                const char *shown = push_shown(L, idx);
                push_path(x);
                lua_pushfstring(L, "%s: a name of %s or an integer expected, got \"%s\"",
                                lua_tostring(L, -1), n->type_name ? n->type_name : "the enum",
                                shown);
                raise_at(x);
            }
            v = x->c->nodes[n->first + i].value;
            int bits = 8 * (int)n->size; /* the enum's bytes must hold it as it reads back */
            int64_t lo = n->is_signed ? -((int64_t)1 << (bits - 1)) : 0;
            int64_t hi = n->is_signed ? ((int64_t)1 << (bits - 1)) - 1
                                      : (int64_t)(((uint64_t)1 << bits) - 1);
            if (bits < 64 && (v < lo || v > hi)) {
                char num[24];
                snprintf(num, sizeof num, "%lld", (long long)v);
                push_path(x);
                lua_pushfstring(L, "%s: %s = %s does not fit the %d bytes of %s",
                                lua_tostring(L, -1), name, num, (int)n->size,
                                n->type_name ? n->type_name : "the enum");
                raise_at(x);
            }
        } else {
            luaebpf_node as_int = *n;
            as_int.kind = n->is_signed ? LUAEBPF_INT : LUAEBPF_UINT;
            v = (int64_t)check_integer(x, &as_int, idx);
        }
        store_uint(p, (uint64_t)v, n->size, 0);
        return;
    }
    case LUAEBPF_BITFIELD: {
        uint64_t v = check_bits(x, n, idx);
        unsigned __int128 word = 0, mask;
        size_t nbytes = ((size_t)n->bit_offset + n->bit_size + 7) / 8;
        memcpy(&word, p, nbytes); /* little-endian host: bit i of the word is bit i here */
        mask = (((unsigned __int128)1 << n->bit_size) - 1) << n->bit_offset;
        word = (word & ~mask) | (((unsigned __int128)v << n->bit_offset) & mask);
        memcpy(p, &word, nbytes);
        return;
    }
    }
}

/* encode the Lua value at idx into buf (size of the codec, cleared first) */
void luaebpf_encode(lua_State *L, const luaebpf_codec *c, int idx, unsigned char *buf,
                    const char *what, int arg) {
#if LUAEBPF_HAS_INTEGERS
    /* the hot case, a 4- or 8-byte integer key: no context, no clearing */
    const luaebpf_node *r = c->nodes;
    if ((r->kind == LUAEBPF_UINT || r->kind == LUAEBPF_INT) && lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        if (r->size == 8) {
            memcpy(buf, &v, 8);
            return;
        }
        if (r->size == 4 && (r->kind == LUAEBPF_UINT ? (v >= 0 && v <= (lua_Integer)UINT32_MAX)
                                                     : (v >= INT32_MIN && v <= INT32_MAX))) {
            uint32_t u = (uint32_t)v;
            memcpy(buf, &u, 4);
            return;
        }
    }
#endif
    encode_ctx x;
    x.L = L;
    x.arg = arg;
    x.c = c;
    x.what = what;
    x.depth = 0;
    x.none = lua_isnone(L, idx);
    memset(buf, 0, c->nodes[0].size);
    encode_node(&x, 0, lua_absindex(L, idx), buf);
}

/* ----------------------------------------------------------------- decode */

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

static void decode_fields(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                          const unsigned char *p, const dpath *at);

static void decode_node(lua_State *L, const luaebpf_codec *c, uint32_t ni,
                        const unsigned char *p, const dpath *at) {
    const luaebpf_node *n = &c->nodes[ni];
    switch (n->kind) {
    case LUAEBPF_UINT:
    case LUAEBPF_BE:
        int_push(L, c, load_uint(p, n->size, n->kind == LUAEBPF_BE), 0, n, at);
        return;
    case LUAEBPF_INT: {
        uint64_t u = load_uint(p, n->size, 0);
        int shift = 64 - 8 * (int)n->size;
        int64_t v = (int64_t)(u << shift) >> shift; /* sign-extend */
        int_push(L, c, (uint64_t)v, 1, n, at);
        return;
    }
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
    case LUAEBPF_CHAR: {
        const unsigned char *nul = memchr(p, 0, n->size);
        lua_pushlstring(L, (const char *)p, nul ? (size_t)(nul - p) : n->size);
        return;
    }
    case LUAEBPF_RAW:
        lua_pushlstring(L, (const char *)p, n->size);
        return;
    case LUAEBPF_ARRAY: {
        const luaebpf_node *e = &c->nodes[n->first];
        luaL_checkstack(L, 4, "codec nesting");
        lua_createtable(L, (int)n->count, 0);
        for (uint32_t i = 0; i < n->count; i++) {
            dpath here = {at, NULL, i + 1, 0};
            decode_node(L, c, n->first, p + (size_t)i * e->size, &here);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    case LUAEBPF_STRUCT:
        luaL_checkstack(L, 4, "codec nesting");
        lua_createtable(L, 0, (int)n->count);
        decode_fields(L, c, n, p, at);
        return;
    case LUAEBPF_ENUM: {
        uint64_t u = load_uint(p, n->size, 0);
        int shift = 64 - 8 * (int)n->size;
        int64_t v = n->is_signed ? (int64_t)(u << shift) >> shift : (int64_t)u;
        for (uint32_t i = 0; i < n->count; i++) {
            if (c->nodes[n->first + i].value == v) {
                lua_pushstring(L, c->nodes[n->first + i].name);
                return;
            }
        }
        int_push(L, c, (uint64_t)v, n->is_signed, n, at); /* a value with no name */
        return;
    }
    case LUAEBPF_BITFIELD: {
        unsigned __int128 word = 0;
        memcpy(&word, p, ((size_t)n->bit_offset + n->bit_size + 7) / 8);
        uint64_t u = (uint64_t)(word >> n->bit_offset);
        if (n->bit_size < 64)
            u &= ((uint64_t)1 << n->bit_size) - 1;
        if (n->is_signed && n->bit_size < 64) {
            int shift = 64 - n->bit_size;
            u = (uint64_t)((int64_t)(u << shift) >> shift);
        }
        int_push(L, c, u, n->is_signed, n, at);
        return;
    }
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

/* decodes buf; root: where the bytes come from, for messages (NULL: nowhere said) */
static void decode_root(lua_State *L, const luaebpf_codec *c, const unsigned char *buf,
                        const dpath *root) {
    const luaebpf_node *r = c->nodes;
    if (r->kind == LUAEBPF_UINT && r->size == 8) { /* the hot case: a u64 counter */
        uint64_t v;
        memcpy(&v, buf, 8);
        int_push(L, c, v, 0, r, root);
        return;
    }
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

/* ------------------------------------------------------ module functions */

/* core.sizeof(spec): the byte size of a codec ("raw" has none of its own) */
static int core_sizeof(lua_State *L) {
    luaL_checkany(L, 1);
    luaebpf_codec *c = luaebpf_codec_compile(L, 1, "codec");
    if (c->nodes[0].kind == LUAEBPF_RAW && c->nodes[0].size == 0)
        return luaL_argerror(L, 1, "'raw' has no size of its own; use 'raw[N]'");
    lua_pushinteger(L, c->nodes[0].size);
    return 1;
}

/* core.encode(spec, value): the bytes, as a string */
static int core_encode(lua_State *L) {
    luaL_checkany(L, 1);
    luaL_checkany(L, 2);
    luaebpf_codec *c = luaebpf_codec_compile(L, 1, "codec");
    if (c->nodes[0].kind == LUAEBPF_RAW && c->nodes[0].size == 0)
        return luaL_argerror(L, 1, "'raw' has no size of its own; use 'raw[N]'");
    unsigned char *buf = lua_newuserdata(L, c->nodes[0].size); /* scratch, for the GC */
    luaebpf_encode(L, c, 2, buf, "value", 2);
    lua_pushlstring(L, (const char *)buf, c->nodes[0].size);
    return 1;
}

/* core.decode(spec, bytes [, opts]): the Lua value; the string must be the
 * codec's size. opts.int64 as for open. */
static int core_decode(lua_State *L) {
    static const char *const known[] = {"int64", NULL};
    size_t len;
    luaL_checkany(L, 1);
    const char *s = luaL_checklstring(L, 2, &len);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        luaebpf_check_options(L, 3, "decode options", known);
    }
    int int64_string = luaebpf_opt_int64(L, 3, 0);
    luaebpf_codec *c = luaebpf_codec_compile(L, 1, "codec");
    c->int64_string = int64_string;
    uint32_t size = c->nodes[0].kind == LUAEBPF_RAW && c->nodes[0].size == 0
                        ? (uint32_t)len : c->nodes[0].size;
    if (len != size)
        return luaL_error(L, "bad argument #2 to 'decode' (%s bytes expected for %s, got %s)",
                          LUAEBPF_UTEXT(size), c->desc, LUAEBPF_UTEXT(len));
    if (c->nodes[0].kind == LUAEBPF_RAW)
        c->nodes[0].size = size;
    luaebpf_decode(L, c, (const unsigned char *)s);
    return 1;
}

void luaebpf_codec_open(lua_State *L) {
    luaL_newmetatable(L, LUAEBPF_CODEC); /* module, mt */
    lua_pushcfunction(L, codec_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {
        {"sizeof", core_sizeof}, {"encode", core_encode}, {"decode", core_decode}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}

/* ----------------------------------------------------------------- layout */

static const char *kind_name(const luaebpf_node *n) {
    switch (n->kind) {
    case LUAEBPF_RAW: return "raw";
    case LUAEBPF_BOOL: return "bool";
    case LUAEBPF_F32: return "f32";
    case LUAEBPF_F64: return "f64";
    case LUAEBPF_CHAR: return "char";
    case LUAEBPF_ARRAY: return "array";
    case LUAEBPF_STRUCT: return n->is_union ? "union" : "struct";
    case LUAEBPF_ENUM: return "enum";
    case LUAEBPF_BITFIELD: return "bitfield";
    default:
        for (size_t i = 0; i < NSCALARS; i++)
            if (scalars[i].kind == n->kind && scalars[i].size == n->size)
                return scalars[i].name;
        return "?";
    }
}

/* { kind =, type =, size =, [offset =,] [name =,] fields/element/values/bits } */
static void push_node_layout(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                             uint32_t base, int depth) {
    luaL_checkstack(L, 6, "layout nesting");
    lua_createtable(L, 0, 8);
    lua_pushstring(L, kind_name(n));
    lua_setfield(L, -2, "kind");
    if (n->type_name) {
        lua_pushstring(L, n->type_name);
        lua_setfield(L, -2, "type");
    }
    lua_pushinteger(L, n->size);
    lua_setfield(L, -2, "size");
    if (depth > 0) {
        lua_pushinteger(L, base + n->offset);
        lua_setfield(L, -2, "offset");
    }
    if (n->name) {
        lua_pushstring(L, n->name);
        lua_setfield(L, -2, "name");
    }
    switch (n->kind) {
    case LUAEBPF_STRUCT:
        lua_createtable(L, (int)n->count, 0);
        for (uint32_t i = 0; i < n->count; i++) {
            push_node_layout(L, c, &c->nodes[n->first + i], base + (depth ? n->offset : 0),
                             depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "fields");
        break;
    case LUAEBPF_ARRAY:
        lua_pushinteger(L, n->count);
        lua_setfield(L, -2, "count");
        push_node_layout(L, c, &c->nodes[n->first], 0, 0);
        lua_setfield(L, -2, "element");
        break;
    case LUAEBPF_ENUM:
        lua_createtable(L, 0, (int)n->count);
        for (uint32_t i = 0; i < n->count; i++) {
            lua_pushinteger(L, (lua_Integer)c->nodes[n->first + i].value);
            lua_setfield(L, -2, c->nodes[n->first + i].name);
        }
        lua_setfield(L, -2, "values");
        break;
    case LUAEBPF_BITFIELD:
        lua_pushinteger(L, n->bit_offset);
        lua_setfield(L, -2, "bit_offset");
        lua_pushinteger(L, n->bit_size);
        lua_setfield(L, -2, "bits");
        lua_pushboolean(L, n->is_signed);
        lua_setfield(L, -2, "signed");
        break;
    default:
        break;
    }
}

void luaebpf_push_layout(lua_State *L, const luaebpf_codec *c) {
    push_node_layout(L, c, &c->nodes[0], 0, 0);
}

/* encode.c: Lua values -> bytes, by a compiled codec (layout.c). One small
 * function per kind of node, and the machinery their refusals share: the
 * path of the value being written ("value.flows[3].port"), kept in the
 * context as the walk goes, and messages that say what was expected and
 * what was given, raised as an argument error when the value is one. A value
 * that does not fit its type is refused, never truncated. The buffer is
 * cleared first, so padding and missing fields are zero, as in C. */
#include <stdio.h>
#include <string.h>
#include "luaebpf.h"

#define MAX_DEPTH LUAEBPF_CODEC_MAX_DEPTH

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

/* ------------------------------------------------------------- refusals */

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

/* raises "<path>: <expected> expected, got <given>", both pushed strings */
static void bad_size(encode_ctx *x, const char *expected, const char *given) {
    push_path(x);
    lua_pushfstring(x->L, "%s: %s expected, got %s", lua_tostring(x->L, -1), expected, given);
    raise_at(x);
}

/* ------------------------------------------------------------- integers */

/* a decimal string "-123" into *v; 0 when it is not one or goes past 64 bits */
static int parse_decimal(const char *s, __int128 *v) {
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
}

/* the integer at idx into *v; 0 when it is not one Lua can give exactly (the
 * rule is compat.h's). `wide`: the field goes beyond 2^53, so where numbers
 * stop there a decimal string is taken too */
static int int_get(lua_State *L, int idx, int wide, __int128 *v) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int64_t i;
        if (!luaebpf_number_exact(L, idx, &i))
            return 0;
        *v = i;
        return 1;
    }
    if (!LUAEBPF_INT64_STRINGS || !wide || lua_type(L, idx) != LUA_TSTRING)
        return 0;
    return parse_decimal(lua_tostring(L, idx), v);
}

static const char *int_range(const luaebpf_node *n) {
    static const char *const u[] = {"u8 (0..255)", "u16 (0..65535)", "u32 (0..4294967295)",
                                    "u64 (" LUAEBPF_INT64_FORM ")"};
    static const char *const s[] = {"i8 (-128..127)", "i16 (-32768..32767)",
                                    "i32 (-2147483648..2147483647)",
                                    "i64 (" LUAEBPF_INT64_FORM ")"};
    static const char *const b[] = {"", "be16 (0..65535)", "be32 (0..4294967295)",
                                    "be64 (" LUAEBPF_INT64_FORM ")"};
    int i = n->size == 1 ? 0 : n->size == 2 ? 1 : n->size == 4 ? 2 : 3;
    return n->kind == LUAEBPF_INT ? s[i] : n->kind == LUAEBPF_BE ? b[i] : u[i];
}

/* the integer at idx for a UINT, INT or BE node n; raises when it does not fit */
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

/* ---------------------------------------------------------------- nodes */

static void encode_node(encode_ctx *x, uint32_t ni, int idx, unsigned char *p);

static void encode_float(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    lua_State *L = x->L;
    if (lua_type(L, idx) != LUA_TNUMBER)
        bad_value(x, idx, n->kind == LUAEBPF_F32 ? "f32 (a number)" : "f64 (a number)");
    if (n->kind == LUAEBPF_F32) {
        float f = (float)lua_tonumber(L, idx);
        memcpy(p, &f, 4);
    } else {
        double d = (double)lua_tonumber(L, idx);
        memcpy(p, &d, 8);
    }
}

/* char[N] takes a string of at most N bytes (the rest stays zero); raw[N] exactly N */
static void encode_string(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    lua_State *L = x->L;
    const char *form = n->kind == LUAEBPF_RAW ? "a string of %d bytes"
                                              : "a string of at most %d bytes";
    if (lua_type(L, idx) != LUA_TSTRING)
        bad_value(x, idx, lua_pushfstring(L, form, (int)n->size));
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (n->kind == LUAEBPF_RAW ? len != n->size : len > n->size) {
        const char *expected = lua_pushfstring(L, form, (int)n->size);
        bad_size(x, expected, lua_pushfstring(L, "a string of %s bytes", LUAEBPF_UTEXT(len)));
    }
    memcpy(p, s, len);
}

static void encode_array(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    lua_State *L = x->L;
    if (!lua_istable(L, idx))
        bad_value(x, idx, lua_pushfstring(L, "a table of %d elements", (int)n->count));
    size_t len = lua_rawlen(L, idx);
    if (len != n->count) {
        const char *expected = lua_pushfstring(L, "a table of %d elements", (int)n->count);
        bad_size(x, expected, lua_pushfstring(L, "%d elements", (int)len));
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
}

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
    const char *k = lua_type(L, -1) == LUA_TSTRING ? luaebpf_push_shown(L, -1)
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

/* Every key of the table at idx must be a field of n. Field names are
 * distinct (compile and btf.c refuse twins), so the table has a key no field
 * read exactly when it has more keys than fields were given: linear, where
 * testing each key against each field was quadratic in wide structs. A key
 * is compared as a whole Lua string, so "pid\0junk" is not "pid". */
static void refuse_unknown_keys(encode_ctx *x, const luaebpf_node *n, int idx, size_t given) {
    lua_State *L = x->L;
    size_t keys = 0;
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
}

static void encode_struct(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    if (!lua_istable(x->L, idx))
        bad_value(x, idx, "a table of fields");
    luaL_checkstack(x->L, 6, "codec nesting");
    refuse_unknown_keys(x, n, idx, encode_fields(x, n, idx, p));
}

/* the value of the enumerator of n named by the string at idx; raises when
 * there is none, or when the enum's bytes cannot hold it as it reads back */
static int64_t enum_value_named(encode_ctx *x, const luaebpf_node *n, int idx) {
    lua_State *L = x->L;
    const char *enum_name = n->type_name ? n->type_name : "the enum";
    const char *name = luaebpf_tostring_nonul(L, idx); /* NULL: no enumerator has a NUL */
    uint32_t i;
    for (i = 0; name && i < n->count; i++)
        if (strcmp(x->c->nodes[n->first + i].name, name) == 0)
            break;
    if (!name || i == n->count) {
        const char *shown = luaebpf_push_shown(L, idx);
        push_path(x);
        lua_pushfstring(L, "%s: a name of %s or an integer expected, got \"%s\"",
                        lua_tostring(L, -1), enum_name, shown);
        raise_at(x);
    }
    int64_t v = x->c->nodes[n->first + i].value;
    int bits = 8 * (int)n->size;
    int64_t lo = n->is_signed ? -((int64_t)1 << (bits - 1)) : 0;
    int64_t hi = n->is_signed ? ((int64_t)1 << (bits - 1)) - 1
                              : (int64_t)(((uint64_t)1 << bits) - 1);
    if (bits < 64 && (v < lo || v > hi)) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)v);
        push_path(x);
        lua_pushfstring(L, "%s: %s = %s does not fit the %d bytes of %s", lua_tostring(L, -1),
                        name, num, (int)n->size, enum_name);
        raise_at(x);
    }
    return v;
}

/* an enumerator's name, or an integer of the enum's size and sign */
static void encode_enum(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    int64_t v;
    if (lua_type(x->L, idx) == LUA_TSTRING) {
        v = enum_value_named(x, n, idx);
    } else {
        luaebpf_node as_int = *n;
        as_int.kind = n->is_signed ? LUAEBPF_INT : LUAEBPF_UINT;
        v = (int64_t)check_integer(x, &as_int, idx);
    }
    store_uint(p, (uint64_t)v, n->size, 0);
}

/* writes only its bits: the bytes around them may hold other bitfields */
static void encode_bitfield(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    uint64_t v = check_bits(x, n, idx);
    unsigned __int128 word = 0, mask;
    size_t nbytes = ((size_t)n->bit_offset + n->bit_size + 7) / 8;
    memcpy(&word, p, nbytes); /* little-endian host: bit i of the word is bit i here */
    mask = (((unsigned __int128)1 << n->bit_size) - 1) << n->bit_offset;
    word = (word & ~mask) | (((unsigned __int128)v << n->bit_offset) & mask);
    memcpy(p, &word, nbytes);
}

/* text for the decoders that write it (addresses, syscall and errno names), an
 * integer of the node's width for those that take numbers */
static void encode_decoded(encode_ctx *x, const luaebpf_node *n, int idx, unsigned char *p) {
    lua_State *L = x->L;
    int t = lua_type(L, idx);
    int names = n->decoder <= LUAEBPF_DEC_CIDR || n->decoder == LUAEBPF_DEC_SYSCALL ||
                n->decoder == LUAEBPF_DEC_ERRNO; /* they take text */
    __int128 dec;
    if (luaebpf_decoded_takes_number(n) &&
        (t == LUA_TNUMBER || (t == LUA_TSTRING && !names && LUAEBPF_INT64_STRINGS &&
                              n->size == 8 && parse_decimal(lua_tostring(L, idx), &dec)))) {
        luaebpf_node as_int = *n; /* its width, unsigned but for errno */
        as_int.kind = n->decoder == LUAEBPF_DEC_ERRNO ? LUAEBPF_INT : LUAEBPF_UINT;
        store_uint(p, check_integer(x, &as_int, idx), n->size, 0);
        return;
    }
    if (t != LUA_TSTRING)
        bad_value(x, idx, luaebpf_decoded_expected(n));
    const char *s = names ? luaebpf_tostring_nonul(L, idx) : NULL;
    const char *expected = s ? luaebpf_decoded_parse(n, s, p) : luaebpf_decoded_expected(n);
    if (expected) {
        const char *shown = luaebpf_push_shown(L, idx);
        push_path(x);
        lua_pushfstring(L, "%s: %s expected, got \"%s\"", lua_tostring(L, -1), expected, shown);
        raise_at(x);
    }
}

static void encode_node(encode_ctx *x, uint32_t ni, int idx, unsigned char *p) {
    const luaebpf_node *n = &x->c->nodes[ni];
    switch (n->kind) {
    case LUAEBPF_UINT:
    case LUAEBPF_INT:
    case LUAEBPF_BE:
        store_uint(p, check_integer(x, n, idx), n->size, n->kind == LUAEBPF_BE);
        return;
    case LUAEBPF_BOOL:
        if (!lua_isboolean(x->L, idx))
            bad_value(x, idx, "boolean");
        p[0] = (unsigned char)lua_toboolean(x->L, idx);
        return;
    case LUAEBPF_F32:
    case LUAEBPF_F64:
        encode_float(x, n, idx, p);
        return;
    case LUAEBPF_CHAR:
    case LUAEBPF_RAW:
        encode_string(x, n, idx, p);
        return;
    case LUAEBPF_ARRAY:
        encode_array(x, n, idx, p);
        return;
    case LUAEBPF_STRUCT:
        encode_struct(x, n, idx, p);
        return;
    case LUAEBPF_ENUM:
        encode_enum(x, n, idx, p);
        return;
    case LUAEBPF_BITFIELD:
        encode_bitfield(x, n, idx, p);
        return;
    case LUAEBPF_DECODED:
        encode_decoded(x, n, idx, p);
        return;
    }
}

/* encode the Lua value at idx into buf (size of the codec, cleared first) */
void luaebpf_encode(lua_State *L, const luaebpf_codec *c, int idx, unsigned char *buf,
                    const char *what, int arg) {
    /* the hot case, a 4- or 8-byte integer key: no context, no clearing */
    if (luaebpf_encode_fast(L, c, idx, buf))
        return;
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

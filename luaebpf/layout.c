/* layout.c: the compiled codec, whatever built it (a spec in codec.c, BTF in
 * btf.c). A "luaebpf.Codec" userdata owns a flat array of nodes from its
 * first allocation, so a raise halfway through building one leaks nothing.
 * Here too is everything that only reads nodes to name them: the scalar
 * names, the short description messages quote (c->desc) and the table
 * m:layout() returns. It calls no other file: the encoder, the decoder and
 * the spec compiler all stand on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaebpf.h"

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

/* makes n the scalar called name ("u32", "be16", "bool"...); 0 when none is */
int luaebpf_scalar_set(luaebpf_node *n, const char *name) {
    for (size_t i = 0; i < NSCALARS; i++) {
        if (strcmp(name, scalars[i].name) == 0) {
            n->kind = scalars[i].kind;
            n->size = n->align = scalars[i].size;
            return 1;
        }
    }
    return 0;
}

/* The decoders (decoders.c reads and writes their bytes). A name without a
 * width suffix is flex where it has two widths: as a whole key or value it
 * takes the map's size, over a BTF field the field's (see codec_decorate);
 * written in a struct or array it is its first width. Aligned as the C type
 * that usually holds them (__be32, struct in6_addr, __u8[6], __u64...). */
static const struct {
    const char *name;
    uint8_t decoder, size, align, flex;
} decoders[] = {
    {"ipv4", LUAEBPF_DEC_IPV4, 4, 4, 0},          {"ipv4:host", LUAEBPF_DEC_IPV4_HOST, 4, 4, 0},
    {"ipv6", LUAEBPF_DEC_IPV6, 16, 4, 0},         {"mac", LUAEBPF_DEC_MAC, 6, 1, 0},
    {"cidr", LUAEBPF_DEC_CIDR, 8, 4, 1},          {"cidr:ipv4", LUAEBPF_DEC_CIDR, 8, 4, 0},
    {"cidr:ipv6", LUAEBPF_DEC_CIDR, 20, 4, 0},    {"ksym", LUAEBPF_DEC_KSYM, 8, 8, 0},
    {"syscall", LUAEBPF_DEC_SYSCALL, 4, 4, 1},    {"syscall:u32", LUAEBPF_DEC_SYSCALL, 4, 4, 0},
    {"syscall:u64", LUAEBPF_DEC_SYSCALL, 8, 8, 0}, {"errno", LUAEBPF_DEC_ERRNO, 4, 4, 1},
    {"errno:i32", LUAEBPF_DEC_ERRNO, 4, 4, 0},    {"errno:i64", LUAEBPF_DEC_ERRNO, 8, 8, 0},
    {"ifindex", LUAEBPF_DEC_IFINDEX, 4, 4, 0},    {"cgroup", LUAEBPF_DEC_CGROUP, 8, 8, 0},
    {"boot_ns", LUAEBPF_DEC_BOOT_NS, 8, 8, 0},
};
#define NDECODERS (sizeof decoders / sizeof decoders[0])
const char luaebpf_decoder_names[] =
    "ipv4, ipv4:host, ipv6, mac, cidr (cidr:ipv4, cidr:ipv6), ksym, syscall (syscall:u32, "
    "syscall:u64), errno (errno:i32, errno:i64), ifindex, cgroup, boot_ns";

int luaebpf_decoder_set(luaebpf_node *n, const char *name) {
    for (size_t i = 0; i < NDECODERS; i++) {
        if (strcmp(name, decoders[i].name) == 0) {
            n->kind = LUAEBPF_DECODED;
            n->decoder = decoders[i].decoder;
            n->size = decoders[i].size;
            n->align = decoders[i].align;
            n->flex = decoders[i].flex;
            return 1;
        }
    }
    return 0;
}

int luaebpf_decoder_resize(luaebpf_node *n, uint32_t size) {
    if (n->kind != LUAEBPF_DECODED || !n->flex)
        return 0;
    for (size_t i = 0; i < NDECODERS; i++) {
        if (decoders[i].decoder == n->decoder && decoders[i].size == size) {
            n->size = size;
            n->align = decoders[i].align;
            return 1;
        }
    }
    return 0;
}

/* what a node is, as m:layout() and messages say it: "u32", "struct", "enum" */
const char *luaebpf_kind_name(const luaebpf_node *n) {
    switch (n->kind) {
    case LUAEBPF_RAW: return "raw";
    case LUAEBPF_CHAR: return "char";
    case LUAEBPF_ARRAY: return "array";
    case LUAEBPF_STRUCT: return n->is_union ? "union" : "struct";
    case LUAEBPF_ENUM: return "enum";
    case LUAEBPF_BITFIELD: return "bitfield";
    case LUAEBPF_DECODED: /* its family's name, whatever the width: "cidr", "syscall" */
        for (size_t i = 0; i < NDECODERS; i++)
            if (decoders[i].decoder == n->decoder)
                return decoders[i].name;
        return "?";
    default:
        for (size_t i = 0; i < NSCALARS; i++)
            if (scalars[i].kind == n->kind && scalars[i].size == n->size)
                return scalars[i].name;
        return "?";
    }
}

/* ---------------------------------------------------------- the userdata */

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

luaebpf_codec *luaebpf_codec_new(lua_State *L) {
    luaebpf_codec *c = luaebpf_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUAEBPF_CODEC);
    return c;
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

/* a copy of c with nodes of its own, pushed: decorating it leaves c as it was */
luaebpf_codec *luaebpf_codec_clone(lua_State *L, const luaebpf_codec *c) {
    luaebpf_codec *d = luaebpf_codec_new(L);
    luaebpf_codec_reserve(L, d, c->n);
    for (uint32_t i = 0; i < c->n; i++) {
        luaebpf_node *n = &d->nodes[i];
        *n = c->nodes[i];
        n->name = n->type_name = NULL; /* until copied: the GC frees what is set */
        if ((c->nodes[i].name && !(n->name = strdup(c->nodes[i].name))) ||
            (c->nodes[i].type_name && !(n->type_name = strdup(c->nodes[i].type_name))))
            luaL_error(L, "out of memory copying a codec");
    }
    d->from_btf = c->from_btf;
    d->has_lock = c->has_lock;
    d->int64_string = c->int64_string;
    memcpy(d->desc, c->desc, sizeof d->desc);
    return d;
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
    default: /* a scalar; a bitfield is never a root */
        snprintf(c->desc, sizeof c->desc, "%s", luaebpf_kind_name(r));
    }
}

/* registers the Codec metatable: its only method is __gc */
void luaebpf_layout_open(lua_State *L) {
    luaL_newmetatable(L, LUAEBPF_CODEC); /* mt */
    lua_pushcfunction(L, codec_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

/* ----------------------------------------------------------- m:layout() */

static void push_node_layout(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                             uint32_t base, int depth);

/* what only some kinds have: fields, element, values, bits */
static void set_kind_layout(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                            uint32_t base, int depth) {
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

/* { kind =, type =, size =, [offset =,] [name =,] fields/element/values/bits } */
static void push_node_layout(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n,
                             uint32_t base, int depth) {
    luaL_checkstack(L, 6, "layout nesting");
    lua_createtable(L, 0, 8);
    lua_pushstring(L, luaebpf_kind_name(n));
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
    set_kind_layout(L, c, n, base, depth);
}

void luaebpf_push_layout(lua_State *L, const luaebpf_codec *c) {
    push_node_layout(L, c, &c->nodes[0], 0, 0);
}

/* ------------------------------------------------ names with NUL bytes */

/* pushes the string at idx with each NUL byte written as \0: messages quote
 * names through %s, which would stop at the first NUL and hide it */
const char *luaebpf_push_shown(lua_State *L, int idx) {
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
const char *luaebpf_tostring_nonul(lua_State *L, int idx) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return s && strlen(s) == len ? s : NULL;
}

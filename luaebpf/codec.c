/* codec.c: codec specs -> compiled codecs, and the module functions that take
 * a spec (core.sizeof, core.encode, core.decode). A spec ("u32", "char[16]",
 * { "u32", 4 }, { { "pid", "u32" }, ..., packed = true }) compiles into the
 * node array of a "luaebpf.Codec" userdata (layout.c), which owns it from the
 * first allocation, so a spec error raised halfway through compiling leaks
 * nothing. Structs follow C's natural alignment. Writing and reading values
 * by a codec are encode.c's and decode.c's. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaebpf.h"

#define MAX_DEPTH LUAEBPF_CODEC_MAX_DEPTH
#define MAX_SIZE (1u << 30) /* far above any map's key or value size */

/* ---------------------------------------------------------------- compile */

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

static void check_count(lua_State *L, uint32_t count, uint32_t elem_size, const char *spec) {
    if (count == 0)
        luaL_error(L, "bad codec '%s': an array needs at least one element", spec);
    if (elem_size && count > MAX_SIZE / elem_size)
        luaL_error(L, "bad codec '%s': larger than %d bytes", spec, (int)MAX_SIZE);
}

/* "T[N]" for a scalar T: node slot becomes an array of N of them; 0 when T is none */
static int compile_scalar_array(lua_State *L, luaebpf_codec *c, uint32_t slot, const char *s,
                                const char *base, uint32_t count) {
    luaebpf_node e = {0};
    if (!luaebpf_scalar_set(&e, base) && !luaebpf_decoder_set(&e, base))
        return 0;
    e.flex = 0; /* an element has one width: the one its name says */
    check_count(L, count, e.size, s);
    uint32_t child = luaebpf_codec_reserve(L, c, 1);
    c->nodes[child] = e;
    luaebpf_node *n = &c->nodes[slot]; /* after reserve, which may move the array */
    n->kind = LUAEBPF_ARRAY;
    n->first = child;
    n->count = count;
    n->size = count * e.size;
    n->align = e.size;
    return 1;
}

static void compile_string(lua_State *L, luaebpf_codec *c, uint32_t slot, const char *s) {
    luaebpf_node *n = &c->nodes[slot];
    if (luaebpf_scalar_set(n, s))
        return;
    if (luaebpf_decoder_set(n, s)) {
        if (slot != 0) /* in a struct or array: the width its name says */
            n->flex = 0;
        return;
    }
    if (strcmp(s, "raw") == 0) { /* the map's whole key or value: sized when attached */
        if (slot != 0)
            luaL_error(L, "bad codec 'raw': inside a struct or array, give a size: 'raw[N]'");
        n->kind = LUAEBPF_RAW;
        n->align = 1;
        return;
    }
    char base[24];
    uint32_t count;
    int r = parse_count(s, base, sizeof base, &count);
    if (r == 1 && (strcmp(base, "char") == 0 || strcmp(base, "raw") == 0)) {
        check_count(L, count, 1, s);
        n->kind = base[0] == 'c' ? LUAEBPF_CHAR : LUAEBPF_RAW;
        n->size = count;
        n->align = 1;
        return;
    }
    if (r == 1 && compile_scalar_array(L, c, slot, s, base, count))
        return;
    luaL_error(L, "unknown codec '%s' (expected raw, u8..u64, i8..i64, be16/be32/be64, bool, "
               "f32, f64, char[N], a type with [N], an array { type, N }, a struct "
               "{ { name, type }, ... } or a decoder: %s)", s, luaebpf_decoder_names);
}

/* a struct spec's keys: only [1..nfields] and `packed`; returns packed */
static int check_struct_keys(lua_State *L, int idx, uint32_t nfields) {
    lua_Integer at;
    int packed = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? luaebpf_tostring_nonul(L, -2) : NULL;
        if (k && strcmp(k, "packed") == 0) {
            if (!lua_isboolean(L, -1))
                luaL_error(L, "bad struct codec: 'packed' must be a boolean, got %s",
                           luaL_typename(L, -1));
            packed = lua_toboolean(L, -1);
        } else if (!luaebpf_tointeger_in(L, -2, 1, nfields, &at)) {
            lua_pop(L, 1);
            luaL_error(L, "bad struct codec: unknown entry '%s' (expected fields "
                       "{ name, type } at 1..n and 'packed')",
                       lua_type(L, -1) == LUA_TSTRING ? luaebpf_push_shown(L, -1)
                                                      : luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
    }
    return packed;
}

/* field i, { name, type } at idx[i + 1], into node first + i, its offset not set yet */
static void compile_field(lua_State *L, luaebpf_codec *c, uint32_t first, uint32_t i, int idx,
                          int depth) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1); /* field spec */
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
        luaL_error(L, "bad struct codec: field %d must be { name, type }, got %s", (int)i + 1,
                   luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1); /* field spec, name */
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        luaL_error(L, "bad struct codec: field %d needs a name string, got %s", (int)i + 1,
                   luaL_typename(L, -1));
    const char *fname = luaebpf_tostring_nonul(L, -1);
    if (!fname)
        luaL_error(L, "bad struct codec: field %d name \"%s\" holds a NUL byte", (int)i + 1,
                   luaebpf_push_shown(L, -1));
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
}

static void compile_struct(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth) {
    uint32_t nfields = (uint32_t)lua_rawlen(L, idx);
    int packed = check_struct_keys(L, idx, nfields);
    if (nfields == 0)
        luaL_error(L, "bad struct codec: no fields (expected { { name, type }, ... })");
    uint32_t first = luaebpf_codec_reserve(L, c, nfields);
    uint32_t offset = 0, align = 1;
    for (uint32_t i = 0; i < nfields; i++) {
        compile_field(L, c, first, i, idx, depth);
        luaebpf_node *f = &c->nodes[first + i];
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

/* { type, N } */
static void compile_array(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth) {
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

static void compile_node(lua_State *L, luaebpf_codec *c, uint32_t slot, int idx, int depth) {
    if (depth > MAX_DEPTH)
        luaL_error(L, "bad codec: nested deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 8, "codec nesting");
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = luaebpf_tostring_nonul(L, idx);
        if (!s)
            luaL_error(L, "bad codec \"%s\": a NUL byte in a codec name",
                       luaebpf_push_shown(L, idx));
        compile_string(L, c, slot, s);
        return;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "bad codec: a name such as \"u32\" or a table expected, got %s",
                   luaL_typename(L, idx));
    lua_rawgeti(L, idx, 2);
    int is_array = lua_type(L, -1) == LUA_TNUMBER;
    lua_pop(L, 1);
    if (is_array)
        compile_array(L, c, slot, idx, depth);
    else
        compile_struct(L, c, slot, idx, depth);
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

/* opts.int64 of the table at idx (none or nil: dflt): 1 for "string", 0 for "number" */
int luaebpf_opt_int64(lua_State *L, int idx, int dflt) {
    static const char *const names[] = {"number", "string", NULL};
    return luaebpf_opt_name(L, idx, "int64", names, dflt);
}

/* ------------------------------------------------------------ decorate */
/* m:codec{ decode = { ... } } marks nodes of built codecs (mostly BTF ones) as
 * decoders. A path "a.b" names fields from the root down; an array on the way
 * stands for its element (every element is decorated), anonymous members'
 * fields are their parent's. Node 0 is a root, never a field: 0 is "none". */

/* field name[0..len) of struct node si (its anonymous members' too), or 0 */
static uint32_t find_field(const luaebpf_codec *c, uint32_t si, const char *name, size_t len) {
    const luaebpf_node *s = &c->nodes[si];
    for (uint32_t i = 0; i < s->count; i++) {
        uint32_t fi = s->first + i;
        const luaebpf_node *f = &c->nodes[fi];
        if (!f->name) {
            uint32_t r = f->kind == LUAEBPF_STRUCT ? find_field(c, fi, name, len) : 0;
            if (r)
                return r;
        } else if (strlen(f->name) == len && memcmp(f->name, name, len) == 0) {
            return fi;
        }
    }
    return 0;
}

/* the node at path in c, or 0; *at: the node whose fields were searched last */
static uint32_t find_path(const luaebpf_codec *c, const char *path, uint32_t *at) {
    uint32_t ni = 0;
    for (const char *seg = path;;) {
        while (c->nodes[ni].kind == LUAEBPF_ARRAY)
            ni = c->nodes[ni].first;
        *at = ni;
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (c->nodes[ni].kind != LUAEBPF_STRUCT || len == 0)
            return 0;
        ni = find_field(c, ni, seg, len);
        if (!ni || !dot)
            return ni;
        seg = dot + 1;
    }
}

/* the node of c that decoder d marks for the field ti: ti itself when its size
 * is one of d's widths, else its array's element when that one is; else 0 */
static uint32_t fitting(const luaebpf_codec *c, uint32_t ti, const luaebpf_node *d) {
    for (;;) {
        const luaebpf_node *t = &c->nodes[ti];
        luaebpf_node probe = *d;
        if (t->kind == LUAEBPF_BITFIELD)
            return 0;
        if (t->size == d->size || luaebpf_decoder_resize(&probe, t->size))
            return ti;
        if (t->kind != LUAEBPF_ARRAY)
            return 0;
        ti = t->first;
    }
}

/* appends " a, b, c" (the fields of node si) or " none (a u64)" */
static void add_fields(luaL_Buffer *b, lua_State *L, const luaebpf_codec *c, uint32_t si,
                       int *n) {
    const luaebpf_node *s = &c->nodes[si];
    if (s->kind != LUAEBPF_STRUCT) {
        lua_pushfstring(L, " none (%s %s)", si ? "a field of type" : "a", luaebpf_kind_name(s));
        luaL_addvalue(b);
        return;
    }
    for (uint32_t i = 0; i < s->count; i++) {
        const luaebpf_node *f = &c->nodes[s->first + i];
        if (!f->name) {
            add_fields(b, L, c, s->first + i, n);
            continue;
        }
        lua_pushfstring(L, "%s %s", (*n)++ ? "," : "", f->name);
        luaL_addvalue(b);
    }
}

/* raises "decode: no field 'x.y' in the key (fields: ...) or the value (fields: ...)" */
static void no_such_path(lua_State *L, luaebpf_codec *const sides[2], const char *path) {
    static const char *const side_name[] = {"key", "value"};
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "bad option 'decode': no field '%s' in", path);
    luaL_addvalue(&b);
    for (int i = 0, said = 0; i < 2; i++) {
        if (!sides[i])
            continue;
        uint32_t at;
        int n = 0;
        find_path(sides[i], path, &at);
        lua_pushfstring(L, "%s the %s (fields%s:", said++ ? " or" : "", side_name[i],
                        at ? " there" : "");
        luaL_addvalue(&b);
        add_fields(&b, L, sides[i], at, &n);
        luaL_addchar(&b, ')');
    }
    luaL_pushresult(&b);
    lua_error(L);
}

/* checks the entry (key at -2, value at -1); with apply, marks its nodes */
static void decorate_entry(lua_State *L, luaebpf_codec *const sides[2], int apply) {
    static const char *const side_name[] = {"key", "value"};
    const char *path = lua_type(L, -2) == LUA_TSTRING ? luaebpf_tostring_nonul(L, -2) : NULL;
    if (!path)
        luaL_error(L, "bad option 'decode': field paths such as \"saddr\" or \"a.b\" "
                   "expected as keys, got %s", lua_type(L, -2) == LUA_TSTRING
                   ? lua_pushfstring(L, "\"%s\"", luaebpf_push_shown(L, -2))
                   : luaL_typename(L, -2));
    luaebpf_node d = {0};
    const char *name = lua_type(L, -1) == LUA_TSTRING ? luaebpf_tostring_nonul(L, -1) : NULL;
    if (!name || !luaebpf_decoder_set(&d, name))
        luaL_error(L, "bad option 'decode': field '%s': a decoder (%s) expected, got %s", path,
                   luaebpf_decoder_names, lua_type(L, -1) == LUA_TSTRING
                   ? lua_pushfstring(L, "\"%s\"", luaebpf_push_shown(L, -1))
                   : luaL_typename(L, -1));
    int found = 0;
    for (int i = 0; i < 2; i++) {
        uint32_t at, ti = sides[i] ? find_path(sides[i], path, &at) : 0;
        if (!ti)
            continue;
        found = 1;
        uint32_t mi = fitting(sides[i], ti, &d);
        const luaebpf_node *t = &sides[i]->nodes[ti];
        if (!mi)
            luaL_error(L, "bad option 'decode': field '%s' of the %s is %s (%d bytes), but %s "
                       "takes %s", path, side_name[i], luaebpf_kind_name(t), (int)t->size, name,
                       d.decoder == LUAEBPF_DEC_CIDR ? "8 or 20 bytes (an LPM trie key)"
                       : d.flex ? "4 or 8 bytes"
                       : lua_pushfstring(L, "%d bytes", (int)d.size));
        if (apply) {
            luaebpf_node *m = &sides[i]->nodes[mi];
            m->kind = LUAEBPF_DECODED; /* its size, name and offset stay */
            m->decoder = d.decoder;
            m->flex = 0;
        }
    }
    if (!found)
        no_such_path(L, sides, path);
}

void luaebpf_codec_decorate(lua_State *L, luaebpf_codec *kc, luaebpf_codec *vc, int idx) {
    luaebpf_codec *const sides[2] = {kc, vc};
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx))
        luaL_error(L, "bad option 'decode': a table { [\"field.path\"] = \"decoder\" } "
                   "expected, got %s", luaL_typename(L, idx));
    luaL_checkstack(L, 8, "decode");
    for (int apply = 0; apply <= 1; apply++) { /* all checked before any is marked */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            decorate_entry(L, sides, apply);
            lua_pop(L, 1);
        }
    }
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
    if (len <= UINT32_MAX) /* a flex decoder ("cidr", "syscall") takes the length given */
        luaebpf_decoder_resize(&c->nodes[0], (uint32_t)len);
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
    luaebpf_layout_open(L); /* the Codec metatable */
    static const luaL_Reg funcs[] = {
        {"sizeof", core_sizeof}, {"encode", core_encode}, {"decode", core_decode}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}


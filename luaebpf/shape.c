/* shape.c: the shape of what a map holds, apart from any handle. Owns the
 * sizes and the per-CPU stride (so the number of possible CPUs), the key and
 * value codecs with their size checks, the codecs a map's BTF gives (loaded on
 * first use, by btf id alone), the spin-lock flag they carry, and encoding and
 * decoding of a whole key or value, per-CPU arrays included.
 *
 * A shape lives inside its owner (a Map; later, a ring buffer's records).
 * Codecs are userdata, kept alive by the owner's user value table: slot 1
 * holds the key codec, slot 2 the value codec, and codecs retired by a change
 * follow, since a call running below may still be decoding with one. Every
 * function that attaches a codec takes the owner's stack index for that. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

#define UV_KEY_CODEC 1 /* owner's user value table slots */
#define UV_VALUE_CODEC 2

int luaebpf_ncpus(void) {
    static int ncpus = 0;
    if (ncpus <= 0)
        ncpus = libbpf_num_possible_cpus(); /* possible, not online: the per-CPU layout */
    return ncpus;
}

int luaebpf_shape_init(luaebpf_shape *s, uint32_t type, uint32_t key_size, uint32_t value_size) {
    s->type = type;
    s->key_size = key_size;
    s->value_size = value_size;
    s->percpu = luaebpf_type_is_percpu(type);
    s->ncpus = luaebpf_ncpus();
    if (!s->percpu) {
        s->value_stride = s->value_bytes = value_size;
        return 0;
    }
    if (s->ncpus <= 0)
        return -s->ncpus > 0 ? -s->ncpus : EINVAL;
    /* the kernel lays per-CPU values out 8-byte aligned, one after another */
    s->value_stride = ((size_t)value_size + 7) / 8 * 8;
    s->value_bytes = s->value_stride * (size_t)s->ncpus;
    return 0;
}

int luaebpf_is_btf_spec(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "btf") == 0;
}

const char *luaebpf_shape_desc(const luaebpf_shape *s, int is_key) {
    if (s->btf_pending & (is_key ? 1 : 2))
        return "btf";
    const luaebpf_codec *c = is_key ? s->kc : s->vc;
    return c ? c->desc : "none";
}

/* ---------------------------------------------------------------- codecs */

/* raises unless codec c fits the key (is_key) or value; sizes a plain "raw" */
static void check_codec_fits(lua_State *L, const luaebpf_shape *s, luaebpf_codec *c,
                             int is_key) {
    uint32_t want = is_key ? s->key_size : s->value_size;
    const char *what = is_key ? "key" : "value";
    if (is_key && s->key_size == 0)
        luaL_error(L, "map '%s' (%s) has no keys: a key codec cannot be set", s->name,
                   luaebpf_type_name(s->type) ? luaebpf_type_name(s->type) : "?");
    if (c->nodes[0].kind == LUAEBPF_RAW && c->nodes[0].size == 0)
        c->nodes[0].size = want; /* plain "raw": the map's own size */
    if (c->nodes[0].size != want) /* a flex decoder ("cidr", "syscall") takes it if it can */
        luaebpf_decoder_resize(&c->nodes[0], want);
    if (c->nodes[0].size != want)
        luaL_error(L, "%s codec %s is %s bytes, but map '%s' (id %s) has %s-byte %ss", what,
                   c->desc, LUAEBPF_UTEXT(c->nodes[0].size), s->name, LUAEBPF_UTEXT(s->id),
                   LUAEBPF_UTEXT(want), what);
}

/* attaches the Codec userdata at codec_idx as the key (is_key) or value codec */
static void attach_codec(lua_State *L, luaebpf_shape *s, int owner, int codec_idx, int is_key) {
    luaebpf_codec *c = luaL_checkudata(L, codec_idx, LUAEBPF_CODEC);
    check_codec_fits(L, s, c, is_key);
    luaebpf_getuservalue(L, owner);
    /* the codec replaced stays referenced: a method running below may still
     * be decoding with it (retired codecs are few: one per codec change) */
    lua_rawgeti(L, -1, is_key ? UV_KEY_CODEC : UV_VALUE_CODEC);
    if (!lua_isnil(L, -1))
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    else
        lua_pop(L, 1);
    lua_pushvalue(L, codec_idx);
    lua_rawseti(L, -2, is_key ? UV_KEY_CODEC : UV_VALUE_CODEC);
    lua_pop(L, 1);
    c->int64_string = s->int64_string;
    if (is_key)
        s->kc = c;
    else
        s->vc = c;
    s->btf_pending &= ~(is_key ? 1 : 2); /* the caller's codec wins over the BTF */
}

void luaebpf_shape_push_codec(lua_State *L, int owner, int is_key) {
    luaebpf_getuservalue(L, owner);
    lua_rawgeti(L, -1, is_key ? UV_KEY_CODEC : UV_VALUE_CODEC);
    lua_remove(L, -2);
}

static uint32_t btf_type_of(const luaebpf_shape *s, int is_key) {
    return s->btf_id ? (is_key ? s->btf_key_type_id : s->btf_value_type_id) : 0;
}

/* protected: args shape (light), mask, btf (light). Returns the codecs built: the
 * key's (mask & 1), then the value's (mask & 2) */
static int build_btf_codecs(lua_State *L) {
    luaebpf_shape *s = lua_touserdata(L, 1);
    int which = (int)lua_tointeger(L, 2);
    const struct btf *btf = lua_touserdata(L, 3);
    for (int is_key = 1; is_key >= 0; is_key--) {
        if (!(which & (is_key ? 1 : 2)))
            continue;
        luaebpf_codec *c = luaebpf_codec_from_btf(L, btf, btf_type_of(s, is_key));
        if (c->nodes[0].size != (is_key ? s->key_size : s->value_size)) {
            lua_pop(L, 1); /* BTF and map disagree: bytes are the honest answer */
            luaebpf_codec_raw(L, is_key ? s->key_size : s->value_size);
        }
    }
    return (which & 1) + !!(which & 2);
}

/* loads the BTF and pushes the codecs it gives for the sides in which (key first);
 * returns the sides pushed (never the key of a keyless map) */
static int push_btf_codecs(lua_State *L, luaebpf_shape *s, int which, const char *op) {
    for (int is_key = 1; is_key >= 0; is_key--) {
        if ((which & (is_key ? 1 : 2)) && !btf_type_of(s, is_key) && !(is_key && !s->key_size))
            luaL_error(L, "map '%s' (id %s) has no BTF for its %s: the \"btf\" codec needs it; "
                       "set a codec such as \"u32\" instead", s->name, LUAEBPF_UTEXT(s->id),
                       is_key ? "key" : "value");
    }
    if (s->key_size == 0)
        which &= ~1;
    struct btf *btf = luaebpf_btf_load(s->btf_id);
    if (!btf) {
        int no = errno;
        luaebpf_pusherror(L, op, no, NULL, s->name, s->id, no == EPERM || no == EACCES
            ? "loading the map's BTF needs CAP_SYS_ADMIN: set opts.key and opts.value "
              "(or m:codec{}) to read it without, or open it in a privileged process"
            : "cannot load the map's BTF");
        lua_error(L);
    }
    /* protected, so the btf is freed whatever building raises */
    lua_pushcfunction(L, build_btf_codecs);
    lua_pushlightuserdata(L, s);
    lua_pushinteger(L, which);
    lua_pushlightuserdata(L, btf);
    int r = lua_pcall(L, 3, LUA_MULTRET, 0);
    btf__free(btf);
    if (r != 0)
        lua_error(L);
    return which;
}

void luaebpf_shape_load_btf(lua_State *L, luaebpf_shape *s, int owner, int which,
                            const char *op) {
    owner = lua_absindex(L, owner);
    int top = lua_gettop(L);
    which = push_btf_codecs(L, s, which, op);
    int at = top + 1;
    if (which & 1)
        attach_codec(L, s, owner, at++, 1);
    if (which & 2)
        attach_codec(L, s, owner, at, 0);
    lua_settop(L, top);
    s->btf_pending &= ~which;
}

void luaebpf_shape_set_codec(lua_State *L, luaebpf_shape *s, int owner, int spec_idx,
                             int is_key) {
    if (is_key && s->key_size == 0 && lua_isnil(L, spec_idx))
        return;
    if (luaebpf_is_btf_spec(L, spec_idx)) {
        luaebpf_shape_load_btf(L, s, owner, is_key ? 1 : 2, "codec");
        return;
    }
    if (lua_isnil(L, spec_idx))
        luaebpf_codec_raw(L, is_key ? s->key_size : s->value_size);
    else
        luaebpf_codec_compile(L, spec_idx, is_key ? "key" : "value");
    attach_codec(L, s, owner, lua_gettop(L), is_key);
    lua_pop(L, 1);
    if (lua_isnil(L, spec_idx) && btf_type_of(s, is_key))
        s->btf_pending |= is_key ? 1 : 2;
    else
        s->btf_pending &= ~(is_key ? 1 : 2);
}

void luaebpf_shape_change_codecs(lua_State *L, luaebpf_shape *s, int owner, int key_idx,
                                 int value_idx, int decode_idx, int int64_string) {
    owner = lua_absindex(L, owner);
    key_idx = lua_absindex(L, key_idx);
    value_idx = lua_absindex(L, value_idx);
    int decode = decode_idx && !lua_isnoneornil(L, decode_idx);
    if (decode)
        decode_idx = lua_absindex(L, decode_idx);
    /* build every new codec before attaching any, so a bad spec changes nothing */
    int kc = 0, vc = 0;
    int btf_sides = (luaebpf_is_btf_spec(L, key_idx) ? 1 : 0) |
                    (luaebpf_is_btf_spec(L, value_idx) ? 2 : 0);
    if (decode) /* decoding sides whose BTF is not loaded yet: load it now */
        btf_sides |= s->btf_pending & ((lua_isnil(L, key_idx) ? 1 : 0) |
                                       (lua_isnil(L, value_idx) ? 2 : 0));
    if (!lua_isnil(L, key_idx) && !(btf_sides & 1)) {
        luaebpf_codec_compile(L, key_idx, "key");
        kc = lua_gettop(L);
    }
    if (!lua_isnil(L, value_idx) && !(btf_sides & 2)) {
        luaebpf_codec_compile(L, value_idx, "value");
        vc = lua_gettop(L);
    }
    if (kc)
        check_codec_fits(L, s, lua_touserdata(L, kc), 1);
    if (vc)
        check_codec_fits(L, s, lua_touserdata(L, vc), 0);
    if (btf_sides) { /* may raise (no BTF, no privilege) before anything changed */
        int top = lua_gettop(L);
        int got = push_btf_codecs(L, s, btf_sides, "codec");
        if (got & 1)
            kc = ++top;
        if (got & 2)
            vc = ++top;
    }
    if (decode) {
        /* a side this call leaves as it was is decorated on a copy: its codec may
         * be decoding below, or shared (an mmap view holds the value codec) */
        if (!kc && s->kc && s->key_size) {
            luaebpf_codec_clone(L, s->kc);
            kc = lua_gettop(L);
        }
        if (!vc && s->vc) {
            luaebpf_codec_clone(L, s->vc);
            vc = lua_gettop(L);
        }
        luaebpf_codec_decorate(L, kc ? lua_touserdata(L, kc) : NULL,
                               vc ? lua_touserdata(L, vc) : NULL, decode_idx);
    }
    if (kc)
        attach_codec(L, s, owner, kc, 1);
    if (vc)
        attach_codec(L, s, owner, vc, 0);
    s->int64_string = int64_string; /* the codecs are the shape's own: set them too */
    if (s->kc)
        ((luaebpf_codec *)s->kc)->int64_string = int64_string;
    if (s->vc)
        ((luaebpf_codec *)s->vc)->int64_string = int64_string;
}

void luaebpf_shape_describe(lua_State *L, const luaebpf_shape *s, int table) {
    table = lua_absindex(L, table);
    for (int is_key = 1; is_key >= 0; is_key--) { /* the codecs' type names, once known */
        const luaebpf_codec *c = is_key ? s->kc : s->vc;
        if (c && c->from_btf && !(s->btf_pending & (is_key ? 1 : 2))) {
            lua_pushstring(L, c->desc);
            lua_setfield(L, table, is_key ? "key_type" : "value_type");
        }
    }
    lua_pushstring(L, luaebpf_shape_desc(s, 1));
    lua_setfield(L, table, "key_codec");
    lua_pushstring(L, luaebpf_shape_desc(s, 0));
    lua_setfield(L, table, "value_codec");
}

/* ------------------------------------------------------ encode and decode */

void luaebpf_encode_key(lua_State *L, const luaebpf_shape *s, int idx, unsigned char *buf) {
    if (s->key_size == 0) {
        if (!lua_isnoneornil(L, idx))
            luaL_argerror(L, idx, "this map has no keys: nil expected");
        return;
    }
    luaebpf_encode(L, s->kc, idx, buf, "key", idx);
}

void luaebpf_decode_key(lua_State *L, const luaebpf_shape *s, const unsigned char *buf) {
    luaebpf_decode_entry(L, s->kc, buf, 0);
}

/* a table at idx is an array of per-CPU values, unless the codec itself takes
 * a table and its first element is not one */
static int is_per_cpu_array(lua_State *L, const luaebpf_shape *s, int idx) {
    if (!lua_istable(L, idx))
        return 0;
    int kind = s->vc->nodes[0].kind;
    if (kind != LUAEBPF_ARRAY && kind != LUAEBPF_STRUCT)
        return 1;
    lua_rawgeti(L, idx, 1);
    int nested = lua_istable(L, -1);
    lua_pop(L, 1);
    return nested;
}

void luaebpf_encode_percpu_value(lua_State *L, const luaebpf_shape *s, int idx,
                                 unsigned char *buf) {
    luaebpf_encode_percpu_named(L, s, idx, buf, "value", idx);
}

void luaebpf_encode_percpu_named(lua_State *L, const luaebpf_shape *s, int idx,
                                 unsigned char *buf, const char *what, int arg) {
    memset(buf, 0, s->value_bytes); /* padding between CPUs is stored as given */
    if (!is_per_cpu_array(L, s, idx)) { /* one value for every CPU */
        luaebpf_encode(L, s->vc, idx, buf, what, arg);
        for (int i = 1; i < s->ncpus; i++)
            memcpy(buf + (size_t)i * s->value_stride, buf, s->value_size);
        return;
    }
    idx = lua_absindex(L, idx);
    if (lua_rawlen(L, idx) != (size_t)s->ncpus)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s: a per-CPU array of %d values (one per "
                      "possible CPU) expected, got %d values", what, s->ncpus,
                      (int)lua_rawlen(L, idx)));
    for (int i = 0; i < s->ncpus; i++) {
        char name[48];
        snprintf(name, sizeof name, "%.32s[%d]", what, i + 1);
        lua_rawgeti(L, idx, i + 1);
        luaebpf_encode(L, s->vc, -1, buf + (size_t)i * s->value_stride, name, arg);
        lua_pop(L, 1);
    }
}

void luaebpf_decode_entry_value(lua_State *L, const luaebpf_shape *s, const unsigned char *buf,
                                int key_idx) {
    if (!s->percpu) {
        if (key_idx)
            luaebpf_decode_entry(L, s->vc, buf, key_idx);
        else
            luaebpf_decode(L, s->vc, buf);
        return;
    }
    lua_createtable(L, s->ncpus, 0);
    for (int i = 0; i < s->ncpus; i++) {
        const unsigned char *p = buf + (size_t)i * s->value_stride;
        if (key_idx)
            luaebpf_decode_entry(L, s->vc, p, key_idx);
        else
            luaebpf_decode(L, s->vc, p);
        lua_rawseti(L, -2, i + 1);
    }
}

void luaebpf_decode_value(lua_State *L, const luaebpf_shape *s, const unsigned char *buf) {
    luaebpf_decode_entry_value(L, s, buf, 0);
}

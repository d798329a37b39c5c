/* map.c: the Map handle. Owns opening (pinned path, id, create), the fd and
 * its release (close, __close, __gc), info, m:codec() and m:layout() over the
 * map's shape (shape.c: codecs, per-CPU layout, encode and decode), and the
 * single-element operations lookup/update/delete/lookup_and_delete/contains,
 * one skeleton with per-call buffers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

static const char *access_name(uint32_t access) {
    return access == BPF_F_RDONLY ? "r" : access == BPF_F_WRONLY ? "w" : "rw";
}

/* ---------------------------------------------------------- the handle */

static luaebpf_map *map_push_closed(lua_State *L) {
    luaebpf_map *m = luaebpf_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    m->fd = -1; /* __gc on a handle that never got its fd releases nothing */
    m->shape.name = m->name; /* filled in place once the kernel names it */
    luaL_setmetatable(L, LUAEBPF_MAP);
    lua_newtable(L); /* the user value: keeps the shape's codecs alive */
    luaebpf_setuservalue(L, -2);
    return m;
}

/* closes the fd; a method running below (whose Lua callbacks or finalizers
 * closed the map) finds fd -1 before its next syscall */
static void map_release_fd(luaebpf_map *m) {
    int fd = m->fd;
    m->fd = -1; /* first: nothing sees it half-open */
    if (fd >= 0)
        close(fd);
}

/* close, __close and __gc: idempotent, never raise. The handle owns nothing
 * but its fd: element calls bring their own buffers. */
static int map_close(lua_State *L) {
    luaebpf_map *m = luaL_checkudata(L, 1, LUAEBPF_MAP);
    map_release_fd(m);
    return 0;
}

#define MAP_CLOSED "the map handle was closed"

luaebpf_map *luaebpf_check_map(lua_State *L, int idx, const char *op) {
    luaebpf_map *m = luaL_checkudata(L, idx, LUAEBPF_MAP);
    if (m->fd < 0)
        luaebpf_raise_closed(L, op, m->name, m->id, MAP_CLOSED);
    return m;
}

/* the kernel's view of the map: flags, name, and the shape of what it holds */
static int map_load_info(luaebpf_map *m) {
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(m->fd, &info, &len) != 0)
        return errno;
    m->id = m->shape.id = info.id;
    m->max_entries = info.max_entries;
    m->map_flags = info.map_flags;
    memcpy(m->name, info.name, sizeof m->name - 1);
    m->name[sizeof m->name - 1] = '\0';
    m->shape.btf_id = info.btf_id;
    m->shape.btf_key_type_id = info.btf_key_type_id;
    m->shape.btf_value_type_id = info.btf_value_type_id;
    return luaebpf_shape_init(&m->shape, info.type, info.key_size, info.value_size);
}

/* the hot path of the element methods: the Map metatable is their upvalue 1,
 * so checking self costs a pointer compare instead of a registry lookup; any
 * doubt goes to luaebpf_check_map_data, which raises the right error. Inlined
 * into each method: the call itself was a tenth of its cost. */
static inline __attribute__((always_inline)) luaebpf_map *fast_self(lua_State *L,
                                                                    const char *op) {
    luaebpf_map *m = lua_touserdata(L, 1);
    if (m && lua_getmetatable(L, 1)) {
        int mine = lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (mine && m->fd >= 0 && !m->shape.btf_pending)
            return m;
    }
    return luaebpf_check_map_data(L, 1, op);
}

luaebpf_map *luaebpf_check_map_data(lua_State *L, int idx, const char *op) {
    luaebpf_map *m = luaebpf_check_map(L, idx, op);
    if (m->shape.btf_pending)
        luaebpf_shape_load_btf(L, &m->shape, idx, m->shape.btf_pending, op);
    return m;
}

/* ---------------------------------------------------------- constructors */

static uint32_t check_access(lua_State *L, int opts) {
    static const char *const names[] = {"r", "rw", "w", NULL};
    static const uint32_t flags[] = {BPF_F_RDONLY, 0, BPF_F_WRONLY};
    return flags[luaebpf_opt_name(L, opts, "access", names, 0)];
}

static const char *const open_options[] = {"access", "expect", "key", "value", "int64",
                                           "decode", NULL};

/* checks opts at index `opts`; leaves key spec, value spec, expect, decode on
 * the stack top */
static uint32_t check_open_options(lua_State *L, int opts) {
    if (!lua_isnoneornil(L, opts)) {
        luaL_checktype(L, opts, LUA_TTABLE);
        luaebpf_check_options(L, opts, "open options", open_options);
    }
    uint32_t access = check_access(L, opts);
    if (lua_isnoneornil(L, opts)) {
        for (int i = 0; i < 4; i++)
            lua_pushnil(L);
    } else {
        lua_getfield(L, opts, "key");
        lua_getfield(L, opts, "value");
        lua_getfield(L, opts, "expect");
        if (!lua_isnil(L, -1) && !lua_istable(L, -1))
            luaL_error(L, "bad option 'expect': a table of info fields expected, got %s",
                       luaL_typename(L, -1));
        lua_getfield(L, opts, "decode");
    }
    return access;
}

/* protected: args map, key spec, value spec, expect, decode (each may be
 * nil). Checks expect first, so a map of the wrong shape is reported as such,
 * then sets codecs, then their decoders as m:codec{ decode = ... } would. */
static int check_and_set_codecs(lua_State *L) {
    luaebpf_map *m = lua_touserdata(L, 1);
    if (!lua_isnil(L, 4)) {
        struct bpf_map_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        if (bpf_obj_get_info_by_fd(m->fd, &info, &len) != 0)
            return luaebpf_raise(L, "open", errno, m->name, m->id, "cannot read the map's info");
        luaebpf_push_info(L, &info, m->access);
        if (luaebpf_expect_diff(L, 4, -1)) {
            lua_pushfstring(L, "not the expected map: %s", lua_tostring(L, -1));
            luaebpf_pusherror(L, "open", 0, "invalid", m->name, m->id, lua_tostring(L, -1));
            return lua_error(L);
        }
        lua_pop(L, 1);
    }
    luaebpf_shape_set_codec(L, &m->shape, 1, 2, 1);
    luaebpf_shape_set_codec(L, &m->shape, 1, 3, 0);
    if (!lua_isnil(L, 5)) {
        lua_pushnil(L); /* neither codec changes: only decoders are added */
        luaebpf_shape_change_codecs(L, &m->shape, 1, -1, -1, 5, m->shape.int64_string);
    }
    return 0;
}

/* The end of every constructor: stores fd in the handle m at map_idx (from
 * here on the GC owns it), reads the map's info, then checks expect and sets
 * the codecs from the specs at kspec and vspec and the decoders at decode
 * (0: none). On any failure it closes the fd before raising, so a failed open
 * leaves nothing open; the stack is left with the handle on top. */
static void map_adopt(lua_State *L, luaebpf_map *m, int map_idx, int fd, uint32_t access,
                      const char *label, int kspec, int vspec, int expect, int decode) {
    m->fd = fd;
    m->access = access;
    int no = map_load_info(m);
    if (no) {
        map_release_fd(m);
        luaebpf_raise(L, "open", no, label, 0, "cannot read the map's info");
    }
    /* an fd is a resource the collector cannot see: let it keep pace with opens */
    luaebpf_gc_hint(L, m->shape.key_size + m->shape.value_bytes);
    lua_pushcfunction(L, check_and_set_codecs);
    lua_pushvalue(L, map_idx);
    int args[4] = {kspec, vspec, expect, decode};
    for (int i = 0; i < 4; i++) {
        if (args[i])
            lua_pushvalue(L, args[i]);
        else
            lua_pushnil(L);
    }
    if (lua_pcall(L, 5, 0, 0) != 0) {
        map_release_fd(m);
        lua_error(L);
    }
    lua_settop(L, map_idx);
}

/* pushes a Map owning a duplicate of src_fd (a map fd held by a BPF object),
 * read-write, with codecs from its BTF. The handle exists before the fd does,
 * so a failure in between leaves nothing open. */
luaebpf_map *luaebpf_map_from_fd(lua_State *L, int src_fd) {
    luaebpf_map *m = map_push_closed(L);
    int map_idx = lua_gettop(L);
    int fd = fcntl(src_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        luaebpf_raise(L, "open", errno, NULL, 0, "cannot duplicate the map's fd");
    map_adopt(L, m, map_idx, fd, 0, NULL, 0, 0, 0, 0);
    return m;
}

/* m:pin(path): pins the map on a bpffs (the path must not exist yet) */
static int map_pin(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "pin");
    const char *path = luaebpf_check_path(L, 2);
    if (bpf_obj_pin(m->fd, path) != 0) {
        int no = errno;
        return luaebpf_fail(L, "pin", no, m, luaebpf_pin_hint(no, path));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.open(path [, opts]) */
static int map_open(lua_State *L) {
    const char *path = luaebpf_check_path(L, 1);
    lua_settop(L, 2);
    /* 3 key spec, 4 value spec, 5 expect, 6 decode */
    uint32_t access = check_open_options(L, 2);
    luaebpf_map *m = map_push_closed(L); /* 7 */
    m->shape.int64_string = luaebpf_opt_int64(L, 2, 0);
    LIBBPF_OPTS(bpf_obj_get_opts, o, .file_flags = access);
    int fd;
    LUAEBPF_RETRY(fd, bpf_obj_get_opts(path, &o), fd >= 0);
    if (fd < 0)
        return luaebpf_open_failed(L, path, errno, access);
    /* a pinned program opens under access flags too (a link refuses them:
     * open_failed says so); without /proc, get_info decides */
    if (luaebpf_fd_is(fd, "bpf-map") == 0) {
        close(fd);
        return luaebpf_raise(L, "open", EINVAL, path, 0, LUAEBPF_NOT_A_MAP);
    }
    map_adopt(L, m, 7, fd, access, path, 3, 4, 5, 6);
    return 1;
}

/* core.open_id(id [, opts]) */
static int map_open_id(lua_State *L) {
    lua_Integer id;
    if (!luaebpf_tointeger_in(L, 1, 1, UINT32_MAX, &id))
        return luaL_argerror(L, 1, lua_pushfstring(L, "a map id (integer >= 1) expected, got %s",
                             lua_type(L, 1) == LUA_TNUMBER ? luaL_tolstring(L, 1, NULL)
                                                           : luaL_typename(L, 1)));
    lua_settop(L, 2);
    uint32_t access = check_open_options(L, 2);
    luaebpf_map *m = map_push_closed(L);
    m->shape.int64_string = luaebpf_opt_int64(L, 2, 0);
    LIBBPF_OPTS(bpf_get_fd_by_id_opts, o, .open_flags = access);
    int fd;
    LUAEBPF_RETRY(fd, bpf_map_get_fd_by_id_opts((uint32_t)id, &o), fd >= 0);
    if (fd < 0) {
        int no = errno;
        return luaebpf_raise(L, "open", no, NULL, (uint32_t)id, luaebpf_open_hint(no, access, 1));
    }
    map_adopt(L, m, 7, fd, access, NULL, 3, 4, 5, 6);
    return 1;
}

static uint32_t opt_u32(lua_State *L, int t, const char *field, uint32_t dflt, int required) {
    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        if (required)
            luaL_error(L, "create: field '%s' (an integer >= 0) is required", field);
        lua_pop(L, 1);
        return dflt;
    }
    lua_Integer v;
    if (!luaebpf_tointeger_in(L, -1, 0, UINT32_MAX, &v))
        luaL_error(L, "create: field '%s': an integer in 0..4294967295 expected, got %s", field,
                   lua_type(L, -1) == LUA_TNUMBER ? luaL_tolstring(L, -1, NULL)
                                                   : luaL_typename(L, -1));
    lua_pop(L, 1);
    return (uint32_t)v;
}

static int check_map_name(const char *name) {
    size_t n = strlen(name);
    if (n > 15)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* size of a codec spec at idx, compiled on the fly; 0 for nil or plain "raw" */
static uint32_t spec_size(lua_State *L, int idx) {
    if (lua_isnil(L, idx))
        return 0;
    luaebpf_codec *c = luaebpf_codec_compile(L, idx, "codec");
    uint32_t size = c->nodes[0].size;
    lua_pop(L, 1);
    return size;
}

/* field 'type' of the create spec at 1: a type name or number */
static int create_type(lua_State *L) {
    lua_getfield(L, 1, "type");
    int type = -1;
    lua_Integer t;
    if (lua_type(L, -1) == LUA_TSTRING)
        type = luaebpf_type_number(lua_tostring(L, -1));
    else if (luaebpf_tointeger_in(L, -1, 1, INT32_MAX, &t))
        type = (int)t;
    if (type < 0)
        luaL_error(L, "create: field 'type': a map type name such as \"hash\", \"array\", "
                   "\"percpu_hash\" expected, got %s", lua_type(L, -1) == LUA_TSTRING ?
                   lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1)) : luaL_typename(L, -1));
    lua_pop(L, 1);
    return type;
}

/* key_size and value_size of the create spec at 1, defaulting to the sizes of
 * the codec specs at 2 and 3, which must agree with them */
static void create_sizes(lua_State *L, int type, uint32_t *key_size, uint32_t *value_size) {
    if (luaebpf_is_btf_spec(L, 2) || luaebpf_is_btf_spec(L, 3))
        luaL_error(L, "create: the \"btf\" codec reads a map's own BTF, and ebpf.create "
                   "makes maps without BTF: give a codec such as \"u32\" or a struct");
    uint32_t ksz = spec_size(L, 2), vsz = spec_size(L, 3);
    /* queues, stacks and bloom filters have no key: key_size defaults to 0 there */
    int keyless = type == BPF_MAP_TYPE_QUEUE || type == BPF_MAP_TYPE_STACK ||
                  type == BPF_MAP_TYPE_BLOOM_FILTER;
    *key_size = opt_u32(L, 1, "key_size", ksz, ksz == 0 && !keyless);
    *value_size = opt_u32(L, 1, "value_size", vsz, vsz == 0);
    if (ksz && ksz != *key_size)
        luaL_error(L, "create: key codec is %s bytes but key_size is %s",
                   LUAEBPF_UTEXT(ksz), LUAEBPF_UTEXT(*key_size));
    if (vsz && vsz != *value_size)
        luaL_error(L, "create: value codec is %s bytes but value_size is %s",
                   LUAEBPF_UTEXT(vsz), LUAEBPF_UTEXT(*value_size));
}

/* field 'name' of the create spec at 1, or NULL; pushed, so the string lives
 * as long as the caller keeps that slot */
static const char *create_name(lua_State *L) {
    lua_getfield(L, 1, "name");
    if (lua_isnil(L, -1))
        return NULL;
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!name || !check_map_name(name))
        luaL_error(L, "create: field 'name': at most 15 characters of [A-Za-z0-9_.] "
                   "expected, got %s", name ? lua_pushfstring(L, "\"%s\"", name)
                                             : luaL_typename(L, -1));
    return name;
}

/* core.create{ type=, key_size=, value_size=, max_entries=, name=, flags=, ... } */
static int map_create(lua_State *L) {
    static const char *const known[] = {"type", "key_size", "value_size", "max_entries",
                                        "name", "flags", "map_extra", "numa_node",
                                        "inner_map", "key", "value", "int64", "decode",
                                        NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaebpf_check_options(L, 1, "create spec", known);
    int type = create_type(L);
    lua_getfield(L, 1, "key");   /* 2 */
    lua_getfield(L, 1, "value"); /* 3 */
    uint32_t key_size, value_size;
    create_sizes(L, type, &key_size, &value_size);
    uint32_t max_entries = opt_u32(L, 1, "max_entries", 0, 1);
    uint32_t flags = 0;
    lua_getfield(L, 1, "flags");
    if (!lua_isnil(L, -1))
        flags = luaebpf_check_flags(L, -1, "create: field 'flags'");
    lua_pop(L, 1);
    /* every option is read before the inner map's fd: reading one may run Lua
     * (an __index on the spec, a finalizer), which may close that map and
     * open another on the same fd number */
    LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = flags);
    o.numa_node = opt_u32(L, 1, "numa_node", 0, 0);
    o.map_extra = opt_u32(L, 1, "map_extra", 0, 0);
    int int64_string = luaebpf_opt_int64(L, 1, 0);
    const char *name = create_name(L); /* 4 */
    lua_getfield(L, 1, "inner_map"); /* 5: anchored, so it is closed at worst, never freed */
    luaebpf_map *inner = lua_isnil(L, 5) ? NULL : luaebpf_check_map(L, 5, "create");
    lua_getfield(L, 1, "decode");        /* 6 */
    luaebpf_map *m = map_push_closed(L); /* 7 */
    m->shape.int64_string = int64_string;
    if (inner) { /* its fd last, with no Lua call between it and the syscall */
        if (inner->fd < 0)
            luaebpf_check_map(L, 5, "create"); /* raises "closed" */
        o.inner_map_fd = (uint32_t)inner->fd;
    }
    int fd = bpf_map_create((enum bpf_map_type)type, name, key_size, value_size, max_entries, &o);
    if (fd < 0) {
        int no = errno;
        return luaebpf_raise(L, "create", no, name, 0,
                             no == EPERM ? "creating maps needs CAP_BPF (or root)"
                             : no == EINVAL ? "the kernel refused this combination of type, "
                                              "sizes and flags" : NULL);
    }
    map_adopt(L, m, 7, fd, 0, name, 2, 3, 0, 6);
    return 1;
}

/* ------------------------------------------------------------------ info */

/* the info table users see; access UINT32_MAX leaves the access field out */
void luaebpf_push_info(lua_State *L, const struct bpf_map_info *info, uint32_t access) {
    lua_createtable(L, 0, 16);
    lua_pushinteger(L, info->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, info->name);
    lua_setfield(L, -2, "name");
    const char *tn = luaebpf_type_name(info->type);
    if (tn)
        lua_pushstring(L, tn);
    else
        lua_pushfstring(L, "type_%s", LUAEBPF_UTEXT(info->type));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, info->key_size);
    lua_setfield(L, -2, "key_size");
    lua_pushinteger(L, info->value_size);
    lua_setfield(L, -2, "value_size");
    lua_pushinteger(L, info->max_entries);
    lua_setfield(L, -2, "max_entries");
    luaebpf_push_flags(L, info->map_flags);
    lua_setfield(L, -2, "flags");
    lua_pushinteger(L, info->btf_id);
    lua_setfield(L, -2, "btf_id");
    lua_pushinteger(L, info->btf_key_type_id);
    lua_setfield(L, -2, "btf_key_type_id");
    lua_pushinteger(L, info->btf_value_type_id);
    lua_setfield(L, -2, "btf_value_type_id");
    lua_pushboolean(L, luaebpf_type_is_percpu(info->type));
    lua_setfield(L, -2, "percpu");
    lua_pushinteger(L, (lua_Integer)info->map_extra);
    lua_setfield(L, -2, "map_extra");
    if (access != UINT32_MAX) {
        lua_pushstring(L, access_name(access));
        lua_setfield(L, -2, "access");
    }
}

/* m:info() */
static int map_info(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "info");
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(m->fd, &info, &len) != 0) {
        int no = errno;
        return luaebpf_fail(L, "info", no, m, NULL);
    }
    /* read before the table exists: building it may run a finalizer that closes m */
    luaebpf_fdinfo fi;
    luaebpf_fdinfo_read(m->fd, &fi);
    luaebpf_push_info(L, &info, m->access);
    luaebpf_fdinfo_push(L, &fi, -1); /* frozen, memlock */
    luaebpf_shape_describe(L, &m->shape, -1);
    return 1;
}

/* m:fd() */
static int map_fd(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "fd");
    lua_pushinteger(L, m->fd);
    return 1;
}

/* m:codec{ key = spec, value = spec, int64 = "string", decode = { path = decoder } }
 * sets; m:codec() returns
 * both descriptions */
static int map_codec(lua_State *L) {
    static const char *const known[] = {"key", "value", "int64", "decode", NULL};
    luaebpf_map *m = luaebpf_check_map(L, 1, "codec");
    if (lua_isnoneornil(L, 2)) {
        lua_pushstring(L, luaebpf_shape_desc(&m->shape, 1));
        lua_pushstring(L, luaebpf_shape_desc(&m->shape, 0));
        return 2;
    }
    if (luaebpf_is_btf_spec(L, 2)) { /* m:codec("btf"): both sides from the map's BTF, now */
        luaebpf_shape_load_btf(L, &m->shape, 1, m->shape.key_size ? 3 : 2, "codec");
        lua_settop(L, 1);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    luaebpf_check_options(L, 2, "codec", known);
    int int64_string = luaebpf_opt_int64(L, 2, m->shape.int64_string);
    lua_getfield(L, 2, "key");   /* 3 */
    lua_getfield(L, 2, "value"); /* 4 */
    lua_getfield(L, 2, "decode"); /* 5 */
    luaebpf_shape_change_codecs(L, &m->shape, 1, 3, 4, 5, int64_string);
    lua_settop(L, 1);
    return 1;
}

/* m:layout() -> { key = layout, value = layout }: fields, offsets, sizes */
static int map_layout(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "layout");
    lua_createtable(L, 0, 2);
    if (m->shape.kc) {
        luaebpf_push_layout(L, m->shape.kc);
        lua_setfield(L, -2, "key");
    }
    luaebpf_push_layout(L, m->shape.vc);
    lua_setfield(L, -2, "value");
    return 1;
}

static int map_tostring(lua_State *L) {
    luaebpf_map *m = luaL_checkudata(L, 1, LUAEBPF_MAP);
    if (m->fd < 0) {
        lua_pushfstring(L, "luaebpf.Map: '%s' (id %s, closed)", m->name, LUAEBPF_UTEXT(m->id));
        return 1;
    }
    const char *tn = luaebpf_type_name(m->shape.type);
    lua_pushfstring(L, "luaebpf.Map: %s '%s' (id %s, %s -> %s, max_entries %s, access %s)",
                    tn ? tn : "?", m->name, LUAEBPF_UTEXT(m->id), luaebpf_shape_desc(&m->shape, 1),
                    luaebpf_shape_desc(&m->shape, 0), LUAEBPF_UTEXT(m->max_entries),
                    access_name(m->access));
    return 1;
}

/* ------------------------------------------------------ element operations */

/* Each element call has buffers of its own, never the handle's: a finalizer
 * (any allocation may run one) or a metamethod that runs while this call
 * encodes or decodes may call any method of the same map, and must find
 * nothing of this call's to overwrite. Up to ELEM_STACK bytes they live in
 * the caller's C frame; beyond, in one userdata pushed before anything is
 * encoded, anchored on the stack until the call returns. The kernel writes
 * a lookup's value straight into them, so decoding needs no copy. */
#define ELEM_STACK 512

typedef struct elem_buf {
    unsigned char *key, *value;
    uint64_t small[ELEM_STACK / 8]; /* uint64_t: aligned for any scalar a codec stores */
} elem_buf;

/* last_arg: the stack index of the call's last argument (its key or value);
 * a buffer pushed while one was left out must not take its slot, where the
 * encoder would read it as the argument */
static unsigned char *elem_buf_push(lua_State *L, size_t total, int last_arg) {
    if (lua_gettop(L) < last_arg)
        lua_settop(L, last_arg); /* nil there, as the argument left out reads */
    return lua_newuserdata(L, total);
}

static inline __attribute__((always_inline)) void elem_buf_init(lua_State *L,
                                                                const luaebpf_map *m,
                                                                elem_buf *b, int last_arg) {
    size_t key_bytes = ((size_t)m->shape.key_size + 7) / 8 * 8;
    size_t total = key_bytes + m->shape.value_bytes;
    unsigned char *p = (unsigned char *)b->small;
    if (total > sizeof b->small)
        p = elem_buf_push(L, total, last_arg);
    b->key = p;
    b->value = p + key_bytes;
}

/* pushes nil and the error of an element operation; returns 2 */
static int elem_fail(lua_State *L, const luaebpf_map *m, const char *op, int errnum,
                     const char *flag) {
    const char *detail = luaebpf_elem_hint(m, op, errnum, flag);
    lua_pushnil(L);
    /* EBADF here is about an fd in the key or value, not this handle: "closed"
     * means a closed luaebpf handle, raised before any syscall */
    luaebpf_pusherror(L, op, errnum, errnum == EBADF ? "invalid" : NULL, m->name, m->id, detail);
    return 2;
}

/* What sets the element operations apart; elem_call does the rest for all. */
enum { ELEM_LOOKUP, ELEM_CONTAINS, ELEM_UPDATE, ELEM_DELETE, ELEM_LOOKUP_AND_DELETE };

static const struct elem_op {
    const char *name;   /* in errors and hints */
    int key;            /* a key at argument 2 */
    int value_arg;      /* the stack index of a value to encode, or 0 */
    int decodes;        /* answers the value the kernel wrote; otherwise true */
    int absent;         /* ENOENT answers nil (LUA_TNIL) or false (LUA_TBOOLEAN); -1: an error */
} elem_ops[] = {
    [ELEM_LOOKUP] = {"lookup", 1, 0, 1, LUA_TNIL},
    [ELEM_CONTAINS] = {"contains", 0, 2, 0, LUA_TBOOLEAN}, /* a bloom filter's "no" is certain */
    [ELEM_UPDATE] = {"update", 1, 3, 0, -1},
    [ELEM_DELETE] = {"delete", 1, 0, 0, LUA_TBOOLEAN},
    [ELEM_LOOKUP_AND_DELETE] = {"lookup_and_delete", 1, 0, 1, LUA_TNIL},
};

static inline int elem_syscall(int op, int fd, const void *key, void *value, uint64_t flags) {
    switch (op) {
    case ELEM_UPDATE: return bpf_map_update_elem(fd, key, value, flags);
    case ELEM_DELETE: return bpf_map_delete_elem(fd, key);
    case ELEM_LOOKUP_AND_DELETE: return bpf_map_lookup_and_delete_elem_flags(fd, key, value, flags);
    default: return bpf_map_lookup_elem_flags(fd, key, value, flags); /* a bloom filter's test too */
    }
}

/* One element operation on self at 1, whose own checks are done: per-call
 * buffers, the key then the value encoded, the handle checked again, the
 * syscall (retried), then the answer. flag names the update flag (or "lock")
 * for the error's hint. */
/* Inlined into each method, so op is a constant there: the table lookups and
 * the syscall switch fold away and the lookup path costs what a hand-written
 * one would (callgrind: about 40 instructions per call less than a shared copy). */
/* pc: how a lookup answers a per-CPU value (percpu.c), or NULL; karg: the
 * key's stack index (2 after self; 1 in a function made by m:lookup_fn) */
static inline __attribute__((always_inline)) int elem_call(lua_State *L, luaebpf_map *m, int op,
                                                           uint64_t flags, const char *flag,
                                                           const luaebpf_percpu *pc, int karg) {
    const struct elem_op *o = &elem_ops[op];
    elem_buf b;
    int nargs = o->value_arg ? lua_gettop(L) : 0; /* what the caller passed, before any buffer */
    /* before encoding: nothing of ours exists yet if it runs Lua */
    elem_buf_init(L, m, &b, o->value_arg ? o->value_arg : o->key ? karg : 0);
    /* the key first: a missing key is argument #1's; a plain integer key inline */
    if (o->key && !(m->shape.key_size && luaebpf_encode_fast(L, m->shape.kc, karg, b.key)))
        luaebpf_encode_key(L, &m->shape, karg, b.key);
    if (o->value_arg) {
        if (nargs < o->value_arg) /* luaL_checkany's words: the buffer may fill the slot */
            luaL_argerror(L, o->value_arg, "value expected");
        luaebpf_encode_value(L, &m->shape, o->value_arg, b.value);
    }
    if (m->fd < 0) /* closed by a finalizer that ran meanwhile */
        luaebpf_raise_closed(L, o->name, m->name, m->id, MAP_CLOSED);
    const void *key = o->key && m->shape.key_size ? b.key : NULL;
    int r;
    LUAEBPF_RETRY(r, elem_syscall(op, m->fd, key, b.value, flags), r == 0);
    if (r != 0) {
        int no = errno; /* before any Lua call */
        if (no != ENOENT || o->absent < 0)
            return elem_fail(L, m, o->name, no, flag);
        if (o->absent == LUA_TNIL) /* absent is an answer, not an error */
            lua_pushnil(L);
        else
            lua_pushboolean(L, 0);
        return 1;
    }
    if (!o->decodes) {
        lua_pushboolean(L, 1);
        return 1;
    }
    /* valgrind sizes a lookup's output by value_size; per-CPU it is ncpus strides */
    VALGRIND_MAKE_MEM_DEFINED(b.value, m->shape.value_bytes);
    /* b is this call's own: a finalizer running while this decodes cannot touch it */
    int key_idx = m->shape.key_size ? karg : 0;
    if (pc && pc->reduce) /* folds b in place */
        luaebpf_percpu_push(L, &m->shape, pc->reduce, b.value, key_idx);
    else if (pc && pc->into)
        luaebpf_percpu_fill(L, &m->shape, b.value, pc->into, key_idx);
    else if (m->shape.percpu || !luaebpf_decode_fast(L, m->shape.vc, b.value))
        luaebpf_decode_entry_value(L, &m->shape, b.value, key_idx);
    return 1;
}

static int no_bloom_lookup(lua_State *L) { /* the kernel would read a value, not a key */
    return luaL_error(L, "lookup: this map is a bloom filter, which holds no values to look "
                      "up; test membership with f:contains(value)");
}

/* { lock = bool, percpu = "sum" | "min" | "max", into = table } at opts: the
 * BPF_F_LOCK flag (a value holding a bpf_spin_lock is read under it by
 * default; *lock is -1 then, else what was asked) and, for percpu.c, the
 * per-CPU answer into pc. Strict like every options table: one lua_next pass
 * over its own entries (no metamethod is consulted), and any key but these
 * three raises. It sits on a hot path (a per-CPU lookup with a reduction is
 * meant to cost what the bare syscall does), so the pass makes the fewest API
 * calls it can: per entry the walk's step, the key's bytes, the value's check,
 * the pop; the error wording is built only when one raises. An `into` table
 * is copied to a slot pushed below the walk, so it stays anchored on the
 * stack until the call returns (it is the top when this returns). */
static inline __attribute__((always_inline)) void check_lookup_options(lua_State *L,
                                                                       const luaebpf_map *m,
                                                                       int opts, int opts_type,
                                                                       luaebpf_percpu *pc,
                                                                       int *lock) {
    static const char *const known[] = {"lock", "percpu", "into", NULL};
    *lock = -1;
    if (__builtin_expect(opts_type != LUA_TTABLE, 0))
        luaL_checktype(L, opts, LUA_TTABLE); /* raises */
    int slot = lua_gettop(L) + 1;
    lua_pushnil(L); /* slot: the into table, if any */
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        /* no lua_type first: a number key that lua_tolstring turns into text
         * in place (which would derail lua_next) is unknown whatever its text,
         * so the walk ends in check_options' error, from a fresh walk */
        size_t len = 0;
        const char *k = lua_tolstring(L, -2, &len);
        if (!k)
            len = 0; /* not a string or number: unknown */
        if (len == 6 && memcmp(k, "percpu", 6) == 0) {
            size_t vlen = 0;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vlen) : "";
            pc->reduce = luaebpf_percpu_name(v, vlen);
            if (__builtin_expect(!pc->reduce || !m->shape.percpu, 0))
                luaebpf_percpu_reduction(L, -1, &m->shape, "lookup"); /* raises */
        } else if (len == 4 && memcmp(k, "into", 4) == 0) {
            if (__builtin_expect(!m->shape.percpu || lua_type(L, -1) != LUA_TTABLE, 0))
                luaebpf_percpu_check_into(L, -1, &m->shape, "lookup"); /* raises */
            lua_copy(L, -1, slot);
            pc->into = slot;
        } else if (len == 4 && memcmp(k, "lock", 4) == 0) {
            if (!lua_isboolean(L, -1))
                luaL_error(L, "bad option 'lock': a boolean expected, got %s",
                           luaL_typename(L, -1));
            *lock = lua_toboolean(L, -1);
        } else {
            luaebpf_check_options(L, opts, "lookup options", known); /* raises */
        }
        lua_pop(L, 1);
    }
    if (__builtin_expect(pc->reduce && pc->into, 0))
        luaebpf_percpu_both(L, "lookup");
}

static inline uint64_t lookup_flags(const luaebpf_map *m, int lock) {
    return lock < 0 ? luaebpf_shape_lock(&m->shape) : lock ? BPF_F_LOCK : 0;
}

/* m:lookup(key [, { lock = true } | { percpu = "sum" } | { into = t }]) -> value | nil | nil, err */
static int map_lookup(lua_State *L) {
    luaebpf_map *m = fast_self(L, "lookup");
    if (m->shape.type == BPF_MAP_TYPE_BLOOM_FILTER)
        return no_bloom_lookup(L);
    int opts = lua_type(L, 3);
    if (opts <= LUA_TNIL) { /* none or nil: the hot path, with nothing of the options' */
        uint64_t flags = luaebpf_shape_lock(&m->shape);
        return elem_call(L, m, ELEM_LOOKUP, flags, flags ? "lock" : NULL, NULL, 2);
    }
    luaebpf_percpu pc = {0, 0};
    int lock;
    check_lookup_options(L, m, 3, opts, &pc, &lock);
    uint64_t flags = lookup_flags(m, lock);
    return elem_call(L, m, ELEM_LOOKUP, flags, flags ? "lock" : NULL, &pc, 2);
}

/* m:lookup_fn([opts]) -> get, where get(key) is m:lookup(key, opts) with the
 * options read once, here: for loops that look up many keys the same way.
 * get skips what a method call pays every time (the method's lookup through
 * the metatable, the self check) and the walk of the options table, which is
 * most of what m:lookup(k, { percpu = "sum" }) adds to the syscall. get
 * holds the map (it stays open while get is alive) and reads its shape on
 * each call, so m:codec{} still applies; after m:close() get raises, as
 * m:lookup does. Upvalues: the bound options, the map, the into table. */
typedef struct bound_lookup {
    luaebpf_map *m;
    luaebpf_percpu pc; /* pc.into: lua_upvalueindex(3), or 0 */
    int lock;          /* as check_lookup_options answers it */
} bound_lookup;

static int bound_lookup_call(lua_State *L) {
    const bound_lookup *b = lua_touserdata(L, lua_upvalueindex(1));
    luaebpf_map *m = b->m;
    if (__builtin_expect(lua_gettop(L) > 1, 0))
        return luaL_error(L, "lookup: a function made by m:lookup_fn takes the key only (its "
                          "options were fixed when it was made), got %d arguments",
                          lua_gettop(L));
    if (__builtin_expect(m->fd < 0, 0)) /* pending BTF was loaded when get was made */
        return luaebpf_raise_closed(L, "lookup", m->name, m->id, MAP_CLOSED);
    uint64_t flags = lookup_flags(m, b->lock);
    return elem_call(L, m, ELEM_LOOKUP, flags, flags ? "lock" : NULL, &b->pc, 1);
}

static int map_lookup_fn(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "lookup_fn");
    if (m->shape.type == BPF_MAP_TYPE_BLOOM_FILTER)
        return no_bloom_lookup(L);
    int opts = lua_type(L, 2);
    lua_settop(L, 2);
    bound_lookup *b = lua_newuserdata(L, sizeof *b); /* 3 */
    b->m = m;
    b->pc = (luaebpf_percpu){0, 0};
    b->lock = -1;
    lua_pushvalue(L, 1); /* 4: the map, anchored */
    if (opts > LUA_TNIL) {
        check_lookup_options(L, m, 2, opts, &b->pc, &b->lock); /* pushes 5: into or nil */
        if (b->pc.into)
            b->pc.into = lua_upvalueindex(3);
    } else {
        lua_pushnil(L); /* 5 */
    }
    lua_pushcclosure(L, bound_lookup_call, 3);
    return 1;
}

/* f:contains(value) -> true (maybe present) | false (absent) | nil, err: a
 * bloom filter's membership test, which the kernel runs as a lookup that
 * takes the value to test and no key */
static int map_contains(lua_State *L) {
    luaebpf_map *m = fast_self(L, "contains");
    const char *tn = luaebpf_type_name(m->shape.type);
    if (m->shape.type != BPF_MAP_TYPE_BLOOM_FILTER)
        return luaL_error(L, "contains is for bloom filters; this map is a %s: use lookup",
                          tn ? tn : "map of another type");
    return elem_call(L, m, ELEM_CONTAINS, 0, NULL, NULL, 2);
}

static uint64_t check_update_flag(lua_State *L, int idx, const char **name) {
    static const char *const names[] = {"any", "noexist", "exist", "lock", NULL};
    static const uint64_t flags[] = {BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK};
    if (lua_isnoneornil(L, idx)) { /* the common case, on update's hot path */
        *name = NULL;
        return BPF_ANY;
    }
    int i = luaebpf_check_name(L, idx, names, -1);
    *name = i < 0 ? NULL : names[i];
    return i < 0 ? BPF_ANY : flags[i];
}

/* m:update(key, value [, flag]) -> true | nil, err */
static int map_update(lua_State *L) {
    luaebpf_map *m = fast_self(L, "update");
    const char *fname; /* anchored: argument 4 */
    uint64_t flags = check_update_flag(L, 4, &fname);
    flags |= luaebpf_shape_lock(&m->shape); /* a spin-locked value is written under its lock */
    if (lua_type(L, 3) == LUA_TUSERDATA && luaebpf_type_holds_maps(m->shape.type))
        return luaebpf_update_inner(L, m, flags, fname); /* an inner Map by handle */
    return elem_call(L, m, ELEM_UPDATE, flags, fname, NULL, 2);
}

/* m:delete(key) -> true | false when absent | nil, err */
static int map_delete(lua_State *L) {
    return elem_call(L, fast_self(L, "delete"), ELEM_DELETE, 0, NULL, NULL, 2);
}

/* m:lookup_and_delete(key) -> value | nil | nil, err (pop, on a queue or stack) */
static int map_lookup_and_delete(lua_State *L) {
    luaebpf_map *m = fast_self(L, "lookup_and_delete");
    /* a spin-locked value is read under its lock (hash types, 5.14+) */
    return elem_call(L, m, ELEM_LOOKUP_AND_DELETE, luaebpf_shape_lock(&m->shape), NULL,
                     NULL, 2);
}

void luaebpf_map_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"lookup", map_lookup},   {"update", map_update},
        {"delete", map_delete},   {"lookup_and_delete", map_lookup_and_delete},
        {"info", map_info},       {"fd", map_fd},
        {"codec", map_codec},     {"close", map_close},
        {"layout", map_layout},   {"pin", map_pin},
        {"contains", map_contains}, {"lookup_fn", map_lookup_fn},
        {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", map_close}, {"__close", map_close}, {"__tostring", map_tostring}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"open", map_open}, {"open_id", map_open_id}, {"create", map_create}, {NULL, NULL}};
    /* each method knows the metatable: see fast_self */
    luaebpf_class(L, LUAEBPF_MAP, "Map", meta, methods, 1);
    luaL_setfuncs(L, funcs, 0);
}

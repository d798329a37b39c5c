/* inner.c: maps of maps (array_of_maps, hash_of_maps). Owns m:inner(key
 * [, opts]), which opens the map an entry points to, and writing an entry
 * from a Map handle (m:update(key, inner), which map.c hands over here).
 * User space writes an inner map's fd into an entry and reads back its id:
 * the kernel turns one into the other. m:dump{ inner = true } is Lua
 * (init.lua), over m:inner. */
#include <errno.h>
#include <string.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

/* the Map at idx, open; map.c calls here, so this file checks handles itself */
static luaebpf_map *check_open(lua_State *L, int idx, const char *op) {
    luaebpf_map *m = luaL_checkudata(L, idx, LUAEBPF_MAP);
    if (m->fd < 0)
        luaebpf_raise_closed(L, op, m->name, m->id, "the map handle was closed");
    return m;
}

static luaebpf_map *check_outer(lua_State *L, const char *op) {
    luaebpf_map *m = check_open(L, 1, op);
    if (m->shape.btf_pending) /* the key codec from the map's BTF, on first use */
        luaebpf_shape_load_btf(L, &m->shape, 1, m->shape.btf_pending, op);
    if (!luaebpf_type_holds_maps(m->shape.type)) {
        const char *tn = luaebpf_type_name(m->shape.type);
        luaL_error(L, "%s: array_of_maps or hash_of_maps expected, this map is a%s %s", op,
                   tn && strchr("aeiou", tn[0]) ? "n" : "", tn ? tn : "map of another type");
    }
    return m;
}

int luaebpf_update_inner(lua_State *L, luaebpf_map *m, uint64_t flags, const char *flag) {
    unsigned char key[512];
    if (m->shape.key_size > sizeof key) /* the kernel caps map-of-maps keys far below this */
        return luaL_error(L, "update: a key of %d bytes is too large", (int)m->shape.key_size);
    luaebpf_encode_key(L, &m->shape, 2, key);
    /* checked after the key: encoding it may run Lua that closes the inner map */
    luaebpf_map *inner = check_open(L, 3, "update");
    check_open(L, 1, "update");
    uint32_t fd = (uint32_t)inner->fd;
    if (bpf_map_update_elem(m->fd, key, &fd, flags) != 0) {
        int no = errno;
        return luaebpf_fail(L, "update", no, m, luaebpf_elem_hint(m, "update", no, flag));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* m:inner(key [, opts]) -> the inner Map | nil (no map there) | nil, err.
 * opts as for open_id (read-only by default); upvalue 1: core.open_id */
static int map_inner(lua_State *L) {
    luaebpf_map *m = check_outer(L, "inner");
    lua_settop(L, 3);
    unsigned char key[512];
    if (m->shape.key_size > sizeof key)
        return luaL_error(L, "inner: a key of %d bytes is too large", (int)m->shape.key_size);
    luaebpf_encode_key(L, &m->shape, 2, key);
    check_open(L, 1, "inner");
    uint32_t id = 0;
    int r;
    LUAEBPF_RETRY(r, bpf_map_lookup_elem(m->fd, key, &id), r == 0);
    if (r != 0) {
        int no = errno;
        if (no == ENOENT) { /* no inner map at this key: an answer, as for lookup */
            lua_pushnil(L);
            return 1;
        }
        return luaebpf_fail(L, "inner", no, m, luaebpf_elem_hint(m, "lookup", no, NULL));
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushinteger(L, id);
    lua_pushvalue(L, 3);
    lua_call(L, 2, 1);
    return 1;
}

void luaebpf_inner_open(lua_State *L) {
    lua_getfield(L, -1, "Map");     /* module, methods */
    lua_getfield(L, -2, "open_id"); /* module, methods, open_id */
    lua_pushcclosure(L, map_inner, 1);
    lua_setfield(L, -2, "inner");
    lua_pop(L, 1);
}

/* iter.c: walking a map. Owns m:pairs() and m:keys() on BPF_MAP_GET_NEXT_KEY.
 * The kernel restarts a hash walk from the first key when the key it is given
 * was deleted meanwhile, so a walk over a type that can delete remembers the
 * keys it yielded and skips them on a restart; every walk is bounded, and an
 * entry whose lookup says ENOENT after next_key returned it is skipped. */
#include <errno.h>
#include <string.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

typedef struct iter_state {
    int started, done, with_values;
    uint64_t steps, limit;
    uint64_t yielded, skipped_vanished, skipped_repeat;
    size_t key_size;
    unsigned char *prev, *next, *value; /* point into the tail of this userdata */
} iter_state;

/* upvalues: 1 map, 2 state, 3 seen-keys table (or false) */
static int iter_step(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, lua_upvalueindex(1), "iterate");
    iter_state *s = lua_touserdata(L, lua_upvalueindex(2));
    int track = lua_istable(L, lua_upvalueindex(3));
    while (!s->done) {
        if (++s->steps > s->limit) {
            s->done = 1;
            luaebpf_pusherror(L, "iterate", EAGAIN, NULL, m->name, m->id,
                              "the walk restarted too often under concurrent deletes");
            return lua_error(L);
        }
        if (bpf_map_get_next_key(m->fd, s->started ? s->prev : NULL, s->next) != 0) {
            int no = errno;
            s->done = 1;
            if (no == ENOENT)
                break; /* past the last key */
            luaebpf_pusherror(L, "iterate", no, NULL, m->name, m->id, NULL);
            return lua_error(L);
        }
        s->started = 1;
        memcpy(s->prev, s->next, s->key_size);
        if (track) { /* after a restart, keys already yielded come round again */
            lua_pushlstring(L, (const char *)s->next, s->key_size);
            lua_pushvalue(L, -1);
            lua_rawget(L, lua_upvalueindex(3));
            if (lua_toboolean(L, -1)) {
                lua_pop(L, 2);
                s->skipped_repeat++;
                continue;
            }
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
            lua_rawset(L, lua_upvalueindex(3));
        }
        if (s->with_values && bpf_map_lookup_elem(m->fd, s->next, s->value) != 0) {
            int no = errno;
            if (no == ENOENT) { /* deleted between next_key and lookup */
                s->skipped_vanished++;
                continue;
            }
            s->done = 1;
            luaebpf_pusherror(L, "iterate", no, NULL, m->name, m->id, NULL);
            return lua_error(L);
        }
        s->yielded++;
        luaebpf_decode(L, m->kc, s->next);
        if (!s->with_values)
            return 1;
        luaebpf_decode_value(L, m, s->value);
        return 2;
    }
    lua_pushnil(L);
    return 1;
}

static int iter_new(lua_State *L, int with_values) {
    luaebpf_map *m = luaebpf_check_map(L, 1, with_values ? "pairs" : "keys");
    if (m->key_size == 0)
        return luaebpf_raise(L, with_values ? "pairs" : "keys", 524, m->name, m->id,
                             "this map has no keys to walk");
    size_t kb = ((size_t)m->key_size + 7) / 8 * 8;
    size_t head = (sizeof(iter_state) + 7) / 8 * 8;
    lua_pushvalue(L, 1); /* upvalue 1: the map */
    iter_state *s = luaebpf_newuserdata(L, head + 2 * kb + (with_values ? m->value_bytes : 0));
    memset(s, 0, sizeof *s);
    s->with_values = with_values;
    s->key_size = m->key_size;
    s->prev = (unsigned char *)s + head;
    s->next = s->prev + kb;
    s->value = s->next + kb;
    /* every key once, plus room for restarts; a walk longer than this is livelock */
    s->limit = 4 * (uint64_t)m->max_entries + 1024;
    if (luaebpf_type_is_array(m->type))
        lua_pushboolean(L, 0); /* array walks never restart */
    else
        lua_newtable(L);
    lua_pushcclosure(L, iter_step, 3);
    return 1;
}

/* for k, v in m:pairs() do ... end */
static int map_pairs(lua_State *L) {
    return iter_new(L, 1);
}

/* for k in m:keys() do ... end */
static int map_keys(lua_State *L) {
    return iter_new(L, 0);
}

void luaebpf_iter_open(lua_State *L) {
    static const luaL_Reg methods[] = {{"pairs", map_pairs}, {"keys", map_keys}, {NULL, NULL}};
    lua_getfield(L, -1, "Map"); /* module, methods */
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
}

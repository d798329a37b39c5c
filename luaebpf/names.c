/* names.c: the kernel's map type and map flag numbers and the names users
 * write for them (the names bpftool prints, lower case). Types and flags
 * newer than the uapi header we build against are listed by number, so a
 * newer kernel's maps still get their names. */
#include <string.h>
#include <linux/bpf.h>
#include "luaebpf.h"

static const char *const type_names[] = {
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash",
    "percpu_array", "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash",
    "lpm_trie", "array_of_maps", "hash_of_maps", "devmap", "sockmap", "cpumap",
    "xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray",
    "percpu_cgroup_storage", "queue", "stack", "sk_storage", "devmap_hash",
    "struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter",
    "user_ringbuf", "cgrp_storage", "arena",
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

const char *luaebpf_type_name(uint32_t type) {
    return type < NTYPES ? type_names[type] : NULL;
}

int luaebpf_type_number(const char *name) {
    for (uint32_t i = 1; i < NTYPES; i++)
        if (strcmp(name, type_names[i]) == 0)
            return (int)i;
    return -1;
}

int luaebpf_type_is_percpu(uint32_t type) {
    return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
           type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

/* types whose keys are the indexes 0..max_entries-1: get_next_key never restarts */
int luaebpf_type_is_array(uint32_t type) {
    return type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
           type == BPF_MAP_TYPE_PROG_ARRAY || type == BPF_MAP_TYPE_PERF_EVENT_ARRAY ||
           type == BPF_MAP_TYPE_CGROUP_ARRAY || type == BPF_MAP_TYPE_ARRAY_OF_MAPS;
}

/* maps of maps: user space writes an inner map's fd and reads back its id */
int luaebpf_type_holds_maps(uint32_t type) {
    return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS;
}

/* the hash family has its own BPF_MAP_LOOKUP_BATCH and lookup-and-delete batch */
int luaebpf_type_has_delete_batch(uint32_t type) {
    return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_PERCPU_HASH ||
           type == BPF_MAP_TYPE_LRU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
           type == BPF_MAP_TYPE_HASH_OF_MAPS;
}

/* ... and arrays use the generic lookup batch (5.6+), whose cursor is a key.
 * LPM tries have it too, but there a deleted cursor key restarts the walk at
 * the leftmost key, so the batch path could yield a key twice: they walk with
 * get_next_key, which skips keys seen before a restart. */
int luaebpf_type_has_batch(uint32_t type) {
    return luaebpf_type_has_delete_batch(type) || type == BPF_MAP_TYPE_ARRAY ||
           type == BPF_MAP_TYPE_PERCPU_ARRAY;
}

/* bit i of map_flags is flag_names[i] */
static const char *const flag_names[] = {
    "no_prealloc", "no_common_lru", "numa_node", "rdonly", "wronly", "stack_build_id",
    "zero_seed", "rdonly_prog", "wronly_prog", "clone", "mmapable", "preserve_elems",
    "inner_map", "link", "path_fd", "vtype_btf_obj_fd", "token_fd", "segv_on_fault",
    "no_user_conv",
};
#define NFLAGS (sizeof flag_names / sizeof flag_names[0])

void luaebpf_push_flags(lua_State *L, uint32_t flags) {
    lua_newtable(L);
    int n = 0;
    for (uint32_t i = 0; i < 32; i++) {
        if (!(flags & (1u << i)))
            continue;
        if (i < NFLAGS)
            lua_pushstring(L, flag_names[i]);
        else
            lua_pushfstring(L, "flag_%d", (int)i);
        lua_rawseti(L, -2, ++n);
    }
}

/* a list of flag names, or an integer of raw bits */
uint32_t luaebpf_check_flags(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer v;
        if (!luaebpf_tointeger_in(L, idx, 0, UINT32_MAX, &v))
            luaL_error(L, "%s: flag bits (an integer in 0..4294967295) expected, got %s", what,
                       luaL_tolstring(L, idx, NULL));
        return (uint32_t)v;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: a list of flag names expected, got %s", what, luaL_typename(L, idx));
    uint32_t flags = 0;
    size_t n = lua_rawlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        uint32_t bit = NFLAGS;
        for (uint32_t b = 0; name && b < NFLAGS; b++)
            if (strcmp(name, flag_names[b]) == 0)
                bit = b;
        if (bit == NFLAGS)
            luaL_error(L, "%s: unknown flag %s%s%s (expected a name such as \"no_prealloc\", "
                       "\"mmapable\", \"rdonly_prog\")", what, name ? "'" : "",
                       name ? name : luaL_typename(L, -1), name ? "'" : "");
        flags |= 1u << bit;
        lua_pop(L, 1);
    }
    return flags;
}

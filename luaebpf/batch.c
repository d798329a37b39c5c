/* batch.c: writing many entries in one call. Owns m:update_batch(keys,
 * values [, flag]) and m:delete_batch(keys): BPF_MAP_UPDATE_BATCH and
 * BPF_MAP_DELETE_BATCH, with single calls where the map type has no batch
 * operation.
 *
 * Every key and value is encoded before the first syscall, so bad input
 * writes nothing. The kernel's batch loop stops at the first entry it cannot
 * write and reports in `count` how many it wrote before it; a batch refused
 * up front (ENOTSUPP, EPERM on a frozen map, a bad flag) leaves `count` as
 * passed in, which a loop that stopped part way can never do: that tells
 * "none written" from "n written". */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

/* the element count of the array argument arg (a table) */
static size_t check_array(lua_State *L, int arg, const char *what) {
    if (!lua_istable(L, arg))
        luaL_argerror(L, arg, lua_pushfstring(L, "an array of %s expected, got %s", what,
                                              luaL_typename(L, arg)));
    return (size_t)lua_rawlen(L, arg);
}

/* the entries' buffers: n keys, then n values, zeroed (per-CPU padding is
 * stored as given); one userdata pushed before anything is encoded */
static unsigned char *batch_buffer(lua_State *L, const luaebpf_map *m, size_t n, int values) {
    size_t per = m->shape.key_size + (values ? m->shape.value_bytes : 0);
    if (n > UINT32_MAX || (per && n > (size_t)-1 / 2 / per)) /* the kernel counts in a u32 */
        luaL_error(L, "a batch of %s entries is too large: the kernel takes at most 4294967295 "
                   "in one call", LUAEBPF_UTEXT(n));
    size_t size = n * per;
    unsigned char *buf = lua_newuserdata(L, size ? size : 1);
    memset(buf, 0, size);
    return buf;
}

/* "keys[12]": the name an encoding error gives an element. Made for every
 * element, so it counts in place (a carry now and then) instead of
 * formatting: snprintf cost a third of encoding an integer pair. */
typedef struct element_name {
    char text[48];  /* "keys[", the digits, "]" */
    size_t digits;  /* where the digits start */
    size_t len;     /* of text, "]" included */
} element_name;

static void name_start(element_name *e, const char *array) {
    size_t n = strlen(array);
    memcpy(e->text, array, n);
    memcpy(e->text + n, "[0]", 4);
    e->digits = n + 1;
    e->len = n + 3;
}

/* the next index: "keys[9]" -> "keys[10]" */
static const char *name_next(element_name *e) {
    size_t i = e->len - 2; /* the last digit */
    for (;;) {
        if (e->text[i] != '9') {
            e->text[i]++;
            return e->text;
        }
        e->text[i] = '0';
        if (i == e->digits)
            break;
        i--;
    }
    /* all nines: one more digit, "1" then the zeros */
    memmove(e->text + e->digits + 1, e->text + e->digits, e->len - e->digits + 1);
    e->text[e->digits] = '1';
    e->len++;
    return e->text;
}

/* The common batch, integers under a plain u32/u64/i32/i64 codec, written
 * without the general encoder: its checks and dispatch were most of the cost
 * of a batch under LuaJIT (callgrind: about 190 of 390 instructions an
 * entry). 1 when the value at idx was an integer in range and is stored;
 * 0 for anything else, which the general encoder then takes (and refuses
 * with its message when it does not fit). The ranges are encode.c's: u64
 * takes negative integers too, as their two's complement. */
static inline int encode_int_fast(lua_State *L, const luaebpf_codec *c, int idx,
                                  unsigned char *p) {
    if (!c)
        return 0;
    const luaebpf_node *n = &c->nodes[0];
    if ((n->kind != LUAEBPF_UINT && n->kind != LUAEBPF_INT) || (n->size != 4 && n->size != 8) ||
        lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    int64_t v;
    if (!luaebpf_number_exact(L, idx, &v))
        return 0;
    if (n->size == 8) {
        memcpy(p, &v, 8);
        return 1;
    }
    if (n->kind == LUAEBPF_UINT ? (v < 0 || v > (int64_t)UINT32_MAX)
                                : (v < INT32_MIN || v > INT32_MAX))
        return 0;
    uint32_t u = (uint32_t)v;
    memcpy(p, &u, 4);
    return 1;
}

/* encodes keys[1..n] (the table at 2) packed at key_size */
static void encode_keys(lua_State *L, const luaebpf_map *m, size_t n, unsigned char *keys) {
    element_name name;
    name_start(&name, "keys");
    for (size_t i = 0; i < n; i++) {
        const char *what = name_next(&name);
        unsigned char *k = keys + i * m->shape.key_size;
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        if (!encode_int_fast(L, m->shape.kc, -1, k))
            luaebpf_encode(L, m->shape.kc, -1, k, what, 2);
        lua_pop(L, 1);
    }
}

/* the open Map on top, the inner map given as element `what` (a userdata) */
static luaebpf_map *check_inner(lua_State *L, const char *what) {
    luaebpf_map *inner = luaL_testudata(L, -1, LUAEBPF_MAP);
    if (!inner) {
        const char *tn = "userdata";
        if (luaL_getmetafield(L, -1, "__name") && lua_type(L, -1) == LUA_TSTRING)
            tn = lua_tostring(L, -1);
        luaL_error(L, "update_batch: %s: a Map (the inner map) expected, got %s", what, tn);
    }
    if (inner->fd < 0)
        luaebpf_raise_closed(L, "update_batch", inner->name, inner->id,
                             lua_pushfstring(L, "%s: the inner map handle was closed", what));
    return inner;
}

/* encodes values[1..n] (the table at 3) packed at value_bytes; on a map of
 * maps a Map goes in as its fd */
static void encode_values(lua_State *L, const luaebpf_map *m, size_t n, unsigned char *values) {
    int of_maps = luaebpf_type_holds_maps(m->shape.type);
    element_name name;
    name_start(&name, "values");
    for (size_t i = 0; i < n; i++) {
        const char *what = name_next(&name);
        unsigned char *v = values + i * m->shape.value_bytes;
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        if (of_maps && lua_type(L, -1) == LUA_TUSERDATA) {
            uint32_t fd = (uint32_t)check_inner(L, what)->fd;
            memcpy(v, &fd, sizeof fd);
        } else if (m->shape.percpu) {
            luaebpf_encode_percpu_named(L, &m->shape, -1, v, what, 3);
        } else if (!encode_int_fast(L, m->shape.vc, -1, v)) {
            luaebpf_encode(L, m->shape.vc, -1, v, what, 3);
        }
        lua_pop(L, 1);
    }
}

/* a Map value closed while later values were encoded (a finalizer may run on
 * any allocation) would leave a stale fd number in the buffer: refused; one
 * the finalizer replaced by another open Map goes in as that one */
static void recheck_inner(lua_State *L, const luaebpf_map *m, size_t n, unsigned char *values) {
    if (!luaebpf_type_holds_maps(m->shape.type))
        return;
    element_name name;
    name_start(&name, "values");
    for (size_t i = 0; i < n; i++) {
        const char *what = name_next(&name);
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        /* testudata: a finalizer may even have put another userdata there */
        luaebpf_map *inner = luaL_testudata(L, -1, LUAEBPF_MAP);
        uint32_t fd;
        memcpy(&fd, values + i * m->shape.value_bytes, sizeof fd);
        if (inner && (uint32_t)inner->fd != fd) { /* closed, or another Map put there */
            fd = (uint32_t)check_inner(L, what)->fd; /* raises "closed" */
            memcpy(values + i * m->shape.value_bytes, &fd, sizeof fd);
        }
        lua_pop(L, 1);
    }
}

/* pushes nil and the error of a batch that wrote `done` entries before it
 * stopped; the error's field done says so; returns 2 */
static int batch_fail(lua_State *L, const luaebpf_map *m, const char *op, const char *single,
                      int no, const char *flag, size_t done) {
    const char *detail = luaebpf_elem_hint(m, single, no, flag);
    if (!detail && no == ENOENT && strcmp(single, "delete") == 0)
        detail = lua_pushfstring(L, "keys[%s] is absent", LUAEBPF_UTEXT(done + 1));
    lua_pushnil(L);
    luaebpf_pusherror(L, op, no, no == EBADF ? "invalid" : NULL, m->name, m->id, detail);
    lua_pushinteger(L, (lua_Integer)done);
    lua_setfield(L, -2, "done");
    return 2;
}

static uint64_t check_flag(lua_State *L, int idx, const char **name) {
    static const char *const names[] = {"any", "noexist", "exist", "lock", NULL};
    static const uint64_t flags[] = {BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK};
    int i = luaebpf_check_name(L, idx, names, 0);
    *name = lua_isnoneornil(L, idx) ? NULL : names[i];
    return flags[i];
}

/* m:update_batch(keys, values [, flag]) -> n | nil, err (err.done) */
static int map_update_batch(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "update_batch");
    const char *flag;
    uint64_t flags = check_flag(L, 4, &flag) | luaebpf_shape_lock(&m->shape);
    if (m->shape.key_size == 0)
        return luaL_error(L, "update_batch: this map has no keys; push values one at a time "
                          "with update(nil, value)");
    size_t n = check_array(L, 2, "keys"), nv = check_array(L, 3, "values");
    if (n != nv)
        return luaL_error(L, "update_batch: keys and values must have the same length, got %s "
                          "keys and %s values", LUAEBPF_UTEXT(n), LUAEBPF_UTEXT(nv));
    lua_settop(L, 4);
    if (n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    unsigned char *keys = batch_buffer(L, m, n, 1);
    unsigned char *values = keys + n * m->shape.key_size;
    encode_keys(L, m, n, keys);
    encode_values(L, m, n, values);
    recheck_inner(L, m, n, values);
    if (m->fd < 0) /* closed by a finalizer that ran meanwhile */
        luaebpf_check_map(L, 1, "update_batch");
    LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = flags);
    uint32_t count = (uint32_t)n;
    if (bpf_map_update_batch(m->fd, keys, values, &count, &o) == 0) {
        lua_pushinteger(L, count);
        return 1;
    }
    int no = errno;
    if (count != (uint32_t)n) /* stopped part way */
        return batch_fail(L, m, "update_batch", "update", no, flag, count);
    /* the kernel's batch takes no "exist"/"noexist" (EINVAL up front): single
     * calls honour them */
    int flag_refused = no == EINVAL && (flags & (BPF_EXIST | BPF_NOEXIST));
    if (!luaebpf_errno_unsupported(no) && !flag_refused)
        return batch_fail(L, m, "update_batch", "update", no, flag, 0);
    for (size_t i = 0; i < n; i++) { /* the type has no batch: one call each */
        if (bpf_map_update_elem(m->fd, keys + i * m->shape.key_size,
                                values + i * m->shape.value_bytes, flags) != 0)
            return batch_fail(L, m, "update_batch", "update", errno, flag, i);
    }
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* m:delete_batch(keys) -> n | nil, err (err.done); an absent key stops it (ENOENT) */
static int map_delete_batch(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "delete_batch");
    if (m->shape.key_size == 0)
        return luaL_error(L, "delete_batch: this map has no keys");
    size_t n = check_array(L, 2, "keys");
    lua_settop(L, 2);
    if (n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    unsigned char *keys = batch_buffer(L, m, n, 0);
    encode_keys(L, m, n, keys);
    if (m->fd < 0)
        luaebpf_check_map(L, 1, "delete_batch");
    LIBBPF_OPTS(bpf_map_batch_opts, o);
    uint32_t count = (uint32_t)n;
    if (bpf_map_delete_batch(m->fd, keys, &count, &o) == 0) {
        lua_pushinteger(L, count);
        return 1;
    }
    int no = errno;
    if (count != (uint32_t)n)
        return batch_fail(L, m, "delete_batch", "delete", no, NULL, count);
    if (!luaebpf_errno_unsupported(no))
        return batch_fail(L, m, "delete_batch", "delete", no, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        if (bpf_map_delete_elem(m->fd, keys + i * m->shape.key_size) != 0)
            return batch_fail(L, m, "delete_batch", "delete", errno, NULL, i);
    }
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

void luaebpf_batch_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"update_batch", map_update_batch}, {"delete_batch", map_delete_batch}, {NULL, NULL}};
    lua_getfield(L, -1, "Map"); /* module, methods */
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
}

/* iter.c: walking a whole map. Owns m:pairs(), m:keys(), m:dump(), m:drain(),
 * m:read_batch() and m:last_read().
 *
 * Two engines. The batch engine uses BPF_MAP_LOOKUP_BATCH (and its
 * lookup-and-delete twin for drain): buffers for `cap` entries, grown when the
 * kernel says ENOSPC (a hash bucket larger than the batch), the cursor opaque
 * and only ever one the kernel produced. The next_key engine is the fallback
 * for types without batches (or opts.batch = false): the kernel restarts a
 * hash walk from the first key when the key it is given was deleted meanwhile,
 * so it remembers the keys it yielded (types that can delete) and skips them;
 * it is bounded, and an entry whose lookup says ENOENT is skipped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

#include "valgrind.h"

#define BATCH_BYTES (1u << 20) /* default batch: about 1 MiB of keys and values */
#define BATCH_MAX_DEFAULT 4096

enum { WALK_BATCH, WALK_NEXT_KEY };

typedef struct walk {
    int mode, del, with_values, started, done;
    uint32_t cap, count, pos; /* batch: capacity, entries fetched, next to yield */
    size_t key_size, cursor_size, value_bytes;
    unsigned char *keys, *values; /* cap entries each; next_key uses one of each */
    unsigned char *in, *out;      /* batch cursors; next_key: previous and next key */
    uint64_t steps, limit;        /* next_key: get_next_key calls; max_entries + 64 */
    uint64_t restarts;            /* next_key: this walk's restarts (m->last is shared) */
    int last_was_new;
    int reduce;                   /* opts.percpu: LUAEBPF_PERCPU_*, 0: none (percpu.c) */
    /* pairs/keys: the map, held by the step's upvalue 2, and whether upvalue 3
     * is the yielded-keys table; so a step makes one Lua API call to find all */
    luaebpf_map *map;
    int has_seen;
} walk;

/* ------------------------------------------------------------ buffers */

/* frees the buffers and ends the walk: a step after this yields nothing */
static void walk_free(walk *w) {
    free(w->keys);
    free(w->values);
    free(w->in);
    w->keys = w->values = w->in = w->out = NULL;
    w->cap = w->count = w->pos = 0;
    w->done = 1;
}

static int walk_gc(lua_State *L) { /* __gc and __close */
    walk_free(luaL_checkudata(L, 1, LUAEBPF_WALK));
    return 0;
}

/* (re)size the entry buffers to cap entries; 0 or ENOMEM. Contents are lost. */
static int walk_alloc(walk *w, uint32_t cap) {
    unsigned char *k = malloc((size_t)cap * (w->key_size ? w->key_size : 1));
    unsigned char *v = malloc((size_t)cap * (w->value_bytes ? w->value_bytes : 1));
    if (!k || !v) {
        free(k);
        free(v);
        return ENOMEM;
    }
    free(w->keys);
    free(w->values);
    w->keys = k;
    w->values = v;
    w->cap = cap;
    return 0;
}

static uint32_t default_batch(const luaebpf_map *m) {
    size_t per = (size_t)m->shape.key_size + m->shape.value_bytes;
    size_t n = BATCH_BYTES / (per ? per : 1);
    if (n > BATCH_MAX_DEFAULT)
        n = BATCH_MAX_DEFAULT;
    if (n < 16)
        n = 16;
    if (m->max_entries && n > m->max_entries)
        n = m->max_entries;
    return (uint32_t)n;
}

/* pushes a new walk userdata; raises on allocation failure */
static walk *walk_push(lua_State *L, luaebpf_map *m, int with_values, int del, int use_batch,
                       uint32_t n) {
    walk *w = luaebpf_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    luaL_setmetatable(L, LUAEBPF_WALK);
    w->with_values = with_values;
    w->del = del;
    w->key_size = m->shape.key_size;
    w->value_bytes = m->shape.value_bytes;
    /* a hash cursor is a 4-byte bucket number whatever the key size; generic, a key */
    w->cursor_size = (m->shape.key_size > 4 ? m->shape.key_size : 4);
    w->cursor_size = (w->cursor_size + 7) / 8 * 8;
    w->mode = use_batch ? WALK_BATCH : WALK_NEXT_KEY;
    /* keys between two restarts: at most max_entries, which some types leave 0 */
    w->limit = (m->max_entries ? (uint64_t)m->max_entries : (uint64_t)UINT32_MAX) + 64;
    w->in = calloc(2, w->cursor_size);
    int no = w->in ? walk_alloc(w, w->mode == WALK_BATCH ? n : 1) : ENOMEM;
    if (no) {
        luaebpf_pusherror(L, "iterate", no, NULL, m->name, m->id,
                          lua_pushfstring(L, "cannot allocate a batch of %s entries",
                                          LUAEBPF_UTEXT(n)));
        lua_error(L);
    }
    w->out = w->in + w->cursor_size;
    luaebpf_gc_hint(L, (size_t)w->cap * (w->key_size + w->value_bytes));
    memset(&m->last, 0, sizeof m->last);
    m->last.batch_size = w->mode == WALK_BATCH ? n : 0;
    m->last.fallback = w->mode == WALK_NEXT_KEY;
    return w;
}

static int raise_walk(lua_State *L, luaebpf_map *m, walk *w, const char *op, int no,
                      const char *detail) {
    w->done = 1;
    if (!detail) /* the words a single-element call would have for it */
        detail = luaebpf_elem_hint(m, op, no, NULL);
    luaebpf_pusherror(L, op, no, NULL, m->name, m->id, detail);
    return lua_error(L);
}

/* ------------------------------------------------------- batch engine */

static int is_unsupported(int no) {
    return luaebpf_errno_unsupported(no) || no == EINVAL;
}

/* one batch call into w->keys/values. Returns the entries fetched (0 with
 * w->done at the end). ENOSPC doubles the batch and retries from the same
 * cursor; an unsupported first call switches the walk to next_key (-1). */
static int batch_fetch(lua_State *L, luaebpf_map *m, walk *w, const char *op) {
    for (;;) {
        uint32_t count = w->cap;
        /* a spin-locked value is copied under its lock */
        LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = luaebpf_shape_lock(&m->shape));
        int r;
        LUAEBPF_RETRY(r, (count = w->cap, w->del
                          ? bpf_map_lookup_and_delete_batch(m->fd, w->started ? w->in : NULL,
                                                            w->out, w->keys, w->values, &count, &o)
                          : bpf_map_lookup_batch(m->fd, w->started ? w->in : NULL, w->out,
                                                 w->keys, w->values, &count, &o)), r == 0);
        int no = r ? errno : 0;
        if (no == ENOSPC) { /* one bucket holds more than cap: grow, same in_batch */
            if (w->cap >= UINT32_MAX / 2 || walk_alloc(w, w->cap * 2) != 0)
                return raise_walk(L, m, w, op, ENOMEM, "cannot grow the batch buffers");
            m->last.grows++;
            m->last.batch_size = w->cap;
            continue;
        }
        if (no && no != ENOENT) {
            if (!w->started && !w->del && is_unsupported(no))
                return -1;
            return raise_walk(L, m, w, op, no, NULL);
        }
        /* count is meaningful after success and ENOENT only */
        VALGRIND_MAKE_MEM_DEFINED(w->keys, (size_t)count * w->key_size);
        VALGRIND_MAKE_MEM_DEFINED(w->values, (size_t)count * w->value_bytes);
        VALGRIND_MAKE_MEM_DEFINED(w->out, w->cursor_size);
        m->last.batches++;
        w->started = 1;
        memcpy(w->in, w->out, w->cursor_size);
        if (no == ENOENT)
            w->done = 1; /* the end, possibly with a last few entries */
        w->count = count;
        w->pos = 0;
        if (count > 0 || w->done)
            return (int)count;
        /* success with nothing in it is not the end: ask again */
    }
}

/* switch a fresh walk to next_key (the type has no batch operations) */
static void to_next_key(luaebpf_map *m, walk *w) {
    w->mode = WALK_NEXT_KEY;
    w->started = 0;
    m->last.fallback = 1;
    m->last.batch_size = 0;
}

/* ---------------------------------------------------- next_key engine */

/* After a restart, keys already yielded come round again: 1 when the key in
 * w->out is one (counted, and a restart when it follows a new key); else 0,
 * and the key is recorded in the table at seen. */
static int already_yielded(lua_State *L, luaebpf_map *m, walk *w, int seen) {
    lua_pushlstring(L, (const char *)w->out, w->key_size);
    lua_pushvalue(L, -1);
    lua_rawget(L, seen);
    if (lua_toboolean(L, -1)) {
        lua_pop(L, 2);
        m->last.repeats++;
        if (w->last_was_new) {
            w->restarts++;
            m->last.restarts++;
        }
        w->last_was_new = 0;
        return 1;
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    return 0;
}

/* the next entry into w->out (key) and w->values (value); 0 at the end.
 * seen: stack index of the yielded-keys table, or 0 when the type never
 * restarts a walk */
static int next_key_step(lua_State *L, luaebpf_map *m, walk *w, int seen, const char *op) {
    while (!w->done) {
        /* between two restarts a walk visits at most max_entries keys, so the
         * steps are bounded by the restarts, and the restarts by the map size */
        if (++w->steps > (w->restarts + 2) * (w->limit + 1) || w->restarts > 2 * w->limit)
            return raise_walk(L, m, w, op, EAGAIN,
                              "the walk restarted too often under concurrent deletes");
        int r;
        LUAEBPF_RETRY(r, bpf_map_get_next_key(m->fd, w->started ? w->in : NULL, w->out), r == 0);
        if (r != 0) {
            int no = errno;
            if (no == ENOENT) {
                w->done = 1; /* past the last key */
                break;
            }
            return raise_walk(L, m, w, op, no, NULL);
        }
        VALGRIND_MAKE_MEM_DEFINED(w->out, w->key_size);
        w->started = 1;
        memcpy(w->in, w->out, w->key_size);
        if (seen && already_yielded(L, m, w, seen))
            continue;
        w->last_was_new = 1;
        if (w->with_values) {
            LUAEBPF_RETRY(r, w->del ? bpf_map_lookup_and_delete_elem_flags(m->fd, w->out, w->values,
                                          luaebpf_shape_lock(&m->shape))
                                    : bpf_map_lookup_elem_flags(m->fd, w->out, w->values,
                                                                luaebpf_shape_lock(&m->shape)),
                          r == 0);
            if (r != 0) {
                int no = errno;
                if (no == ENOENT) { /* deleted between next_key and lookup */
                    m->last.vanished++;
                    continue;
                }
                return raise_walk(L, m, w, op, no, NULL);
            }
            VALGRIND_MAKE_MEM_DEFINED(w->values, w->value_bytes); /* per-CPU: all strides */
        }
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ walking */

/* the next entry of the batch in hand (the caller saw w->pos < w->count) */
static inline void batch_take(luaebpf_map *m, walk *w, const unsigned char **k,
                              const unsigned char **v) {
    *k = w->keys + (size_t)w->pos * w->key_size;
    *v = w->values + (size_t)w->pos * w->value_bytes;
    w->pos++;
    m->last.entries++;
}

/* the next entry; pointers to its key and value bytes; 0 at the end */
static int walk_next(lua_State *L, luaebpf_map *m, walk *w, int seen, const char *op,
                     const unsigned char **k, const unsigned char **v) {
    if (w->mode == WALK_BATCH) {
        while (w->pos >= w->count) {
            if (w->done)
                return 0;
            if (batch_fetch(L, m, w, op) < 0) {
                to_next_key(m, w);
                return walk_next(L, m, w, seen, op, k, v);
            }
        }
        batch_take(m, w, k, v);
        return 1;
    }
    if (!next_key_step(L, m, w, seen, op))
        return 0;
    *k = w->out;
    *v = w->values;
    m->last.entries++;
    return 1;
}

/* options of pairs/keys/dump/drain: { batch = bool, n = entries per batch,
 * percpu = "sum" | "min" | "max" (not keys: it reads no values) } */
static void walk_options(lua_State *L, int idx, luaebpf_map *m, int del, int *use_batch,
                         uint32_t *n, int *reduce, const char *op) {
    static const char *const known[] = {"batch", "n", "percpu", NULL};
    static const char *const known_keys[] = {"batch", "n", NULL};
    *use_batch = del ? luaebpf_type_has_delete_batch(m->shape.type)
                     : luaebpf_type_has_batch(m->shape.type);
    *n = default_batch(m);
    if (reduce)
        *reduce = 0;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    luaebpf_check_options(L, idx, "iteration options", reduce ? known : known_keys);
    if (reduce) {
        lua_getfield(L, idx, "percpu");
        if (!lua_isnil(L, -1))
            *reduce = luaebpf_percpu_reduction(L, -1, &m->shape, op);
        lua_pop(L, 1);
    }
    lua_getfield(L, idx, "batch");
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1))
            luaL_error(L, "bad option 'batch': a boolean expected, got %s", luaL_typename(L, -1));
        if (!lua_toboolean(L, -1))
            *use_batch = 0;
    }
    lua_getfield(L, idx, "n");
    if (!lua_isnil(L, -1)) {
        lua_Integer v;
        if (!luaebpf_tointeger_in(L, -1, 1, 1 << 24, &v))
            luaL_error(L, "bad option 'n': an integer in 1..16777216 expected, got %s",
                       lua_type(L, -1) == LUA_TNUMBER ? luaL_tolstring(L, -1, NULL)
                                                      : luaL_typename(L, -1));
        *n = (uint32_t)v;
    }
    lua_pop(L, 2);
}

static void check_walkable(lua_State *L, luaebpf_map *m, const char *op) {
    if (m->shape.key_size == 0)
        luaebpf_raise(L, op, LUAEBPF_ENOTSUPP, m->name, m->id, "this map has no keys to walk");
}

/* pushes the value of an entry whose decoded key is at key_idx (named in the
 * error if the value does not fit Lua), per-CPU reduced when reduce says so:
 * folded in place, in the walk's own buffer, which no one reads again */
static void decode_value(lua_State *L, luaebpf_map *m, int reduce, const unsigned char *v,
                         int key_idx) {
    if (reduce)
        luaebpf_percpu_push(L, &m->shape, reduce, (unsigned char *)v, key_idx);
    else
        luaebpf_decode_entry_value(L, &m->shape, v, key_idx);
}

/* pushes an entry's key, and its value when with_values: a plain integer of
 * 4 or 8 bytes (u32 keys, u64 counters) by the inline fast path, straight
 * from the batch's bytes; anything else by the full decoders */
static inline __attribute__((always_inline)) void decode_entry(lua_State *L, luaebpf_map *m,
                                                               int with_values, int reduce,
                                                               const unsigned char *k,
                                                               const unsigned char *v) {
    if (!luaebpf_decode_fast(L, m->shape.kc, k))
        luaebpf_decode_key(L, &m->shape, k);
    if (!with_values)
        return;
    if (reduce || m->shape.percpu || !luaebpf_decode_fast(L, m->shape.vc, v))
        decode_value(L, m, reduce, v, lua_gettop(L)); /* the key on top names the entry */
}

/* upvalues: 1 walk, 2 map, 3 yielded-keys table (or false). The walk knows
 * the map (a Map by construction, kept alive by upvalue 2): only whether it
 * was closed needs checking. */
static int pairs_step(lua_State *L) {
    walk *w = lua_touserdata(L, lua_upvalueindex(1));
    luaebpf_map *m = w->map;
    if (m->fd < 0)
        m = luaebpf_check_map(L, lua_upvalueindex(2), "iterate"); /* raises "closed" */
    int seen = w->has_seen ? lua_upvalueindex(3) : 0;
    const unsigned char *k, *v;
    if (w->mode == WALK_BATCH && w->pos < w->count) /* the common step: the next of a batch */
        batch_take(m, w, &k, &v);
    else if (!walk_next(L, m, w, seen, "iterate", &k, &v)) {
        walk_free(w); /* the loop is over: give the batch memory back now */
        lua_pushnil(L);
        return 1;
    }
    decode_entry(L, m, w->with_values, w->reduce, k, v);
    return 1 + w->with_values;
}

static int iterate(lua_State *L, int with_values) {
    const char *op = with_values ? "pairs" : "keys";
    luaebpf_map *m = luaebpf_check_map_data(L, 1, op);
    check_walkable(L, m, op);
    int use_batch, reduce;
    uint32_t n;
    walk_options(L, 2, m, 0, &use_batch, &n, with_values ? &reduce : NULL, op);
    lua_settop(L, 1);                           /* map */
    walk *w = walk_push(L, m, with_values, 0, use_batch, n); /* map, walk */
    w->reduce = with_values ? reduce : 0;
    w->map = m;
    lua_pushvalue(L, 1);                        /* map, walk, map */
    w->has_seen = !luaebpf_type_is_array(m->shape.type);
    if (w->has_seen)
        lua_newtable(L);                        /* map, walk, map, seen */
    else
        lua_pushboolean(L, 0);                  /* array walks never restart */
    lua_pushcclosure(L, pairs_step, 3);         /* step */
    lua_pushnil(L);
    lua_pushnil(L);
    if (!LUAEBPF_FOR_CLOSES)
        return 3;
    /* a fourth for-loop value: `break` closes it and frees the batch at once */
    lua_getupvalue(L, -3, 1);
    return 4;
}

/* for k, v in m:pairs([opts]) do ... end */
static int map_pairs(lua_State *L) {
    return iterate(L, 1);
}

/* for k in m:keys([opts]) do ... end */
static int map_keys(lua_State *L) {
    return iterate(L, 0);
}

/* decodes one entry into position i of the key and value arrays at keys, keys + 1 */
static inline __attribute__((always_inline)) void append_entry(lua_State *L, luaebpf_map *m,
                                                               int reduce, int keys,
                                                               lua_Integer i,
                                                               const unsigned char *k,
                                                               const unsigned char *v) {
    decode_entry(L, m, 1, reduce, k, v);
    lua_rawseti(L, keys + 1, i);
    lua_rawseti(L, keys, i);
}

/* How many entries a dump or drain will yield, as well as can be known
 * before reading them all: the result arrays are made that large at once, so
 * they are written once, with no doubling that copies and first-touches each
 * element about twice over. A hint only: a wrong one costs time, never
 * entries. An array holds max_entries. A hash is read one batch ahead: a map
 * that fits in it gives the exact count; otherwise the batch cursor, which
 * for the hash family is the next bucket's index, tells the fraction of the
 * roundup_pow_of_two(max_entries) buckets read so far, and the count scales
 * by it (buckets hold about the same number of entries). */
#define HINT_SMALL 4096 /* a next_key walk of a map this small: max_entries */
#define HINT_MAX (1 << 26) /* beyond, the arrays grow as Lua grows them (LuaJIT's limit: 2^27) */
static int collect_hint(lua_State *L, luaebpf_map *m, walk *w, const char *op) {
    uint64_t max = m->max_entries, hint = 0;
    if (luaebpf_type_is_array(m->shape.type) && luaebpf_type_has_batch(m->shape.type))
        hint = max; /* array, percpu_array: every index is an entry (not so a prog_array's) */
    else if (w->mode == WALK_BATCH && batch_fetch(L, m, w, op) < 0)
        to_next_key(m, w); /* no batches after all: the next_key case below */
    else if (w->mode == WALK_BATCH && w->done)
        hint = w->count;   /* the whole map came in the first batch */
    else if (w->mode == WALK_BATCH) {
        uint32_t next;
        uint64_t buckets = 1;
        memcpy(&next, w->in, sizeof next);
        while (buckets < max)
            buckets <<= 1;
        hint = next > 0 && next <= buckets ? (uint64_t)w->count * buckets / next : w->count;
        /* over by about three standard deviations of the batch's count (a
         * sample of about 4096 entries: 1.6% each), since falling short by
         * one entry costs Lua a rehash that copies the whole array */
        hint += hint / 16;
    }
    if (w->mode == WALK_NEXT_KEY && !hint && max <= HINT_SMALL)
        hint = max;
    if (max && hint > max)
        hint = max;
    return hint > HINT_MAX ? HINT_MAX : (int)hint;
}

/* m:dump([opts]) / m:drain([opts]) -> keys, values (parallel arrays) */
static int collect(lua_State *L, int del) {
    const char *op = del ? "drain" : "dump";
    luaebpf_map *m = luaebpf_check_map_data(L, 1, op);
    check_walkable(L, m, op);
    if (del && m->access == BPF_F_RDONLY)
        return luaebpf_raise(L, op, EPERM, m->name, m->id,
                             "opened read-only; open with access = \"rw\" to drain");
    int use_batch, reduce;
    uint32_t n;
    walk_options(L, 2, m, del, &use_batch, &n, &reduce, op);
    lua_settop(L, 1);
    walk *w = walk_push(L, m, 1, del, use_batch, n); /* 2 */
    if (luaebpf_type_is_array(m->shape.type))
        lua_pushboolean(L, 0);
    else
        lua_newtable(L);                              /* 3: seen */
    int seen = lua_istable(L, 3) ? 3 : 0;
    int hint = collect_hint(L, m, w, op);
    lua_createtable(L, hint, 0);                      /* 4: keys */
    lua_createtable(L, hint, 0);                      /* 5: values */
    lua_Integer i = 0;
    const unsigned char *k, *v;
    while (walk_next(L, m, w, seen, op, &k, &v)) {
        append_entry(L, m, reduce, 4, ++i, k, v);
        while (w->mode == WALK_BATCH && w->pos < w->count) { /* the rest of the batch */
            batch_take(m, w, &k, &v);
            append_entry(L, m, reduce, 4, ++i, k, v);
        }
    }
    walk_free(w);
    return 2;
}

static int map_dump(lua_State *L) {
    return collect(L, 0);
}

static int map_drain(lua_State *L) {
    return collect(L, 1);
}

/* ------------------------------------------------------- read_batch */

/* A cursor is a userdata only this file makes: the kernel's opaque position
 * plus the walk state, tied to the map handle that made it (user value). */
typedef struct cursor {
    walk w;
} cursor;

static int cursor_gc(lua_State *L) {
    cursor *c = luaL_checkudata(L, 1, LUAEBPF_CURSOR);
    walk_free(&c->w);
    return 0;
}

/* read_batch's n (argument 3), or the map's default batch */
static lua_Integer read_batch_size(lua_State *L, const luaebpf_map *m) {
    lua_Integer n = default_batch(m);
    if (lua_isnoneornil(L, 3))
        return n;
    if (!luaebpf_tointeger_in(L, 3, 1, (lua_Integer)1 << 53, &n))
        luaL_argerror(L, 3, lua_pushfstring(L, "a batch size (integer >= 1) expected, got %s",
                      lua_type(L, 3) == LUA_TNUMBER ? luaL_tolstring(L, 3, NULL)
                                                    : luaL_typename(L, 3)));
    if (n > (1 << 24))
        luaL_argerror(L, 3, "a batch size of at most 16777216 expected");
    return n;
}

/* pushes a new cursor for a walk of the map at 1; its user value holds the
 * map and the yielded keys (next_key), and it owns the walk's buffers */
static cursor *cursor_new(lua_State *L, luaebpf_map *m, lua_Integer n) {
    cursor *c = luaebpf_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LUAEBPF_CURSOR);
    lua_createtable(L, 2, 0);               /* cursor, uv */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);                  /* [1] = the map */
    if (luaebpf_type_is_array(m->shape.type))
        lua_pushboolean(L, 0);
    else
        lua_newtable(L);
    lua_rawseti(L, -2, 2);                  /* [2] = yielded keys, for next_key */
    luaebpf_setuservalue(L, -2);
    walk *w = walk_push(L, m, 1, 0, luaebpf_type_has_batch(m->shape.type), (uint32_t)n);
    c->w = *w;                              /* the cursor owns the buffers now */
    memset(w, 0, sizeof *w);
    lua_pop(L, 1);
    return c;
}

/* the cursor at 2, pushed again: it must come from read_batch on the map at
 * 1, with its walk not over */
static cursor *cursor_resume(lua_State *L) {
    cursor *c = luaL_testudata(L, 2, LUAEBPF_CURSOR);
    if (!c)
        luaL_argerror(L, 2, lua_pushfstring(L, "a cursor from read_batch expected, got %s",
                                            luaL_typename(L, 2)));
    luaebpf_getuservalue(L, 2);
    lua_rawgeti(L, -1, 1);
    int mine = lua_rawequal(L, -1, 1);
    lua_pop(L, 2);
    if (!mine)
        luaL_argerror(L, 2, "this cursor belongs to another map handle");
    if (c->w.done || (!c->w.keys && c->w.mode == WALK_BATCH))
        luaL_argerror(L, 2, "this cursor's walk is over (it returned no cursor)");
    lua_pushvalue(L, 2);
    return c;
}

/* one slice of up to n entries into two new arrays it pushes: one batch call
 * (the arrays made as large as the kernel's answer), or n next_key steps
 * (also after a batch call found no batch support) */
static void read_slice(lua_State *L, luaebpf_map *m, walk *w, lua_Integer n, int seen,
                       int reduce) {
    lua_Integer i = 0;
    int got = -1;
    memset(&m->last, 0, sizeof m->last);
    if (w->mode == WALK_BATCH) {
        uint32_t want = (uint32_t)n;
        if (w->cap != want && walk_alloc(w, want))
            luaebpf_raise(L, "read_batch", ENOMEM, m->name, m->id, "cannot allocate the batch");
        got = batch_fetch(L, m, w, "read_batch");
        if (got < 0)
            to_next_key(m, w);
    }
    /* next_key: up to n, or max_entries, and never a huge guess up front */
    lua_Integer hint = got >= 0 ? got : n;
    if (got < 0 && m->max_entries && hint > (lua_Integer)m->max_entries)
        hint = m->max_entries;
    if (got < 0 && hint > 1024)
        hint = 1024;
    lua_createtable(L, (int)hint, 0);
    lua_createtable(L, (int)hint, 0);
    int keys = lua_gettop(L) - 1;
    if (got >= 0) {
        for (i = 0; i < got; i++)
            append_entry(L, m, reduce, keys, i + 1, w->keys + (size_t)i * w->key_size,
                         w->values + (size_t)i * w->value_bytes);
        m->last.entries = (uint64_t)got;
        m->last.batch_size = w->cap;
    }
    if (w->mode == WALK_NEXT_KEY) {
        m->last.fallback = 1;
        w->steps = 0; /* the bound applies per slice */
        while (i < n && next_key_step(L, m, w, seen, "read_batch"))
            append_entry(L, m, reduce, keys, ++i, w->out, w->values);
        m->last.entries = (uint64_t)i;
    }
}

/* read_batch's opts (argument 4): { percpu = "sum" | "min" | "max" } */
static int read_batch_reduce(lua_State *L, luaebpf_map *m) {
    static const char *const known[] = {"percpu", NULL};
    if (lua_isnoneornil(L, 4))
        return 0;
    luaL_checktype(L, 4, LUA_TTABLE);
    luaebpf_check_options(L, 4, "read_batch options", known);
    lua_getfield(L, 4, "percpu");
    int reduce = lua_isnil(L, -1) ? 0 : luaebpf_percpu_reduction(L, -1, &m->shape, "read_batch");
    lua_pop(L, 1);
    return reduce;
}

/* m:read_batch([cursor [, n [, opts]]]) -> keys, values, cursor (nil when done) */
static int map_read_batch(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "read_batch");
    check_walkable(L, m, "read_batch");
    lua_Integer n = read_batch_size(L, m);
    int reduce = read_batch_reduce(L, m);
    lua_settop(L, 3);
    /* a new walk gets a new cursor */
    cursor *c = lua_isnil(L, 2) ? cursor_new(L, m, n) : cursor_resume(L); /* 4 */
    walk *w = &c->w;
    luaebpf_getuservalue(L, 4);
    lua_rawgeti(L, -1, 2);                      /* 5 uv, 6 seen */
    int seen = lua_istable(L, 6) ? 6 : 0;
    read_slice(L, m, w, n, seen, reduce);       /* 7 keys, 8 values */
    if (w->done) {
        walk_free(w);
        lua_pushnil(L);
    } else {
        lua_pushvalue(L, 4);
    }
    return 3;
}

/* m:last_read() -> what the latest walk did */
static int map_last_read(lua_State *L) {
    luaebpf_map *m = luaL_checkudata(L, 1, LUAEBPF_MAP);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)m->last.entries);
    lua_setfield(L, -2, "entries");
    lua_pushinteger(L, (lua_Integer)m->last.batches);
    lua_setfield(L, -2, "batches");
    lua_pushinteger(L, (lua_Integer)m->last.grows);
    lua_setfield(L, -2, "grows");
    lua_pushinteger(L, (lua_Integer)m->last.restarts);
    lua_setfield(L, -2, "restarts");
    lua_pushinteger(L, (lua_Integer)m->last.repeats);
    lua_setfield(L, -2, "repeats");
    lua_pushinteger(L, (lua_Integer)m->last.vanished);
    lua_setfield(L, -2, "vanished");
    lua_pushinteger(L, (lua_Integer)m->last.batch_size);
    lua_setfield(L, -2, "batch_size");
    lua_pushboolean(L, m->last.fallback);
    lua_setfield(L, -2, "fallback");
    return 1;
}

void luaebpf_iter_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"pairs", map_pairs},           {"keys", map_keys},   {"dump", map_dump},
        {"drain", map_drain},           {"read_batch", map_read_batch},
        {"last_read", map_last_read},   {NULL, NULL}};
    luaL_newmetatable(L, LUAEBPF_WALK); /* module, mt */
    lua_pushcfunction(L, walk_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, walk_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newmetatable(L, LUAEBPF_CURSOR);
    lua_pushcfunction(L, cursor_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "luaebpf.Cursor");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    lua_getfield(L, -1, "Map"); /* module, methods */
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
}

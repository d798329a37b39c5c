/* percpu.c: per-CPU values read without a table of ncpus values per call.
 * Owns the reductions (opts.percpu = "sum", "min", "max" of lookup, pairs,
 * dump, drain, read_batch) and filling a caller's table (lookup's opts.into).
 *
 * A reduction works on the bytes, not on Lua values: every CPU's value is
 * folded into CPU 0's slot of the buffer the kernel wrote (the caller's own
 * scratch: a lookup's per-call buffer, a walk's batch), field by field as the
 * value codec lays it out, then that one slot is decoded as a plain value.
 * So no Lua value exists for any CPU, the result goes through the same
 * decoder as any value (LuaJIT's 2^53 rule, decoders, enums), and the
 * arithmetic is C's in the field's own type: a sum wraps at the field's width
 * as `+=` on it does (a u64 at 2^64, a u32 at 2^32). Integer fields (host and
 * network order, signed or not) and floats are reduced; any other field
 * (bool, enum, char[], raw bytes, bitfield, a union's members) keeps CPU 0's
 * value, since no arithmetic on it means anything. */
#include <string.h>
#include "luaebpf.h"

/* ---------------------------------------------------------- arithmetic */

static uint64_t load_be(const unsigned char *p, uint32_t size) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < size; i++)
        v = v << 8 | p[i];
    return v;
}

static void store_be(unsigned char *p, uint32_t size, uint64_t v) {
    for (uint32_t i = size; i-- > 0; v >>= 8)
        p[i] = (unsigned char)v;
}

/* host order, little or big: memcpy of the low `size` bytes of a uint64_t is
 * only right on little-endian, so go through the sized types */
static uint64_t load_host(const unsigned char *p, uint32_t size) {
    switch (size) {
    case 1: return p[0];
    case 2: { uint16_t t; memcpy(&t, p, 2); return t; }
    case 4: { uint32_t t; memcpy(&t, p, 4); return t; }
    default: { uint64_t t; memcpy(&t, p, 8); return t; }
    }
}

static void store_host(unsigned char *p, uint32_t size, uint64_t v) {
    switch (size) {
    case 1: p[0] = (unsigned char)v; return;
    case 2: { uint16_t t = (uint16_t)v; memcpy(p, &t, 2); return; }
    case 4: { uint32_t t = (uint32_t)v; memcpy(p, &t, 4); return; }
    default: memcpy(p, &v, 8); return;
    }
}

/* a and b as signed integers of `size` bytes: compare their sign-extended forms */
static int64_t sext(uint64_t u, uint32_t size) {
    int shift = 64 - 8 * (int)size;
    return shift > 0 ? (int64_t)(u << shift) >> shift : (int64_t)u;
}

static uint64_t fold_int(uint64_t a, uint64_t b, int how, int is_signed, uint32_t size) {
    int less;
    switch (how) {
    case LUAEBPF_PERCPU_SUM: return a + b; /* wraps; the store truncates to the width */
    case LUAEBPF_PERCPU_MIN:
        less = is_signed ? sext(b, size) < sext(a, size) : b < a;
        return less ? b : a;
    default:
        less = is_signed ? sext(a, size) < sext(b, size) : a < b;
        return less ? b : a;
    }
}

/* a NaN from one CPU never wins a min or max (the comparison is false), but
 * propagates through a sum, as it would in C */
static double fold_float(double a, double b, int how) {
    switch (how) {
    case LUAEBPF_PERCPU_SUM: return a + b;
    case LUAEBPF_PERCPU_MIN: return b < a ? b : a;
    default: return b > a ? b : a;
    }
}

/* folds the value at v into the one at acc, node n of codec c */
static void fold_node(const luaebpf_codec *c, const luaebpf_node *n, unsigned char *acc,
                      const unsigned char *v, int how) {
    switch (n->kind) {
    case LUAEBPF_UINT:
    case LUAEBPF_INT:
        store_host(acc, n->size, fold_int(load_host(acc, n->size), load_host(v, n->size), how,
                                          n->kind == LUAEBPF_INT, n->size));
        return;
    case LUAEBPF_BE:
        store_be(acc, n->size, fold_int(load_be(acc, n->size), load_be(v, n->size), how, 0,
                                        n->size));
        return;
    case LUAEBPF_F32: {
        float a, b;
        memcpy(&a, acc, 4);
        memcpy(&b, v, 4);
        a = (float)fold_float(a, b, how);
        memcpy(acc, &a, 4);
        return;
    }
    case LUAEBPF_F64: {
        double a, b;
        memcpy(&a, acc, 8);
        memcpy(&b, v, 8);
        a = fold_float(a, b, how);
        memcpy(acc, &a, 8);
        return;
    }
    case LUAEBPF_ARRAY: {
        const luaebpf_node *e = &c->nodes[n->first];
        for (uint32_t i = 0; i < n->count; i++)
            fold_node(c, e, acc + (size_t)i * e->size, v + (size_t)i * e->size, how);
        return;
    }
    case LUAEBPF_STRUCT:
        if (n->is_union) /* members overlap: folding each would mix them */
            return;
        for (uint32_t i = 0; i < n->count; i++) {
            const luaebpf_node *f = &c->nodes[n->first + i];
            fold_node(c, f, acc + f->offset, v + f->offset, how);
        }
        return;
    default: /* bool, enum, char[], raw, bitfield: CPU 0's value stands */
        return;
    }
}

/* folds every CPU's value of the per-CPU bytes at buf into CPU 0's slot */
static void reduce(const luaebpf_shape *s, int how, unsigned char *buf) {
    const luaebpf_node *root = s->vc->nodes;
    size_t stride = s->value_stride;
    if (root->kind == LUAEBPF_UINT && root->size == 8) { /* the hot case: a u64 counter */
        uint64_t acc, v;
        memcpy(&acc, buf, 8);
        for (int i = 1; i < s->ncpus; i++) {
            memcpy(&v, buf + (size_t)i * stride, 8);
            acc = how == LUAEBPF_PERCPU_SUM ? acc + v
                  : how == LUAEBPF_PERCPU_MIN ? (v < acc ? v : acc) : (v > acc ? v : acc);
        }
        memcpy(buf, &acc, 8);
        return;
    }
    for (int i = 1; i < s->ncpus; i++)
        fold_node(s->vc, root, buf, buf + (size_t)i * stride, how);
}

/* ------------------------------------------------------------ the API */

void luaebpf_percpu_push(lua_State *L, const luaebpf_shape *s, int how, unsigned char *buf,
                         int key_idx) {
    reduce(s, how, buf);
    if (luaebpf_decode_fast(L, s->vc, buf))
        return;
    if (key_idx)
        luaebpf_decode_entry(L, s->vc, buf, key_idx);
    else
        luaebpf_decode(L, s->vc, buf);
}

/* every value is decoded before t is touched: a decode that raises (LuaJIT, a
 * u64 beyond 2^53) leaves t as it was, never half filled */
void luaebpf_percpu_fill(lua_State *L, const luaebpf_shape *s, const unsigned char *buf,
                         int into, int key_idx) {
    /* a C function starts with LUA_MINSTACK (20) free slots and a lookup has
     * used two (its buffer, the into slot): up to 8 CPUs need no check (the
     * decoders check their own nesting) */
    if (s->ncpus > 8)
        luaL_checkstack(L, s->ncpus + 1, "per-CPU values");
    for (int i = 0; i < s->ncpus; i++) {
        const unsigned char *p = buf + (size_t)i * s->value_stride;
        if (luaebpf_decode_fast(L, s->vc, p))
            continue;
        if (key_idx)
            luaebpf_decode_entry(L, s->vc, p, key_idx);
        else
            luaebpf_decode(L, s->vc, p);
    }
    for (int i = s->ncpus; i > 0; i--)
        lua_rawseti(L, into, i); /* pops the top: CPU i - 1's value */
    lua_pushvalue(L, into);
}

/* raises unless the map is per-CPU: option `field` means nothing otherwise */
static void check_percpu_map(lua_State *L, const luaebpf_shape *s, const char *op,
                             const char *field) {
    if (s->percpu)
        return;
    const char *tn = luaebpf_type_name(s->type);
    luaL_error(L, "%s: option '%s' is for per-CPU maps; map '%s' (id %s) is a %s, whose "
               "value is one value already", op, field, s->name, LUAEBPF_UTEXT(s->id),
               tn ? tn : "map of another type");
}

/* on every lookup that asks for a reduction: the check costs two API calls
 * and a compare; the error's wording is made only when it raises */
int luaebpf_percpu_reduction(lua_State *L, int idx, const luaebpf_shape *s, const char *op) {
    size_t len = 0;
    const char *name = NULL;
    int how = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        name = lua_tolstring(L, idx, &len);
        how = luaebpf_percpu_name(name, len);
    }
    if (__builtin_expect(how && s->percpu, 1))
        return how;
    idx = lua_absindex(L, idx);
    if (!how)
        luaL_error(L, "%s: bad option 'percpu': \"sum\", \"min\" or \"max\" expected, got %s",
                   op, name ? lua_pushfstring(L, "\"%s\"", luaebpf_push_shown(L, idx))
                            : luaL_typename(L, idx));
    check_percpu_map(L, s, op, "percpu");
    return how;
}

void luaebpf_percpu_check_into(lua_State *L, int idx, const luaebpf_shape *s, const char *op) {
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: bad option 'into': a table to fill with the %d per-CPU values "
                   "expected, got %s", op, s->ncpus, luaL_typename(L, idx));
    check_percpu_map(L, s, op, "into");
}

void luaebpf_percpu_both(lua_State *L, const char *op) {
    luaL_error(L, "%s: options 'percpu' and 'into' exclude each other: a reduction "
               "returns one value, 'into' fills the table with every CPU's", op);
}

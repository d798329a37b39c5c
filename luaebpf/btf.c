/* btf.c: the "btf" codec. Turns a map's BTF key or value type into codec
 * nodes (layout.c), so encode.c and decode.c read BTF-typed maps with no
 * hand-written layout: integers of every size and sign, bool, char arrays as
 * strings, other arrays, structs and unions by field name (anonymous members
 * flattened into their parent, as C reads them), enums by name, bitfields,
 * with typedefs and qualifiers resolved and padding skipped. Kernel-owned
 * fields (struct bpf_spin_lock, timers, list and tree heads) are left out; a
 * spin lock marks the codec so reads and writes take BPF_F_LOCK. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include "luaebpf.h"
#include "valgrind.h"

#define BTF_MAX_DEPTH 32
/* Bounds on what one type may cost. BTF shares types: a struct holding two
 * copies of a union holding two copies of ... is a few bytes of BTF (and of
 * map value) but 2^depth codec nodes, and a decode walks every one of them.
 * So the cost of a type is measured first, once per BTF type, and a type
 * above a bound is refused before anything is built. The bounds sit far
 * above any real map value (the largest struct in vmlinux needs under 3,000
 * nodes). */
#define BTF_MAX_NODES (1u << 14) /* codec nodes: fields, array elements' types, enumerators */
#define BTF_MAX_WORK (1u << 22)  /* what one decode or encode walks: every array element */

/* what building a type costs, and how deep it goes; memo per BTF type id */
typedef struct type_cost {
    uint32_t nodes, work;       /* enumerators are not in nodes: see build_ctx */
    uint32_t enum_first;        /* an enum's enumerator nodes + 1, once built; 0 before */
    uint8_t height;             /* levels of nodes, 1 for a scalar */
    uint8_t state;              /* 0: not measured, 1: being measured, 2: done */
} type_cost;

typedef struct build_ctx {
    lua_State *L;
    const struct btf *btf;
    luaebpf_codec *c;
    type_cost *memo;            /* btf__type_cnt entries */
    uint32_t ntypes;
    uint64_t enumerators;       /* every enum's enumerator nodes, built once per enum type
                                 * and shared by all its uses */
} build_ctx;

/* the type behind typedefs, const, volatile, restrict and type tags */
static const struct btf_type *resolve(const struct btf *btf, uint32_t *id) {
    const struct btf_type *t = btf__type_by_id(btf, *id);
    for (int guard = 0; t && guard < 64; guard++) {
        if (!btf_is_mod(t) && !btf_is_typedef(t))
            return t;
        *id = t->type;
        t = btf__type_by_id(btf, *id);
    }
    return NULL;
}

/* kernel-owned special fields user space neither reads nor writes */
static int is_kernel_field(const struct btf *btf, const struct btf_type *t, int *is_lock) {
    if (!btf_is_struct(t))
        return 0;
    const char *name = btf__name_by_offset(btf, t->name_off);
    static const char *const special[] = {"bpf_spin_lock", "bpf_res_spin_lock", "bpf_timer",
                                          "bpf_wq", "bpf_list_head", "bpf_list_node",
                                          "bpf_rb_root", "bpf_rb_node", "bpf_refcount", NULL};
    for (int i = 0; name && special[i]; i++) {
        if (strcmp(name, special[i]) == 0) {
            if (i == 0)
                *is_lock = 1;
            return 1;
        }
    }
    return 0;
}

static char *named(const char *prefix, const char *name) {
    if (!name || !*name)
        return NULL;
    size_t n = strlen(prefix) + strlen(name) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", prefix, name);
    return s;
}

static void set_raw(luaebpf_node *n, uint32_t size) {
    n->kind = LUAEBPF_RAW;
    n->size = size;
    n->align = 1;
}

static void build_node(build_ctx *b, uint32_t slot, uint32_t type_id, int depth);

/* An enumerator's value as the enum's own bytes hold it. BTF_KIND_ENUM values
 * are 32 bits whatever the enum's size, and clang 14 writes `enum : signed
 * char { NEG = -1 }` as an unsigned 1-byte enum whose NEG is 0xffffffff:
 * compared with the byte 0xff a decode reads, it would never match, and an
 * encode would store its low byte unchecked. Cut to the enum's size, then
 * sign-extend when the enum is signed, so names match what the bytes say. */
static int64_t enum_value_at_size(uint64_t v, uint32_t size, int is_signed) {
    if (size == 0 || size >= 8)
        return (int64_t)v;
    int shift = 64 - 8 * (int)size;
    return is_signed ? (int64_t)(v << shift) >> shift : (int64_t)((v << shift) >> shift);
}

/* member i of struct or union t as a field: its resolved type, or NULL when
 * it becomes none (kernel-owned, padding, zero-size); *is_lock for a spin lock */
static const struct btf_type *kept_member(const struct btf *btf, const struct btf_type *t,
                                          uint16_t i, int *is_lock) {
    const struct btf_member *mem = btf_members(t) + i;
    uint32_t mid = mem->type;
    const struct btf_type *mt = resolve(btf, &mid);
    if (!mt || is_kernel_field(btf, mt, is_lock))
        return NULL;
    const char *mname = btf__name_by_offset(btf, mem->name_off);
    if ((!mname || !*mname) && !btf_is_composite(mt))
        return NULL; /* an unnamed bitfield: padding */
    if (btf_member_bitfield_size(t, i) == 0 && btf__resolve_size(btf, mid) <= 0)
        return NULL; /* flexible arrays and other zero-size members */
    return mt;
}

static uint32_t saturate(uint64_t v) {
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void measure(build_ctx *b, uint32_t type_id, int depth, type_cost *out);

/* adds the cost of array or composite t's children to *nodes and *work;
 * *height: the highest child's */
static void measure_children(build_ctx *b, const struct btf_type *t, int depth, uint64_t *nodes,
                             uint64_t *work, int *height) {
    type_cost e;
    if (btf_is_array(t)) {
        const struct btf_array *a = btf_array(t);
        measure(b, a->type, depth + 1, &e);
        *nodes += e.nodes;
        *work += (uint64_t)a->nelems * (e.work > BTF_MAX_WORK ? BTF_MAX_WORK + 1 : e.work);
        *height = e.height;
        return;
    }
    uint16_t vlen = btf_vlen(t), keep = 0;
    for (uint16_t i = 0; i < vlen; i++) {
        int is_lock = 0;
        if (!kept_member(b->btf, t, i, &is_lock))
            continue;
        keep++;
        if (btf_member_bitfield_size(t, i))
            e = (type_cost){1, 1, 0, 1, 2};
        else
            measure(b, btf_members(t)[i].type, depth + 1, &e);
        *nodes += e.nodes;
        *work += e.work;
        if (e.height > *height)
            *height = e.height;
    }
    *nodes += keep == 0; /* an empty struct still reserves one node */
}

/* the cost of building type_id as build_node will (an upper bound where its
 * depth cut-off would stop it), each BTF type measured once: linear in the
 * BTF, however often a type is used. A type that contains itself (only a
 * blob the kernel never accepted can say so) raises. */
static void measure(build_ctx *b, uint32_t type_id, int depth, type_cost *out) {
    const struct btf *btf = b->btf;
    uint32_t id = type_id;
    const struct btf_type *t = resolve(btf, &id);
    *out = (type_cost){1, 1, 0, 1, 2};
    if (!t)
        return;
    if (btf_is_any_enum(t)) {
        uint16_t vlen = btf_vlen(t);
        out->work = 1 + vlen; /* names are found by a walk over the enumerators */
        if (id < b->ntypes && b->memo[id].state != 2) {
            b->memo[id].state = 2;
            b->enumerators += vlen ? vlen : 1;
        }
        return;
    }
    if (!btf_is_array(t) && !btf_is_composite(t))
        return;
    if (id >= b->ntypes)
        return;
    type_cost *m = &b->memo[id];
    if (m->state == 2) {
        *out = *m;
        return;
    }
    if (m->state == 1)
        luaL_error(b->L, "bad BTF: type [%d] contains itself", (int)id);
    if (depth > BTF_MAX_DEPTH)
        luaL_error(b->L, "BTF type nested deeper than %d levels", BTF_MAX_DEPTH);
    m->state = 1;
    uint64_t nodes = 1, work = 1;
    int height = 0;
    measure_children(b, t, depth, &nodes, &work, &height);
    m = &b->memo[id];
    m->nodes = saturate(nodes);
    m->work = saturate(work);
    m->height = (uint8_t)(height + 1); /* at most BTF_MAX_DEPTH + 2: depth checked above */
    m->state = 2;
    *out = *m;
}

/* a bitfield member of type mt, bits wide, at bit offset off of its struct */
static void set_bitfield(luaebpf_node *n, const struct btf_type *mt, uint32_t off,
                         uint32_t bits) {
    n->kind = LUAEBPF_BITFIELD;
    n->offset = off / 8;
    n->bit_offset = (uint8_t)(off % 8);
    n->bit_size = (uint8_t)(bits > 64 ? 64 : bits);
    n->size = (n->bit_offset + n->bit_size + 7) / 8;
    n->align = 1;
    n->is_signed = btf_is_int(mt) ? (btf_int_encoding(mt) & BTF_INT_SIGNED) != 0
                   : btf_is_any_enum(mt) ? btf_kflag(mt) : 0;
}

static void build_composite(build_ctx *b, uint32_t slot, const struct btf_type *t, int depth) {
    const struct btf *btf = b->btf;
    const struct btf_member *mem = btf_members(t);
    uint16_t vlen = btf_vlen(t);
    uint32_t keep = 0;
    for (uint16_t i = 0; i < vlen; i++) { /* count the members that become fields */
        int is_lock = 0;
        keep += kept_member(btf, t, i, &is_lock) != NULL;
        b->c->has_lock |= is_lock;
    }
    uint32_t first = luaebpf_codec_reserve(b->L, b->c, keep ? keep : 1);
    uint32_t f = first;
    for (uint16_t i = 0; i < vlen && f < first + keep; i++) {
        int is_lock = 0;
        const struct btf_type *mt = kept_member(btf, t, i, &is_lock);
        if (!mt)
            continue;
        const char *mname = btf__name_by_offset(btf, mem[i].name_off);
        int anonymous = !mname || !*mname;
        uint32_t bits = btf_member_bitfield_size(t, i);
        uint32_t off = btf_member_bit_offset(t, i);
        if (bits) {
            set_bitfield(&b->c->nodes[f], mt, off, bits);
        } else {
            build_node(b, f, mem[i].type, depth + 1);
            b->c->nodes[f].offset = off / 8;
        }
        if (!anonymous) {
            b->c->nodes[f].name = strdup(mname);
            if (!b->c->nodes[f].name)
                luaL_error(b->L, "out of memory building a BTF codec");
        }
        f++;
    }
    luaebpf_node *n = &b->c->nodes[slot];
    n->kind = LUAEBPF_STRUCT;
    n->is_union = btf_is_union(t);
    n->first = first;
    n->count = keep;
    n->size = t->size;
    n->align = 1;
    n->type_name = named(btf_is_union(t) ? "union " : "struct ",
                         btf__name_by_offset(btf, t->name_off));
}

/* integers of 1, 2, 4 or 8 bytes and 1-byte bools; others (__int128) as bytes */
static void build_int(luaebpf_node *n, const struct btf_type *t) {
    uint8_t enc = btf_int_encoding(t);
    if ((enc & BTF_INT_BOOL) && t->size == 1) {
        n->kind = LUAEBPF_BOOL;
    } else if (t->size == 1 || t->size == 2 || t->size == 4 || t->size == 8) {
        n->kind = (enc & BTF_INT_SIGNED) ? LUAEBPF_INT : LUAEBPF_UINT;
    } else {
        set_raw(n, t->size);
        return;
    }
    n->size = n->align = t->size;
}

static void build_float(luaebpf_node *n, const struct btf_type *t) {
    if (t->size != 4 && t->size != 8) {
        set_raw(n, t->size); /* long double: bytes */
        return;
    }
    n->kind = t->size == 4 ? LUAEBPF_F32 : LUAEBPF_F64;
    n->size = n->align = t->size;
}

/* the enumerator nodes of enum type id (t): built once per type, shared by
 * all its uses; returns the index of the first */
static uint32_t build_enumerators(build_ctx *b, uint32_t id, const struct btf_type *t) {
    uint32_t first = id < b->ntypes ? b->memo[id].enum_first : 0;
    if (first)
        return first - 1;
    uint16_t vlen = btf_vlen(t);
    first = luaebpf_codec_reserve(b->L, b->c, vlen ? vlen : 1);
    if (id < b->ntypes)
        b->memo[id].enum_first = first + 1;
    for (uint16_t i = 0; i < vlen; i++) {
        luaebpf_node *e = &b->c->nodes[first + i];
        const char *ename;
        uint64_t v;
        if (btf_is_enum(t)) {
            ename = btf__name_by_offset(b->btf, btf_enum(t)[i].name_off);
            v = btf_kflag(t) ? (uint64_t)(int64_t)btf_enum(t)[i].val
                             : (uint64_t)(uint32_t)btf_enum(t)[i].val;
        } else {
            ename = btf__name_by_offset(b->btf, btf_enum64(t)[i].name_off);
            v = btf_enum64_value(&btf_enum64(t)[i]);
        }
        e->value = enum_value_at_size(v, t->size, btf_kflag(t));
        e->name = strdup(ename ? ename : "");
        if (!e->name)
            luaL_error(b->L, "out of memory building a BTF codec");
    }
    return first;
}

static void build_enum(build_ctx *b, uint32_t slot, uint32_t id, const struct btf_type *t) {
    uint32_t first = build_enumerators(b, id, t);
    luaebpf_node *n = &b->c->nodes[slot]; /* after reserve, which may move the array */
    n->kind = (t->size == 1 || t->size == 2 || t->size == 4 || t->size == 8)
                  ? LUAEBPF_ENUM : LUAEBPF_RAW;
    n->is_signed = btf_kflag(t);
    n->first = first;
    n->count = btf_vlen(t);
    n->size = n->align = t->size;
    n->type_name = named("enum ", btf__name_by_offset(b->btf, t->name_off));
}

/* char[N] reads as a string up to the first NUL; other arrays as tables */
static void build_array(build_ctx *b, uint32_t slot, const struct btf_type *t, long long size,
                        int depth) {
    const struct btf *btf = b->btf;
    const struct btf_array *a = btf_array(t);
    luaebpf_node *n = &b->c->nodes[slot];
    uint32_t eid = a->type;
    const struct btf_type *et = resolve(btf, &eid);
    const char *ename = et ? btf__name_by_offset(btf, et->name_off) : NULL;
    if (et && btf_is_int(et) && et->size == 1 && ename && strcmp(ename, "char") == 0) {
        n->kind = LUAEBPF_CHAR;
        n->size = a->nelems;
        n->align = 1;
        return;
    }
    long long esize = btf__resolve_size(btf, a->type);
    if (a->nelems == 0 || esize <= 0) {
        set_raw(n, size > 0 ? (uint32_t)size : 0);
        return;
    }
    uint32_t child = luaebpf_codec_reserve(b->L, b->c, 1);
    build_node(b, child, a->type, depth + 1);
    n = &b->c->nodes[slot];
    n->kind = LUAEBPF_ARRAY;
    n->first = child;
    n->count = a->nelems;
    if ((uint64_t)a->nelems * (uint64_t)esize >= (1ULL << 30)) {
        set_raw(n, 0); /* absurd: no map value is this large */
        return;
    }
    n->size = a->nelems * (uint32_t)esize;
    n->align = 1;
}

static void build_node(build_ctx *b, uint32_t slot, uint32_t type_id, int depth) {
    uint32_t id = type_id;
    const struct btf_type *t = resolve(b->btf, &id);
    long long size = btf__resolve_size(b->btf, type_id);
    luaebpf_node *n = &b->c->nodes[slot];
    if (!t || depth > BTF_MAX_DEPTH) {
        set_raw(n, size > 0 ? (uint32_t)size : 0);
    } else if (btf_is_int(t)) {
        build_int(n, t);
    } else if (btf_is_ptr(t)) { /* an address, as the u64 it is to user space */
        n->kind = LUAEBPF_UINT;
        n->size = n->align = 8;
    } else if (btf_is_float(t)) {
        build_float(n, t);
    } else if (btf_is_any_enum(t)) {
        build_enum(b, slot, id, t);
    } else if (btf_is_array(t)) {
        build_array(b, slot, t, size, depth);
    } else if (btf_is_composite(t)) {
        build_composite(b, slot, t, depth);
    } else {
        set_raw(n, size > 0 ? (uint32_t)size : 0); /* fwd, void, functions: opaque bytes */
    }
}

/* every child lies inside its parent, and the fields one Lua table holds (a
 * struct's own and its anonymous members') have distinct names, which encode
 * relies on. BTF the kernel accepted always does both; a blob from elsewhere
 * may claim members past the end of their struct, or twins. `names`: the
 * stack index of the enclosing struct's name set, 0 for a new table. */
static int fits(lua_State *L, const luaebpf_codec *c, const luaebpf_node *n, int names,
                int depth) {
    if (depth > BTF_MAX_DEPTH + 2)
        return 0;
    if (n->kind == LUAEBPF_ARRAY) {
        const luaebpf_node *e = &c->nodes[n->first];
        return (uint64_t)e->size * n->count <= n->size && fits(L, c, e, 0, depth + 1);
    }
    if (n->kind != LUAEBPF_STRUCT)
        return 1;
    int own = !names, ok = 1;
    if (own) {
        luaL_checkstack(L, 4, "BTF nesting");
        lua_newtable(L);
        names = lua_gettop(L);
    }
    for (uint32_t i = 0; ok && i < n->count; i++) {
        const luaebpf_node *f = &c->nodes[n->first + i];
        uint64_t end = (uint64_t)f->offset + (f->kind == LUAEBPF_BITFIELD
                           ? ((uint64_t)f->bit_offset + f->bit_size + 7) / 8 : f->size);
        if (f->name) {
            lua_getfield(L, names, f->name);
            ok = lua_isnil(L, -1);
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
            lua_setfield(L, names, f->name);
        }
        ok = ok && end <= n->size && fits(L, c, f, f->name ? 0 : names, depth + 1);
    }
    if (own)
        lua_remove(L, names);
    return ok;
}

/* pushes how messages name BTF type id: "struct foo (BTF type 12)" */
static const char *push_type_label(lua_State *L, const struct btf *btf, uint32_t id) {
    uint32_t rid = id;
    const struct btf_type *t = resolve(btf, &rid);
    const char *name = t ? btf__name_by_offset(btf, t->name_off) : NULL;
    const char *kind = !t ? "" : btf_is_union(t) ? "union " : btf_is_struct(t) ? "struct "
                     : btf_is_any_enum(t) ? "enum " : "";
    if (name && *name)
        return lua_pushfstring(L, "%s%s (BTF type %d)", kind, name, (int)id);
    return lua_pushfstring(L, "BTF type %d", (int)id);
}

/* pushes a Codec for type_id of btf; raises for a type too large to walk */
luaebpf_codec *luaebpf_codec_from_btf(lua_State *L, const struct btf *btf, uint32_t type_id) {
    build_ctx b = {L, btf, NULL, NULL, btf__type_cnt(btf), 0};
    /* the memo is a userdata: a raise from measure frees it */
    b.memo = lua_newuserdata(L, (size_t)b.ntypes * sizeof *b.memo);
    memset(b.memo, 0, (size_t)b.ntypes * sizeof *b.memo);
    type_cost cost;
    measure(&b, type_id, 0, &cost);
    if (cost.height > BTF_MAX_DEPTH + 1)
        luaL_error(L, "%s nests deeper than %d levels", push_type_label(L, btf, type_id),
                   BTF_MAX_DEPTH);
    if (cost.nodes + b.enumerators > BTF_MAX_NODES || cost.work > BTF_MAX_WORK)
        luaL_error(L, "%s is too large for the \"btf\" codec (more than %d fields and enum "
                   "names, or %d values to walk in one read); give it a codec of your own, "
                   "e.g. \"raw\"", push_type_label(L, btf, type_id), (int)BTF_MAX_NODES,
                   (int)BTF_MAX_WORK);
    luaebpf_codec *c = luaebpf_codec_new(L);
    b.c = c;
    luaebpf_codec_reserve(L, c, 1);
    build_node(&b, 0, type_id, 0);
    lua_remove(L, -2); /* the memo */
    c->from_btf = 1;
    if (!fits(L, c, &c->nodes[0], 0, 0)) { /* inconsistent BTF: the bytes, uninterpreted */
        long long size = btf__resolve_size(btf, type_id);
        lua_pop(L, 1);
        c = luaebpf_codec_raw(L, size > 0 && size < (1LL << 30) ? (uint32_t)size : 0);
        c->from_btf = 1;
        return c;
    }
    if (c->nodes[0].kind != LUAEBPF_STRUCT && c->nodes[0].kind != LUAEBPF_ENUM &&
        !c->nodes[0].type_name) {
        /* a scalar root: name it after its BTF type, e.g. "__u64" */
        const struct btf_type *t = btf__type_by_id(btf, type_id);
        const char *tn = t ? btf__name_by_offset(btf, t->name_off) : NULL;
        c->nodes[0].type_name = named("", tn);
    }
    luaebpf_codec_describe(c);
    if (c->nodes[0].type_name && c->nodes[0].kind != LUAEBPF_STRUCT &&
        c->nodes[0].kind != LUAEBPF_ENUM)
        snprintf(c->desc, sizeof c->desc, "%s", c->nodes[0].type_name);
    return c;
}

/* loads the BTF object the kernel holds for a map; NULL with errno set. This
 * is libbpf's btf__load_from_kernel_by_id done in two steps, so the bytes the
 * kernel wrote can be marked defined for valgrind before libbpf parses them. */
struct btf *luaebpf_btf_load(uint32_t btf_id) {
    int fd = bpf_btf_get_fd_by_id(btf_id);
    if (fd < 0)
        return NULL;
    struct btf *btf = NULL;
    uint32_t size = 1 << 16;
    for (int tries = 0; tries < 4 && !btf; tries++) {
        struct bpf_btf_info info;
        uint32_t len = sizeof info;
        void *raw = malloc(size);
        if (!raw) {
            errno = ENOMEM;
            break;
        }
        memset(&info, 0, sizeof info);
        info.btf = (uint64_t)(uintptr_t)raw;
        info.btf_size = size;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
            int no = errno;
            free(raw);
            errno = no;
            break;
        }
        if (info.btf_size > size) { /* larger than the guess: ask again with room */
            size = info.btf_size;
            free(raw);
            continue;
        }
        VALGRIND_MAKE_MEM_DEFINED(raw, info.btf_size);
        btf = btf__new(raw, info.btf_size);
        int no = errno;
        free(raw); /* btf__new keeps its own copy */
        if (!btf)
            errno = no ? no : EINVAL;
    }
    int no = errno;
    close(fd);
    errno = no;
    return btf;
}

/* btf.c: the "btf" codec. Turns a map's BTF key or value type into codec
 * nodes, so the encoder and decoder of codec.c read BTF-typed maps with no
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

typedef struct build_ctx {
    lua_State *L;
    const struct btf *btf;
    luaebpf_codec *c;
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

static void build_composite(build_ctx *b, uint32_t slot, const struct btf_type *t, int depth) {
    const struct btf *btf = b->btf;
    const struct btf_member *mem = btf_members(t);
    uint16_t vlen = btf_vlen(t);
    uint32_t keep = 0;
    for (uint16_t i = 0; i < vlen; i++) { /* count the members that become fields */
        uint32_t mid = mem[i].type;
        const struct btf_type *mt = resolve(btf, &mid);
        int is_lock = 0;
        if (!mt || is_kernel_field(btf, mt, &is_lock)) {
            b->c->has_lock |= is_lock;
            continue;
        }
        const char *mname = btf__name_by_offset(btf, mem[i].name_off);
        int anonymous = !mname || !*mname;
        if (anonymous && !btf_is_composite(mt))
            continue; /* an unnamed bitfield: padding */
        if (btf_member_bitfield_size(t, i) == 0 && btf__resolve_size(btf, mid) <= 0)
            continue; /* flexible arrays and other zero-size members */
        keep++;
    }
    uint32_t first = luaebpf_codec_reserve(b->L, b->c, keep ? keep : 1);
    uint32_t f = first;
    for (uint16_t i = 0; i < vlen && f < first + keep; i++) {
        uint32_t mid = mem[i].type;
        const struct btf_type *mt = resolve(btf, &mid);
        int is_lock = 0;
        if (!mt || is_kernel_field(btf, mt, &is_lock))
            continue;
        const char *mname = btf__name_by_offset(btf, mem[i].name_off);
        int anonymous = !mname || !*mname;
        uint32_t bits = btf_member_bitfield_size(t, i);
        uint32_t off = btf_member_bit_offset(t, i);
        if (anonymous && !btf_is_composite(mt))
            continue;
        if (bits == 0 && btf__resolve_size(btf, mid) <= 0)
            continue;
        if (bits) {
            luaebpf_node *n = &b->c->nodes[f];
            n->kind = LUAEBPF_BITFIELD;
            n->offset = off / 8;
            n->bit_offset = (uint8_t)(off % 8);
            n->bit_size = (uint8_t)(bits > 64 ? 64 : bits);
            n->size = (n->bit_offset + n->bit_size + 7) / 8;
            n->align = 1;
            n->is_signed = btf_is_int(mt) ? (btf_int_encoding(mt) & BTF_INT_SIGNED) != 0
                           : btf_is_any_enum(mt) ? btf_kflag(mt) : 0;
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

static void build_node(build_ctx *b, uint32_t slot, uint32_t type_id, int depth) {
    const struct btf *btf = b->btf;
    uint32_t id = type_id;
    const struct btf_type *t = resolve(btf, &id);
    long long size = btf__resolve_size(btf, type_id);
    luaebpf_node *n = &b->c->nodes[slot];
    if (!t || depth > BTF_MAX_DEPTH) {
        set_raw(n, size > 0 ? (uint32_t)size : 0);
        return;
    }
    if (btf_is_int(t)) {
        uint8_t enc = btf_int_encoding(t);
        if ((enc & BTF_INT_BOOL) && t->size == 1) {
            n->kind = LUAEBPF_BOOL;
        } else if (t->size == 1 || t->size == 2 || t->size == 4 || t->size == 8) {
            n->kind = (enc & BTF_INT_SIGNED) ? LUAEBPF_INT : LUAEBPF_UINT;
        } else {
            set_raw(n, t->size); /* __int128 and friends: bytes */
            return;
        }
        n->size = n->align = t->size;
        return;
    }
    if (btf_is_ptr(t)) {
        n->kind = LUAEBPF_UINT;
        n->size = n->align = 8;
        return;
    }
    if (btf_is_float(t)) {
        if (t->size == 4 || t->size == 8) {
            n->kind = t->size == 4 ? LUAEBPF_F32 : LUAEBPF_F64;
            n->size = n->align = t->size;
        } else {
            set_raw(n, t->size);
        }
        return;
    }
    if (btf_is_any_enum(t)) {
        uint16_t vlen = btf_vlen(t);
        uint32_t first = luaebpf_codec_reserve(b->L, b->c, vlen ? vlen : 1);
        for (uint16_t i = 0; i < vlen; i++) {
            luaebpf_node *e = &b->c->nodes[first + i];
            const char *ename;
            if (btf_is_enum(t)) {
                ename = btf__name_by_offset(btf, btf_enum(t)[i].name_off);
                e->value = btf_kflag(t) ? (int64_t)btf_enum(t)[i].val
                                        : (int64_t)(uint32_t)btf_enum(t)[i].val;
            } else {
                ename = btf__name_by_offset(btf, btf_enum64(t)[i].name_off);
                e->value = (int64_t)btf_enum64_value(&btf_enum64(t)[i]);
            }
            e->name = strdup(ename ? ename : "");
            if (!e->name)
                luaL_error(b->L, "out of memory building a BTF codec");
        }
        n = &b->c->nodes[slot];
        n->kind = (t->size == 1 || t->size == 2 || t->size == 4 || t->size == 8)
                      ? LUAEBPF_ENUM : LUAEBPF_RAW;
        n->is_signed = btf_kflag(t);
        n->first = first;
        n->count = vlen;
        n->size = n->align = t->size;
        n->type_name = named("enum ", btf__name_by_offset(btf, t->name_off));
        return;
    }
    if (btf_is_array(t)) {
        const struct btf_array *a = btf_array(t);
        uint32_t eid = a->type;
        const struct btf_type *et = resolve(btf, &eid);
        const char *ename = et ? btf__name_by_offset(btf, et->name_off) : NULL;
        if (et && btf_is_int(et) && et->size == 1 && ename && strcmp(ename, "char") == 0) {
            n->kind = LUAEBPF_CHAR; /* char[N]: a string up to the first NUL */
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
        return;
    }
    if (btf_is_composite(t)) {
        build_composite(b, slot, t, depth);
        return;
    }
    set_raw(n, size > 0 ? (uint32_t)size : 0); /* fwd, void, functions: opaque bytes */
}

/* every child lies inside its parent: BTF the kernel accepted always does, but
 * a blob from elsewhere may claim members past the end of their struct */
static int fits(const luaebpf_codec *c, const luaebpf_node *n, int depth) {
    if (depth > BTF_MAX_DEPTH + 2)
        return 0;
    if (n->kind == LUAEBPF_ARRAY) {
        const luaebpf_node *e = &c->nodes[n->first];
        return (uint64_t)e->size * n->count <= n->size && fits(c, e, depth + 1);
    }
    if (n->kind != LUAEBPF_STRUCT)
        return 1;
    for (uint32_t i = 0; i < n->count; i++) {
        const luaebpf_node *f = &c->nodes[n->first + i];
        uint64_t end = (uint64_t)f->offset + (f->kind == LUAEBPF_BITFIELD
                           ? ((uint64_t)f->bit_offset + f->bit_size + 7) / 8 : f->size);
        if (end > n->size || !fits(c, f, depth + 1))
            return 0;
    }
    return 1;
}

/* pushes a Codec for type_id of btf */
luaebpf_codec *luaebpf_codec_from_btf(lua_State *L, const struct btf *btf, uint32_t type_id) {
    luaebpf_codec *c = luaebpf_codec_new(L);
    build_ctx b = {L, btf, c};
    luaebpf_codec_reserve(L, c, 1);
    build_node(&b, 0, type_id, 0);
    c->from_btf = 1;
    if (!fits(c, &c->nodes[0], 0)) { /* inconsistent BTF: the bytes, uninterpreted */
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

/* globals.c: obj:global(name [, value]), a BPF object's global variables by
 * name. libbpf keeps each data section (.rodata, .data, .bss, .data.*,
 * .rodata.*) as an internal array map of one element whose BTF value type is
 * the section's DATASEC: the variable's entry there gives its offset and its
 * type, from which btf.c builds the codec. Before load, the bytes are
 * libbpf's initial image of the section (written into the map at load);
 * after load they are the map itself, mapped into this process once per
 * section (the image libbpf 1.1 keeps is a stale private copy by then).
 * .rodata is frozen at load: readable, never writable again. object.c calls
 * this with the object busy, and unmaps the sections when it closes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

struct luaebpf_mapping {
    const struct bpf_map *map;
    unsigned char *mem;        /* NULL: the section is not mmapable, use the map's fd */
    size_t len;
    struct luaebpf_mapping *next;
};

void luaebpf_mappings_release(luaebpf_mapping **list) {
    luaebpf_mapping *m = *list;
    *list = NULL;
    while (m) {
        luaebpf_mapping *next = m->next;
        if (m->mem)
            munmap(m->mem, m->len);
        free(m);
        m = next;
    }
}

/* a variable found in a data section */
typedef struct global_var {
    struct bpf_map *map;
    const char *section;       /* ".rodata", ".bss", ".data.stats" */
    uint32_t type_id, offset, size;
} global_var;

/* the DATASEC type of an internal map, or NULL */
static const struct btf_type *datasec_of(const struct btf *btf, const struct bpf_map *map) {
    if (!bpf_map__is_internal(map))
        return NULL;
    const struct btf_type *t = btf__type_by_id(btf, bpf_map__btf_value_type_id(map));
    return t && btf_is_datasec(t) ? t : NULL;
}

/* calls visit for each variable of the object's data sections until it returns 1 */
static int each_global(struct bpf_object *obj, const struct btf *btf,
                       int (*visit)(void *ctx, const char *vname, const global_var *g),
                       void *ctx) {
    struct bpf_map *map;
    bpf_object__for_each_map(map, obj) {
        const struct btf_type *sec = btf ? datasec_of(btf, map) : NULL;
        if (!sec)
            continue;
        const char *secname = btf__name_by_offset(btf, sec->name_off);
        if (strcmp(secname, ".kconfig") == 0)
            continue; /* extern values libbpf fills in from the kernel's config */
        const struct btf_var_secinfo *vsi = btf_var_secinfos(sec);
        for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
            const struct btf_type *vt = btf__type_by_id(btf, vsi->type);
            if (!vt || !btf_is_var(vt) || btf_var(vt)->linkage == BTF_VAR_GLOBAL_EXTERN)
                continue;
            global_var g = {map, secname, vt->type, vsi->offset, vsi->size};
            if (visit(ctx, btf__name_by_offset(btf, vt->name_off), &g))
                return 1;
        }
    }
    return 0;
}

typedef struct find_ctx {
    const char *name;
    global_var *found;
    lua_State *L;
    int n;
} find_ctx;

static int visit_find(void *ctx, const char *vname, const global_var *g) {
    find_ctx *f = ctx;
    if (strcmp(vname, f->name) != 0)
        return 0;
    *f->found = *g;
    return 1;
}

static int visit_list(void *ctx, const char *vname, const global_var *g) {
    find_ctx *f = ctx;
    (void)g;
    lua_pushstring(f->L, vname);
    lua_rawseti(f->L, -2, ++f->n);
    return 0;
}

/* finds name in the object's data sections: 1 and *g, or 0 with the list of
 * every variable there is pushed (for the message) */
static int find_global(lua_State *L, struct bpf_object *obj, const struct btf *btf,
                       const char *name, global_var *g) {
    find_ctx f = {name, g, L, 0};
    if (each_global(obj, btf, visit_find, &f))
        return 1;
    lua_newtable(L);
    each_global(obj, btf, visit_list, &f);
    return 0;
}

/* raises ENOENT for name, listing the variables (the list on top) */
static int raise_no_global(lua_State *L, const char *name, int has_btf) {
    if (has_btf && lua_rawlen(L, -1) > 0)
        return luaebpf_raise_not_found(L, "global", "global", name);
    luaebpf_pusherror_about(L, "global", ENOENT, "global", name, !has_btf
        ? "the object has no BTF (compile it with clang -g) to find globals in"
        : "the object has no global variables");
    return lua_error(L);
}

/* the section of a loaded object, mapped on first use: writable unless the
 * program may only read it (.rodata, frozen by libbpf at load) */
static luaebpf_mapping *section_mapping(lua_State *L, luaebpf_object *o, const global_var *g) {
    for (luaebpf_mapping *m = o->mappings; m; m = m->next)
        if (m->map == g->map)
            return m;
    luaebpf_mapping *m = malloc(sizeof *m);
    if (!m) {
        luaebpf_pusherror_about(L, "global", ENOMEM, "global", g->section, NULL);
        lua_error(L);
    }
    m->map = g->map;
    m->mem = NULL;
    m->len = 0;
    if (bpf_map__map_flags(g->map) & BPF_F_MMAPABLE) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t len = (bpf_map__value_size(g->map) + page - 1) / page * page;
        int prot = bpf_map__map_flags(g->map) & BPF_F_RDONLY_PROG ? PROT_READ
                                                                  : PROT_READ | PROT_WRITE;
        void *mem = mmap(NULL, len, prot, MAP_SHARED, bpf_map__fd(g->map), 0);
        if (mem != MAP_FAILED) { /* else: through the fd, by lookup and update */
            m->mem = mem;
            m->len = len;
        }
    }
    m->next = o->mappings;
    o->mappings = m;
    return m;
}

/* the section's bytes now, read through the map's fd into a userdata pushed */
static unsigned char *read_section(lua_State *L, const global_var *g) {
    unsigned char *buf = lua_newuserdata(L, bpf_map__value_size(g->map));
    int zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(g->map), &zero, buf) != 0) {
        luaebpf_pusherror_about(L, "global", errno, "global", g->section,
                                "cannot read the section's map");
        lua_error(L);
    }
    VALGRIND_MAKE_MEM_DEFINED(buf, bpf_map__value_size(g->map));
    return buf;
}

/* obj:global(name [, value]): stack 1 object, 2 name, 3 value when given */
int luaebpf_global(lua_State *L, luaebpf_object *o) {
    int write = lua_gettop(L) >= 3;
    const char *name = lua_tostring(L, 2);
    const struct btf *btf = bpf_object__btf(o->obj);
    global_var g;
    if (!find_global(L, o->obj, btf, name, &g))
        return raise_no_global(L, name, btf != NULL);
    int rodata = (bpf_map__map_flags(g.map) & BPF_F_RDONLY_PROG) != 0;
    if (write && o->loaded && rodata) {
        lua_pushfstring(L, "'%s' is in %s, which is frozen once the object is loaded: set "
                        "it before obj:load() (ebpf.load(path, { load = false }))", name,
                        g.section);
        luaebpf_pusherror_about(L, "global", EPERM, "global", name, lua_tostring(L, -1));
        return lua_error(L);
    }
    luaebpf_codec *c = luaebpf_codec_from_btf(L, btf, g.type_id); /* 4 (or 3 when reading) */
    if (c->nodes[0].size != g.size)
        return luaL_error(L, "global '%s': its BTF type is %d bytes, its slot %d", name,
                          (int)c->nodes[0].size, (int)g.size);
    unsigned char *bytes = NULL;
    if (write) { /* encode first: a value that does not fit changes nothing */
        lua_pushfstring(L, "global '%s'", name);
        bytes = lua_newuserdata(L, g.size);
        luaebpf_encode(L, c, 3, bytes, lua_tostring(L, -2), 0);
    }
    unsigned char *section;
    if (!o->loaded) {
        size_t size = 0;
        /* libbpf's image of the section, copied into the map at load; the skeletons
         * libbpf generates write it in place the same way */
        section = (unsigned char *)bpf_map__initial_value(g.map, &size);
        if (!section || (size_t)g.offset + g.size > size)
            return luaL_error(L, "global '%s': section %s has no initial image", name,
                              g.section);
    } else {
        luaebpf_mapping *m = section_mapping(L, o, &g);
        if (m->mem && (size_t)g.offset + g.size > m->len)
            return luaL_error(L, "global '%s' lies past its section", name);
        section = m->mem ? m->mem : read_section(L, &g);
        if (!m->mem && write) { /* not mmapable: the section's whole value is rewritten */
            memcpy(section + g.offset, bytes, g.size);
            int zero = 0;
            if (bpf_map_update_elem(bpf_map__fd(g.map), &zero, section, 0) != 0) {
                luaebpf_pusherror_about(L, "global", errno, "global", name, NULL);
                return lua_error(L);
            }
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    if (write) {
        memcpy(section + g.offset, bytes, g.size);
        lua_pushboolean(L, 1);
        return 1;
    }
    luaebpf_decode(L, c, section + g.offset);
    return 1;
}

/* mmap.c: zero-copy views of BPF_F_MMAPABLE arrays. m:mmap() maps the array
 * read-only (PROT_READ on a read-write fd: the kernel maps only fds opened for
 * writing) and view:get(i) decodes element i from the shared pages with no
 * syscall (through a copy of that one element, so close() can unmap at any
 * time). The mapping holds its own reference to the map, so a view stays
 * valid after the Map is closed; the view also keeps the Map and the value
 * codec alive through its user value. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

typedef struct view {
    unsigned char *base; /* the mapping; NULL once closed */
    size_t len, stride;
    uint32_t n;
    const luaebpf_codec *vc;
} view;

/* close, __close, __gc: idempotent. view:get never reads the pages while Lua
 * code may run (it decodes a copy), so they can go at once, even mid-get. */
static int view_close(lua_State *L) {
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    unsigned char *base = v->base;
    v->base = NULL;
    if (base)
        munmap(base, v->len);
    return 0;
}

static view *check_view(lua_State *L) {
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    if (!v->base)
        luaebpf_raise_closed(L, "get", NULL, 0, "the view was closed");
    return v;
}

/* view:get(i): element i (0-based, like the array's key). The View
 * metatable is upvalue 1 of the methods: checking self is a pointer compare
 * on this hot path; any doubt goes to check_view for the right error. */
static int view_get(lua_State *L) {
    view *v = lua_touserdata(L, 1);
    int mine = v && lua_getmetatable(L, 1);
    if (mine) {
        mine = lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!mine || !v->base)
        v = check_view(L);
    lua_Integer i;
    if (!luaebpf_tointeger_in(L, 2, 0, (lua_Integer)v->n - 1, &i))
        return luaL_argerror(L, 2, lua_pushfstring(L, "an index in 0..%s expected, got %s",
                             LUAEBPF_UTEXT(v->n - 1), lua_type(L, 2) == LUA_TNUMBER
                             ? luaL_tolstring(L, 2, NULL) : luaL_typename(L, 2)));
    /* Decoding allocates, and a finalizer may then close the view, or a raise
     * leave the decode: so it reads a copy, taken when nothing can run. An
     * element wider than the stack copy goes to a userdata made beforehand. */
    uint64_t small[32]; /* 8-byte aligned, as the pages are */
    void *copy = small;
    if (v->stride > sizeof small) {
        copy = lua_newuserdata(L, v->stride);
        v = check_view(L); /* the allocation may have run a finalizer that closed it */
    }
    const unsigned char *elem = v->base + (size_t)i * v->stride;
    if (v->stride == 8)
        memcpy(copy, elem, 8); /* the common u64 or smaller: one load, not a call */
    else
        memcpy(copy, elem, v->stride);
    luaebpf_decode(L, v->vc, copy);
    return 1;
}

static int view_len(lua_State *L) {
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    lua_pushinteger(L, v->n);
    return 1;
}

static int view_tostring(lua_State *L) {
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    lua_pushfstring(L, "luaebpf.View: %s elements of %s%s", LUAEBPF_UTEXT(v->n),
                    v->vc ? v->vc->desc : "?", v->base ? "" : " (closed)");
    return 1;
}

/* m:mmap() -> view */
static int map_mmap(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map_data(L, 1, "mmap");
    if (m->shape.type != BPF_MAP_TYPE_ARRAY || !(m->map_flags & BPF_F_MMAPABLE))
        return luaebpf_raise(L, "mmap", LUAEBPF_ENOTSUPP, m->name, m->id,
                             "only an array created with the \"mmapable\" flag can be mapped");
    if (m->access != 0)
        return luaebpf_raise(L, "mmap", EPERM, m->name, m->id,
                             "the kernel maps only fds opened for writing: open the map with "
                             "access = \"rw\" (the view itself stays read-only)");
    view *v = luaebpf_newuserdata(L, sizeof *v);
    memset(v, 0, sizeof *v);
    luaL_setmetatable(L, LUAEBPF_VIEW);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    v->stride = ((size_t)m->shape.value_size + 7) / 8 * 8;
    v->n = m->max_entries;
    v->len = (v->stride * v->n + page - 1) / page * page;
    v->vc = m->shape.vc;
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);     /* the map */
    luaebpf_shape_push_codec(L, 1, 0);
    lua_rawseti(L, -2, 2);     /* the map's value codec, as it is now */
    luaebpf_setuservalue(L, -2);
    void *p = mmap(NULL, v->len, PROT_READ, MAP_SHARED, m->fd, 0);
    if (p == MAP_FAILED) {
        int no = errno;
        return luaebpf_raise(L, "mmap", no, m->name, m->id,
                             luaebpf_errno_unsupported(no) ? "this array refuses mmap (a value "
                             "holding a bpf_spin_lock?)" : NULL);
    }
    v->base = p;
    return 1;
}

void luaebpf_mmap_open(lua_State *L) {
    static const luaL_Reg methods[] = {{"get", view_get}, {"close", view_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", view_close}, {"__close", view_close},
                                    {"__len", view_len}, {"__tostring", view_tostring},
                                    {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_VIEW, "View", meta, methods, 1);
    lua_getfield(L, -1, "Map");
    lua_pushcfunction(L, map_mmap);
    lua_setfield(L, -2, "mmap");
    lua_pop(L, 1);
}

/* mmap.c: zero-copy views of BPF_F_MMAPABLE arrays. m:mmap() maps the array
 * read-only (PROT_READ on a read-write fd: the kernel maps only fds opened for
 * writing) and view:get(i) decodes element i straight from the shared pages,
 * with no syscall. The mapping holds its own reference to the map, so a view
 * stays valid after the Map is closed; the view also keeps the Map and the
 * value codec alive through its user value. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

typedef struct view {
    unsigned char *base; /* NULL once closed */
    unsigned char *mapped; /* what to munmap: kept until no get() is running */
    int busy;            /* get() calls decoding right now (a finalizer may close) */
    size_t len, stride;
    uint32_t n;
    const luaebpf_codec *vc;
} view;

static void view_unmap(view *v) {
    if (v->mapped && v->busy == 0) {
        munmap(v->mapped, v->len);
        v->mapped = NULL;
    }
}

static int view_close(lua_State *L) { /* close, __close: idempotent */
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    v->base = NULL;
    view_unmap(v); /* deferred to the end of a get() that is decoding */
    return 0;
}

static int view_gc(lua_State *L) { /* nothing can be decoding now, even after a raise */
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    v->base = NULL;
    v->busy = 0;
    view_unmap(v);
    return 0;
}

static view *check_view(lua_State *L) {
    view *v = luaL_checkudata(L, 1, LUAEBPF_VIEW);
    if (!v->base) {
        luaebpf_pusherror(L, "get", EBADF, "closed", NULL, 0, "the view was closed");
        lua_error(L);
    }
    return v;
}

/* view:get(i): element i (0-based, like the array's key) */
static int view_get(lua_State *L) {
    view *v = check_view(L);
    lua_Integer i;
    if (!luaebpf_tointeger_in(L, 2, 0, (lua_Integer)v->n - 1, &i))
        return luaL_argerror(L, 2, lua_pushfstring(L, "an index in 0..%s expected, got %s",
                             LUAEBPF_UTEXT(v->n - 1), lua_type(L, 2) == LUA_TNUMBER
                             ? luaL_tolstring(L, 2, NULL) : luaL_typename(L, 2)));
    /* decoding allocates: a finalizer may close the view meanwhile, so the
     * pages stay mapped until this decode is done */
    v->busy++;
    luaebpf_decode(L, v->vc, v->base + (size_t)i * v->stride);
    v->busy--;
    if (!v->base)
        view_unmap(v);
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
    if (m->type != BPF_MAP_TYPE_ARRAY || !(m->map_flags & BPF_F_MMAPABLE))
        return luaebpf_raise(L, "mmap", 524, m->name, m->id,
                             "only an array created with the \"mmapable\" flag can be mapped");
    if (m->access != 0)
        return luaebpf_raise(L, "mmap", EPERM, m->name, m->id,
                             "the kernel maps only fds opened for writing: open the map with "
                             "access = \"rw\" (the view itself stays read-only)");
    view *v = luaebpf_newuserdata(L, sizeof *v);
    memset(v, 0, sizeof *v);
    luaL_setmetatable(L, LUAEBPF_VIEW);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    v->stride = ((size_t)m->value_size + 7) / 8 * 8;
    v->n = m->max_entries;
    v->len = (v->stride * v->n + page - 1) / page * page;
    v->vc = m->vc;
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);     /* the map */
    luaebpf_getuservalue(L, 1);
    lua_rawgeti(L, -1, 2);     /* the map's value codec, as it is now */
    lua_rawseti(L, -3, 2);
    lua_pop(L, 1);
    luaebpf_setuservalue(L, -2);
    void *p = mmap(NULL, v->len, PROT_READ, MAP_SHARED, m->fd, 0);
    if (p == MAP_FAILED) {
        int no = errno;
        return luaebpf_raise(L, "mmap", no, m->name, m->id,
                             no == ENOTSUP || no == 524 ? "this array refuses mmap (a value "
                             "holding a bpf_spin_lock?)" : NULL);
    }
    v->base = v->mapped = p;
    return 1;
}

void luaebpf_mmap_open(lua_State *L) {
    static const luaL_Reg methods[] = {{"get", view_get}, {"close", view_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", view_gc}, {"__close", view_close},
                                    {"__len", view_len}, {"__tostring", view_tostring},
                                    {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_VIEW, "View", meta, methods, 0);
    lua_getfield(L, -1, "Map");
    lua_pushcfunction(L, map_mmap);
    lua_setfield(L, -2, "mmap");
    lua_pop(L, 1);
}

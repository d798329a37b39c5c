/* link.c: the Link handle. A Link is one attachment of a program: made by
 * obj:attach (object.c attaches, this file owns the handle) or opened from a
 * pin with ebpf.open_link(path). It detaches on close or GC, unless a pin
 * still holds the kernel's link. link:pin(path), link:info(), link:fd(), and
 * link:read(), the whole output of a bpf_iter link, and link:chunks(), the
 * same as it comes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

luaebpf_link *luaebpf_link_push(lua_State *L, int owner_idx, const char *name) {
    if (owner_idx)
        owner_idx = lua_absindex(L, owner_idx);
    luaebpf_link *k = luaebpf_newuserdata(L, sizeof *k);
    k->fd = -1;
    k->link = NULL;
    snprintf(k->prog, sizeof k->prog, "%s", name);
    luaL_setmetatable(L, LUAEBPF_LINK);
    lua_createtable(L, 0, 1);
    if (owner_idx) {
        lua_pushvalue(L, owner_idx);
        lua_setfield(L, -2, "owner");
    }
    luaebpf_setuservalue(L, -2);
    return k;
}

/* Closing the fd detaches the link unless something else holds it: a pin, or
 * another process's fd. libbpf's destroy also frees what a uprobe's link
 * keeps (its perf event fd). */
void luaebpf_link_detach(luaebpf_link *k) {
    struct bpf_link *link = k->link;
    int fd = k->fd;
    k->link = NULL;
    k->fd = -1; /* first: nothing sees it half-closed */
    if (link)
        bpf_link__destroy(link);
    else if (fd >= 0)
        close(fd);
}

static luaebpf_link *check_link(lua_State *L, int idx, const char *op) {
    luaebpf_link *k = luaL_checkudata(L, idx, LUAEBPF_LINK);
    if (k->fd < 0) { /* EBADF: class "closed" */
        luaebpf_pusherror_about(L, op, EBADF, "program", k->prog, "the link was closed");
        lua_error(L);
    }
    return k;
}

static int link_close(lua_State *L) { /* close, __close, __gc: detaches */
    luaebpf_link_detach(luaL_checkudata(L, 1, LUAEBPF_LINK));
    return 0;
}

static int link_tostring(lua_State *L) {
    luaebpf_link *k = luaL_checkudata(L, 1, LUAEBPF_LINK);
    lua_pushfstring(L, "luaebpf.Link: %s (%s)", k->prog, k->fd >= 0 ? "attached" : "detached");
    return 1;
}

/* link:attached() */
static int link_attached(lua_State *L) {
    luaebpf_link *k = luaL_checkudata(L, 1, LUAEBPF_LINK);
    lua_pushboolean(L, k->fd >= 0);
    return 1;
}

/* link:fd() */
static int link_fd(lua_State *L) {
    lua_pushinteger(L, check_link(L, 1, "fd")->fd);
    return 1;
}

/* the kernel's info on the link; 0, or the errno */
static int link_get_info(const luaebpf_link *k, struct bpf_link_info *info) {
    uint32_t len = sizeof *info;
    memset(info, 0, sizeof *info);
    if (bpf_obj_get_info_by_fd(k->fd, info, &len) != 0)
        return errno;
    VALGRIND_MAKE_MEM_DEFINED(info, sizeof *info);
    return 0;
}

static void push_link_type(lua_State *L, uint32_t type) {
    const char *name = libbpf_bpf_link_type_str((enum bpf_link_type)type);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushfstring(L, "type_%d", (int)type);
}

/* link:info() -> the table ebpf.links() gives for this link, or nil, err */
static int link_info(lua_State *L) {
    luaebpf_link *k = check_link(L, 1, "info");
    int no = luaebpf_push_link_info(L, k->fd);
    if (no) {
        lua_pushnil(L);
        luaebpf_pusherror_about(L, "info", no, "program", k->prog, NULL);
        return 2;
    }
    return 1;
}

/* link:pin(path) -> true, or nil, err. The pin holds the kernel's link: it
 * stays attached after link:close() and after this process exits, until the
 * pin is removed (os.remove(path)) and no fd holds it. */
static int link_pin(lua_State *L) {
    luaebpf_link *k = check_link(L, 1, "pin");
    return luaebpf_pin_fd(L, k->fd, luaebpf_check_path(L, 2), k->prog);
}

/* reads all of fd into a malloc'd buffer: 0 and *out, *len, or the errno */
static int read_all(int fd, char **out, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return ENOMEM;
    for (;;) {
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue; /* the kernel goes on from where the interrupted read stopped */
        if (r < 0) {
            int no = errno;
            free(buf);
            return no;
        }
        if (r == 0)
            break;
        VALGRIND_MAKE_MEM_DEFINED(buf + n, (size_t)r);
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* raises class "invalid" for op on a link that is not an iterator's */
static void check_iter(lua_State *L, luaebpf_link *k, const char *op) {
    struct bpf_link_info info;
    int no = link_get_info(k, &info);
    if (no || info.type == BPF_LINK_TYPE_ITER)
        return; /* no info: bpf_iter_create will answer */
    push_link_type(L, info.type);
    lua_pushfstring(L, "not an iterator link: %s() needs the link of an iter/... program, "
                    "this is a %s link", op, lua_tostring(L, -1));
    luaebpf_pusherror_about(L, op, EINVAL, "program", k->prog, lua_tostring(L, -1));
    lua_error(L); /* a programming error, not a kernel refusal */
}

static int push_bytes(lua_State *L) { /* protected: bytes (light), length */
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* link:read() -> the whole output of a bpf_iter link, as a string; nil, err
 * when the kernel refuses. Each call runs the iterator once more from the
 * start (a new iterator fd). No Lua runs between the read and the copy. */
static int link_read(lua_State *L) {
    luaebpf_link *k = check_link(L, 1, "read");
    lua_settop(L, 1);
    lua_pushcfunction(L, push_bytes); /* allocates on 5.1: before buf exists */
    check_iter(L, k, "read");
    char *buf = NULL;
    size_t len = 0;
    int no = 0, fd = bpf_iter_create(k->fd);
    if (fd < 0)
        no = errno;
    if (!no) {
        no = read_all(fd, &buf, &len);
        close(fd);
    }
    if (no) {
        lua_pushnil(L);
        luaebpf_pusherror_about(L, "read", no, "program", k->prog, NULL);
        return 2;
    }
    lua_pushlightuserdata(L, buf);
    lua_pushinteger(L, (lua_Integer)len);
    int status = lua_pcall(L, 2, 1, 0); /* a memory error must not leak buf */
    free(buf);
    if (status != 0)
        return lua_error(L);
    return 1;
}

/* ------------------------------------------------- link:chunks() */

#define CHUNKS "luaebpf.Chunks"
#define CHUNK_SIZE 16384

/* one run of an iterator being read: its fd and the buffer each read fills */
typedef struct chunks {
    int fd;                 /* -1 once the run ended or was closed */
    char buf[CHUNK_SIZE];
} chunks;

/* run:close(), __gc, __close: a loop left early */
static int chunks_close(lua_State *L) {
    chunks *c = luaL_checkudata(L, 1, CHUNKS);
    int fd = c->fd;
    c->fd = -1;
    if (fd >= 0)
        close(fd);
    return 0;
}

/* upvalues: the chunks state, the link (for messages) */
static int chunks_step(lua_State *L) {
    chunks *c = lua_touserdata(L, lua_upvalueindex(1));
    if (c->fd < 0)
        return 0;
    ssize_t n;
    do {
        n = read(c->fd, c->buf, sizeof c->buf);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        int no = errno;
        close(c->fd);
        c->fd = -1;
        if (n == 0)
            return 0;
        luaebpf_link *k = lua_touserdata(L, lua_upvalueindex(2));
        luaebpf_pusherror_about(L, "read", no, "program", k->prog, NULL);
        return lua_error(L); /* an iterator raises: the loop must not end silently */
    }
    VALGRIND_MAKE_MEM_DEFINED(c->buf, (size_t)n);
    lua_pushlstring(L, c->buf, (size_t)n); /* copies before any collection step */
    return 1;
}

/* for chunk in link:chunks() do ... end: one run of an iterator link, read
 * in chunks of at most 16 KiB as the kernel hands them out (a line the
 * program printed may straddle two chunks). Returns the step function, the
 * run (the loop's state, which the step does not read: it is there so that
 * `local step, run = link:chunks()` can run:close() a loop left early where
 * no closing value does it), nil, and on 5.4 the run as closing value. */
static int link_chunks(lua_State *L) {
    luaebpf_link *k = check_link(L, 1, "chunks");
    lua_settop(L, 1);
    chunks *c = lua_newuserdata(L, sizeof *c); /* link, chunks */
    c->fd = -1;
    luaL_setmetatable(L, CHUNKS);
    check_iter(L, k, "chunks");
    int fd = bpf_iter_create(k->fd);
    if (fd < 0) {
        int no = errno;
        luaebpf_pusherror_about(L, "chunks", no, "program", k->prog, NULL);
        return lua_error(L);
    }
    c->fd = fd;
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, chunks_step, 2);
    lua_pushvalue(L, 2);
    lua_pushnil(L);
    if (!LUAEBPF_FOR_CLOSES)
        return 3;
    lua_pushvalue(L, 2); /* a fourth for-loop value: `break` closes the run at once */
    return 4;
}

/* core.open_link(path) -> the Link pinned at path; closing it leaves the
 * pinned link attached */
static int core_open_link(lua_State *L) {
    const char *path = luaebpf_check_path(L, 1);
    /* a link attach made is "bpf_link", one opened from a pin "bpf-link" */
    static const char *const kinds[] = {"bpf_link", "bpf-link", NULL};
    luaebpf_link *k = luaebpf_link_push(L, 0, path); /* before the fd: it may raise */
    k->fd = luaebpf_open_pinned(L, path, kinds,
                                "the pinned object is not a link (a map or a program?)");
    return 1;
}

void luaebpf_link_open(lua_State *L) {
    static const luaL_Reg link_methods[] = {
        {"close", link_close}, {"attached", link_attached}, {"fd", link_fd},
        {"info", link_info},   {"pin", link_pin},           {"read", link_read},
        {"chunks", link_chunks}, {NULL, NULL}};
    static const luaL_Reg link_meta[] = {
        {"__gc", link_close}, {"__close", link_close}, {"__tostring", link_tostring},
        {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_LINK, "Link", link_meta, link_methods, 0);
    /* module, mt: not a class in the module; a run has one method */
    static const luaL_Reg chunks_meta[] = {{"__gc", chunks_close}, {"__close", chunks_close},
                                           {NULL, NULL}};
    static const luaL_Reg chunks_methods[] = {{"close", chunks_close}, {NULL, NULL}};
    luaL_newmetatable(L, CHUNKS);
    luaL_setfuncs(L, chunks_meta, 0);
    luaL_newlib(L, chunks_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_open_link);
    lua_setfield(L, -2, "open_link");
}

/* program.c: the Program handle, one loaded BPF program held by an fd of its
 * own: obj:program(name) (a dup of the object's fd, keeping the object
 * alive) or ebpf.open_program(path) (a pinned program). prog:pin(path),
 * prog:info(), prog:fd() (for a prog_array's values, or a host's own
 * attach), prog:close(). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

typedef struct luaebpf_program {
    int fd;                 /* -1 once closed */
    char name[64];          /* the program's name, or the pinned path */
} luaebpf_program;

static luaebpf_program *push_closed(lua_State *L, int owner_idx, const char *name) {
    if (owner_idx)
        owner_idx = lua_absindex(L, owner_idx);
    luaebpf_program *p = luaebpf_newuserdata(L, sizeof *p);
    p->fd = -1;
    snprintf(p->name, sizeof p->name, "%s", name);
    luaL_setmetatable(L, LUAEBPF_PROGRAM);
    lua_createtable(L, 0, 1);
    if (owner_idx) {
        lua_pushvalue(L, owner_idx);
        lua_setfield(L, -2, "owner");
    }
    luaebpf_setuservalue(L, -2);
    return p;
}

void luaebpf_program_push(lua_State *L, int owner_idx, int fd, const char *name) {
    luaebpf_program *p = push_closed(L, owner_idx, name);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) {
        luaebpf_pusherror_about(L, "program", errno, "program", name,
                                "cannot duplicate the program's fd");
        lua_error(L);
    }
    p->fd = dup;
}

static luaebpf_program *check_program(lua_State *L, int idx, const char *op) {
    luaebpf_program *p = luaL_checkudata(L, idx, LUAEBPF_PROGRAM);
    if (p->fd < 0) { /* EBADF: class "closed" */
        luaebpf_pusherror_about(L, op, EBADF, "program", p->name, "the program was closed");
        lua_error(L);
    }
    return p;
}

static int program_close(lua_State *L) { /* close, __close, __gc */
    luaebpf_program *p = luaL_checkudata(L, 1, LUAEBPF_PROGRAM);
    int fd = p->fd;
    p->fd = -1;
    if (fd >= 0)
        close(fd);
    return 0;
}

static int program_tostring(lua_State *L) {
    luaebpf_program *p = luaL_checkudata(L, 1, LUAEBPF_PROGRAM);
    lua_pushfstring(L, "luaebpf.Program: %s%s", p->name, p->fd >= 0 ? "" : " (closed)");
    return 1;
}

/* prog:fd() */
static int program_fd(lua_State *L) {
    lua_pushinteger(L, check_program(L, 1, "fd")->fd);
    return 1;
}

/* prog:info() -> the table ebpf.progs() gives for this program, or nil, err */
static int program_info(lua_State *L) {
    luaebpf_program *p = check_program(L, 1, "info");
    int no = luaebpf_push_prog_info(L, p->fd);
    if (no) {
        lua_pushnil(L);
        luaebpf_pusherror_about(L, "info", no, "program", p->name, NULL);
        return 2;
    }
    return 1;
}

/* prog:pin(path) -> true, or nil, err; the pin keeps the program loaded */
static int program_pin(lua_State *L) {
    luaebpf_program *p = check_program(L, 1, "pin");
    return luaebpf_pin_fd(L, p->fd, luaebpf_check_path(L, 2), p->name);
}

/* core.open_program(path) -> the Program pinned at path */
static int core_open_program(lua_State *L) {
    const char *path = luaebpf_check_path(L, 1);
    static const char *const kinds[] = {"bpf-prog", NULL};
    luaebpf_program *p = push_closed(L, 0, path); /* before the fd: it may raise */
    p->fd = luaebpf_open_pinned(L, path, kinds,
                                "the pinned object is not a program (a map or a link?)");
    return 1;
}

void luaebpf_program_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"close", program_close}, {"fd", program_fd}, {"info", program_info},
        {"pin", program_pin},     {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", program_close}, {"__close", program_close}, {"__tostring", program_tostring},
        {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_PROGRAM, "Program", meta, methods, 0);
    lua_pushcfunction(L, core_open_program);
    lua_setfield(L, -2, "open_program");
}

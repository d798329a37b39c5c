/* system.c: questions about the whole system rather than one map: every
 * loaded map (core.maps) and the number of possible CPUs (core.ncpus, which
 * asks shape.c: the per-CPU layout is the shape's). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

/* core.ncpus() */
static int core_ncpus(lua_State *L) {
    int n = luaebpf_ncpus();
    if (n <= 0)
        return luaebpf_raise(L, "ncpus", -n, NULL, 0, "cannot read "
                             "/sys/devices/system/cpu/possible");
    lua_pushinteger(L, n);
    return 1;
}

/* upvalue 1: the last id returned */
static int maps_step(lua_State *L) {
    uint32_t id = (uint32_t)lua_tointeger(L, lua_upvalueindex(1));
    for (;;) {
        uint32_t next;
        if (bpf_map_get_next_id(id, &next) != 0) {
            int no = errno;
            if (no == ENOENT)
                return 0;
            return luaebpf_raise(L, "maps", no, NULL, 0, no == EPERM ?
                                 "listing maps needs CAP_SYS_ADMIN" : NULL);
        }
        id = next;
        lua_pushinteger(L, id);
        lua_replace(L, lua_upvalueindex(1));
        LIBBPF_OPTS(bpf_get_fd_by_id_opts, o, .open_flags = BPF_F_RDONLY);
        int fd = bpf_map_get_fd_by_id_opts(id, &o);
        if (fd < 0 && (errno == EACCES || errno == EPERM)) {
            o.open_flags = 0; /* some maps refuse read-only fds; info needs either */
            fd = bpf_map_get_fd_by_id_opts(id, &o);
        }
        if (fd < 0) {
            int no = errno;
            if (no == ENOENT)
                continue; /* freed since get_next_id */
            return luaebpf_raise(L, "maps", no, NULL, id, no == EPERM ?
                                 "opening maps by id needs CAP_SYS_ADMIN" : NULL);
        }
        struct bpf_map_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        int r = bpf_obj_get_info_by_fd(fd, &info, &len);
        int no = errno;
        close(fd);
        if (r != 0)
            return luaebpf_raise(L, "maps", no, NULL, id, NULL);
        luaebpf_push_info(L, &info, UINT32_MAX);
        return 1;
    }
}

/* for info in core.maps() do ... end */
static int core_maps(lua_State *L) {
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, maps_step, 1);
    return 1;
}

void luaebpf_system_open(lua_State *L) {
    static const luaL_Reg funcs[] = {{"maps", core_maps}, {"ncpus", core_ncpus}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}

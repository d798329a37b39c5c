/* system.c: questions about the whole system rather than one map: every
 * loaded map (core.maps), program (core.progs) and link (core.links), as
 * info tables like bpftool's (prog:info() and link:info() push the same), and
 * the number of possible CPUs (core.ncpus, which asks shape.c: the per-CPU
 * layout is the shape's). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

/* core.ncpus() */
static int core_ncpus(lua_State *L) {
    int n = luaebpf_ncpus();
    if (n <= 0)
        return luaebpf_raise(L, "ncpus", -n, NULL, 0, "cannot read "
                             "/sys/devices/system/cpu/possible");
    lua_pushinteger(L, n);
    return 1;
}

/* What sets the three listings apart: how to find the next id, open it, and
 * turn its fd into an info table (pushed; 0, or an errno with nothing pushed) */
typedef struct listing {
    const char *op, *what; /* "maps", "map" */
    int rdonly;            /* open with BPF_F_RDONLY first (maps) */
    int (*next_id)(uint32_t, uint32_t *);
    int (*fd_by_id)(uint32_t, const struct bpf_get_fd_by_id_opts *);
    int (*push)(lua_State *L, int fd);
} listing;

/* protected: the listing (light userdata) and an fd -> its info table (nil
 * when the push failed), the push's errno. Building the table allocates, and
 * an allocation may run a finalizer that raises (5.1, LuaJIT and 5.3 pass
 * its error on): the fd must outlive that only in the caller, which closes it. */
static int push_protected(lua_State *L) {
    const listing *ls = lua_touserdata(L, 1);
    int fd = (int)lua_tointeger(L, 2);
    int no = ls->push(L, fd);
    if (no)
        lua_pushnil(L);
    lua_pushinteger(L, no);
    return 2;
}

/* upvalue 1: the last id returned; upvalue 2: the listing (light userdata) */
static int list_step(lua_State *L) {
    const listing *ls = lua_touserdata(L, lua_upvalueindex(2));
    uint32_t id = (uint32_t)lua_tointeger(L, lua_upvalueindex(1));
    lua_settop(L, 0);
    for (;;) {
        uint32_t next;
        if (ls->next_id(id, &next) != 0) {
            int no = errno;
            if (no == ENOENT)
                return 0;
            return luaebpf_raise(L, ls->op, no, NULL, 0, no == EPERM ?
                                 lua_pushfstring(L, "listing %ss needs CAP_SYS_ADMIN", ls->what)
                                 : NULL);
        }
        id = next;
        lua_pushinteger(L, id);
        lua_replace(L, lua_upvalueindex(1));
        lua_pushcfunction(L, push_protected); /* before the fd: it allocates on 5.1 */
        /* programs and links take no open flags; a map is opened read-only,
         * and read-write when it refuses that (info needs either) */
        LIBBPF_OPTS(bpf_get_fd_by_id_opts, o, .open_flags = ls->rdonly ? BPF_F_RDONLY : 0);
        int fd = ls->fd_by_id(id, &o);
        if (fd < 0 && ls->rdonly && (errno == EACCES || errno == EPERM)) {
            o.open_flags = 0;
            fd = ls->fd_by_id(id, &o);
        }
        if (fd < 0) {
            int no = errno;
            lua_settop(L, 0);
            if (no == ENOENT)
                continue; /* freed since get_next_id */
            return luaebpf_raise(L, ls->op, no, NULL, id, no == EPERM ?
                                 lua_pushfstring(L, "opening %ss by id needs CAP_SYS_ADMIN",
                                                 ls->what) : NULL);
        }
        lua_pushlightuserdata(L, (void *)ls);
        lua_pushinteger(L, fd);
        int status = lua_pcall(L, 2, 2, 0);
        close(fd);
        if (status != 0)
            return lua_error(L);
        int no = (int)lua_tointeger(L, -1);
        lua_pop(L, 1); /* the info table, or nil */
        if (no == ENOENT) {
            lua_settop(L, 0);
            continue;
        }
        if (no)
            return luaebpf_raise(L, ls->op, no, NULL, id, NULL);
        return 1;
    }
}

static int push_map(lua_State *L, int fd) {
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
        return errno;
    luaebpf_push_info(L, &info, UINT32_MAX);
    luaebpf_push_fdinfo(L, fd, -1);
    return 0;
}

/* CLOCK_REALTIME - CLOCK_BOOTTIME: the wall-clock time of boot, in ns */
static int64_t boot_wall_ns(void) {
    struct timespec rt, bt;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_BOOTTIME, &bt);
    return ((int64_t)rt.tv_sec - bt.tv_sec) * 1000000000 + ((int64_t)rt.tv_nsec - bt.tv_nsec);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* a kernel enum's name from libbpf, or "<prefix>N" for a number newer than it */
static void set_enum(lua_State *L, const char *k, const char *name, const char *prefix,
                     uint32_t v) {
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushfstring(L, "%s%s", prefix, LUAEBPF_UTEXT(v));
    lua_setfield(L, -2, k);
}

/* the fields bpftool prog show prints. The map ids need a second call with a
 * buffer of the size the first reported; a userdata holds it, so a raise
 * frees it. */
int luaebpf_push_prog_info(lua_State *L, int fd) {
    struct bpf_prog_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
        return errno;
    uint32_t nmaps = info.nr_map_ids;
    uint32_t *ids = NULL;
    if (nmaps) {
        ids = lua_newuserdata(L, nmaps * sizeof *ids);
        struct bpf_prog_info again;
        memset(&again, 0, sizeof again);
        again.nr_map_ids = nmaps;
        again.map_ids = (uint64_t)(uintptr_t)ids;
        len = sizeof again;
        if (bpf_obj_get_info_by_fd(fd, &again, &len) != 0) {
            int no = errno;
            lua_pop(L, 1);
            return no;
        }
        if (again.nr_map_ids < nmaps) /* a map dropped meanwhile (prog replaced?) */
            nmaps = again.nr_map_ids;
        VALGRIND_MAKE_MEM_DEFINED(ids, nmaps * sizeof *ids);
    }
    lua_createtable(L, 0, 16);
    set_int(L, "id", info.id);
    set_str(L, "name", info.name);
    set_enum(L, "type", libbpf_bpf_prog_type_str(info.type), "type_", info.type);
    char tag[2 * BPF_TAG_SIZE + 1];
    for (int i = 0; i < BPF_TAG_SIZE; i++)
        snprintf(tag + 2 * i, 3, "%02x", info.tag[i]);
    set_str(L, "tag", tag);
    lua_createtable(L, (int)nmaps, 0);
    for (uint32_t i = 0; i < nmaps; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "map_ids");
    /* load_time counts from boot (CLOCK_BOOTTIME); bpftool prints wall-clock seconds */
    set_int(L, "loaded_at", (lua_Integer)((boot_wall_ns() + (int64_t)info.load_time) /
                                          1000000000));
    set_int(L, "uid", info.created_by_uid);
    set_int(L, "btf_id", info.btf_id);
    set_int(L, "bytes_xlated", info.xlated_prog_len);
    set_int(L, "bytes_jited", info.jited_prog_len);
    lua_pushboolean(L, info.jited_prog_len > 0);
    lua_setfield(L, -2, "jited");
    lua_pushboolean(L, info.gpl_compatible);
    lua_setfield(L, -2, "gpl_compatible");
    set_int(L, "verified_insns", info.verified_insns);
    if (info.run_time_ns || info.run_cnt) { /* only with kernel.bpf_stats_enabled, as bpftool */
        set_int(L, "run_time_ns", (lua_Integer)info.run_time_ns);
        set_int(L, "run_cnt", (lua_Integer)info.run_cnt);
    }
    if (info.recursion_misses)
        set_int(L, "recursion_misses", (lua_Integer)info.recursion_misses);
    luaebpf_push_fdinfo(L, fd, -1); /* memlock, as bpftool's bytes_memlock */
    if (ids)
        lua_remove(L, -2); /* the id buffer */
    return 0;
}

/* the fields bpftool link show prints for the common link types; the names
 * (tracepoint, iterator target) need a buffer of our own, given up front */
int luaebpf_push_link_info(lua_State *L, int fd) {
    struct bpf_link_info info;
    char name[256];
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    memset(name, 0, sizeof name);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
        return errno;
    /* the name buffers are type-specific: ask again once the type is known */
    if (info.type == BPF_LINK_TYPE_RAW_TRACEPOINT || info.type == BPF_LINK_TYPE_ITER) {
        memset(&info, 0, sizeof info);
        len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
            return errno;
        uint32_t type = info.type;
        memset(&info, 0, sizeof info);
        if (type == BPF_LINK_TYPE_RAW_TRACEPOINT) {
            info.raw_tracepoint.tp_name = (uint64_t)(uintptr_t)name;
            info.raw_tracepoint.tp_name_len = sizeof name;
        } else {
            info.iter.target_name = (uint64_t)(uintptr_t)name;
            info.iter.target_name_len = sizeof name;
        }
        len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
            return errno;
        VALGRIND_MAKE_MEM_DEFINED(name, sizeof name);
        name[sizeof name - 1] = '\0';
    }
    lua_createtable(L, 0, 8);
    set_int(L, "id", info.id);
    set_enum(L, "type", libbpf_bpf_link_type_str(info.type), "type_", info.type);
    set_int(L, "prog_id", info.prog_id);
    switch (info.type) {
    case BPF_LINK_TYPE_RAW_TRACEPOINT:
        set_str(L, "tp_name", name);
        break;
    case BPF_LINK_TYPE_ITER:
        set_str(L, "target_name", name);
        if (info.iter.map.map_id)
            set_int(L, "map_id", info.iter.map.map_id);
        break;
    case BPF_LINK_TYPE_TRACING:
        set_enum(L, "attach_type", libbpf_bpf_attach_type_str(info.tracing.attach_type),
                 "attach_", info.tracing.attach_type);
        set_int(L, "target_obj_id", info.tracing.target_obj_id);
        set_int(L, "target_btf_id", info.tracing.target_btf_id);
        break;
    case BPF_LINK_TYPE_CGROUP:
        set_enum(L, "attach_type", libbpf_bpf_attach_type_str(info.cgroup.attach_type),
                 "attach_", info.cgroup.attach_type);
        set_int(L, "cgroup_id", (lua_Integer)info.cgroup.cgroup_id);
        break;
    case BPF_LINK_TYPE_NETNS:
        set_enum(L, "attach_type", libbpf_bpf_attach_type_str(info.netns.attach_type),
                 "attach_", info.netns.attach_type);
        set_int(L, "netns_ino", info.netns.netns_ino);
        break;
    case BPF_LINK_TYPE_XDP:
        set_int(L, "ifindex", info.xdp.ifindex);
        break;
    default:
        break;
    }
    return 0;
}

static const listing map_listing = {"maps", "map", 1, bpf_map_get_next_id,
                                    bpf_map_get_fd_by_id_opts, push_map};
static const listing prog_listing = {"progs", "program", 0, bpf_prog_get_next_id,
                                     bpf_prog_get_fd_by_id_opts, luaebpf_push_prog_info};
static const listing link_listing = {"links", "link", 0, bpf_link_get_next_id,
                                     bpf_link_get_fd_by_id_opts, luaebpf_push_link_info};

static int list_iter(lua_State *L, const listing *ls) {
    lua_pushinteger(L, 0);
    lua_pushlightuserdata(L, (void *)ls);
    lua_pushcclosure(L, list_step, 2);
    return 1;
}

/* for info in core.maps() do ... end; also progs() and links() */
static int core_maps(lua_State *L) { return list_iter(L, &map_listing); }
static int core_progs(lua_State *L) { return list_iter(L, &prog_listing); }
static int core_links(lua_State *L) { return list_iter(L, &link_listing); }

void luaebpf_system_open(lua_State *L) {
    static const luaL_Reg funcs[] = {{"maps", core_maps},   {"progs", core_progs},
                                     {"links", core_links}, {"ncpus", core_ncpus},
                                     {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}

/* holders.c: what keeps a map alive, and its lifecycle. Owns m:holders() and
 * core.holders([id]) (the programs whose map_ids name the map, the
 * processes with an fd on it, from /proc/<pid>/fdinfo, the iterator links
 * over it, the maps of maps holding it as an entry, and its pins, which
 * pins.c finds) and m:freeze().
 *
 * The scans collect into malloc'd arrays with no Lua call in between (a
 * raise would leak the open directories); a protected call then builds the
 * tables, and the arrays are freed whatever it does. */
#include <ctype.h>
#include <dirent.h>
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

/* m:freeze() -> true | nil, err */
static int map_freeze(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "freeze");
    int r;
    LUAEBPF_RETRY(r, bpf_map_freeze(m->fd), r == 0);
    if (r != 0) {
        int no = errno;
        const char *detail = NULL;
        if (no == EPERM)
            detail = m->access == BPF_F_RDONLY ? "opened read-only; freezing needs "
                                                 "access = \"rw\""
                                               : "the map is frozen already";
        else if (no == EBUSY)
            detail = "a writable mmap of the map is open";
        return luaebpf_fail(L, "freeze", no, m, detail);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------ the scans */

typedef struct proc_hold {
    int pid;
    uint32_t map_id, fds;
    char comm[16];
} proc_hold;

typedef struct prog_hold {
    uint32_t prog_id, map_id, type;
    char name[16];
} prog_hold;

typedef struct link_hold {
    uint32_t link_id, prog_id, map_id;
} link_hold;

typedef struct outer_hold {
    uint32_t outer_id, map_id; /* the map of maps, the inner map one of its entries names */
} outer_hold;

typedef struct pin_hold {
    uint32_t map_id;
    char *path;             /* malloc'd */
} pin_hold;

typedef struct scan {
    uint32_t want;          /* the map id asked about; 0: every map */
    pin_hold *pins;
    size_t npins, pins_cap;
    link_hold *links;
    size_t nlinks, links_cap;
    struct outer_hold *outers;
    size_t nouters, outers_cap;
    uint32_t pins_hidden;   /* bpffs directories or pins that refused us, or left unwalked */
    proc_hold *procs;
    size_t nprocs, procs_cap;
    prog_hold *progs;
    size_t nprogs, progs_cap;
    uint32_t hidden;        /* processes whose fds could not be read */
    int programs_hidden;    /* listing programs was refused (no CAP_SYS_ADMIN) */
    int err;                /* an errno that ended the program scan, or 0 */
} scan;

static void *grow(void *p, size_t *cap, size_t n, size_t size) {
    if (n < *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 16;
    void *q = realloc(p, c * size);
    if (q)
        *cap = c;
    return q;
}

/* counts fd `name` of the process whose fd directory is fddir toward the map
 * it refers to, if it is a map fd; 0, or EACCES when its fdinfo is closed to us */
static int scan_fd(scan *s, int pid, int fddir, const char *name, proc_hold **mine,
                   size_t first) {
    char target[64], text[1024], path[64];
    ssize_t n = readlinkat(fddir, name, target, sizeof target - 1);
    if (n < 0)
        return 0; /* closed meanwhile */
    target[n] = '\0';
    if (strcmp(target, "anon_inode:bpf-map") != 0)
        return 0;
    /* fdinfo is read only for map fds: a process may list its fds to us and
     * still keep fdinfo closed (pid 1 in a container), which matters only
     * when it holds a map */
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%.20s", pid, name);
    int no = luaebpf_read_small(AT_FDCWD, path, text, sizeof text);
    if (no)
        return no == EACCES || no == EPERM ? EACCES : 0;
    long long id = luaebpf_fdinfo_field(text, "map_id");
    if (id <= 0 || (s->want && (uint32_t)id != s->want))
        return 0;
    for (size_t i = first; i < s->nprocs; i++) { /* this process's entry for that map */
        if (s->procs[i].map_id == (uint32_t)id) {
            s->procs[i].fds++;
            return 0;
        }
    }
    proc_hold *p = grow(s->procs, &s->procs_cap, s->nprocs, sizeof *p);
    if (!p)
        return ENOMEM;
    s->procs = p;
    p = &s->procs[s->nprocs++];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->map_id = (uint32_t)id;
    p->fds = 1;
    *mine = p;
    return 0;
}

static void read_comm(int pid, char comm[16]) {
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    if (luaebpf_read_small(AT_FDCWD, path, buf, sizeof buf) != 0) {
        strcpy(comm, "?");
        return;
    }
    buf[strcspn(buf, "\n")] = '\0';
    buf[15] = '\0'; /* the kernel's comm holds 15 bytes */
    memcpy(comm, buf, 16);
}

/* every process's map fds; 0, or ENOMEM (a process we may not look into is
 * counted in hidden, one that exited meanwhile is skipped) */
static int scan_procs(scan *s) {
    DIR *proc = opendir("/proc");
    if (!proc)
        return errno;
    struct dirent *e;
    int err = 0;
    while (!err && (e = readdir(proc)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        int pid = atoi(e->d_name);
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", pid);
        DIR *fds = opendir(path);
        if (!fds) {
            if (errno == EACCES || errno == EPERM)
                s->hidden++;
            continue;
        }
        size_t first = s->nprocs;
        proc_hold *mine = NULL;
        int denied = 0;
        struct dirent *f;
        while ((f = readdir(fds)) != NULL) {
            if (f->d_name[0] == '.')
                continue;
            int no = scan_fd(s, pid, dirfd(fds), f->d_name, &mine, first);
            if (no == EACCES)
                denied = 1;
            else if (no) {
                err = no;
                break;
            }
        }
        closedir(fds);
        if (denied)
            s->hidden++;
        if (mine) {
            char comm[16];
            read_comm(pid, comm);
            for (size_t i = first; i < s->nprocs; i++)
                memcpy(s->procs[i].comm, comm, sizeof comm);
        }
    }
    closedir(proc);
    return err;
}

/* adds the program behind fd to the holders of each map it uses (of s->want
 * only, when set); 0, ENOENT (gone), or another errno */
static int scan_prog(scan *s, int fd) {
    struct bpf_prog_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
        return errno;
    uint32_t n = info.nr_map_ids;
    if (!n)
        return 0;
    uint32_t *ids = calloc(n, sizeof *ids);
    if (!ids)
        return ENOMEM;
    struct bpf_prog_info again;
    memset(&again, 0, sizeof again);
    again.nr_map_ids = n;
    again.map_ids = (uint64_t)(uintptr_t)ids;
    len = sizeof again;
    int err = 0;
    if (bpf_obj_get_info_by_fd(fd, &again, &len) != 0)
        err = errno;
    if (again.nr_map_ids < n)
        n = again.nr_map_ids;
    VALGRIND_MAKE_MEM_DEFINED(ids, n * sizeof *ids);
    for (uint32_t i = 0; !err && i < n; i++) {
        if (s->want && ids[i] != s->want)
            continue;
        prog_hold *p = grow(s->progs, &s->progs_cap, s->nprogs, sizeof *p);
        if (!p) {
            err = ENOMEM;
            break;
        }
        s->progs = p;
        p = &s->progs[s->nprogs++];
        p->prog_id = info.id;
        p->map_id = ids[i];
        p->type = info.type;
        memcpy(p->name, info.name, sizeof p->name);
        p->name[sizeof p->name - 1] = '\0';
    }
    free(ids);
    return err;
}

/* every loaded program's map ids; 0 or an errno (EPERM without CAP_SYS_ADMIN) */
static int scan_progs(scan *s) {
    uint32_t id = 0, next;
    while (bpf_prog_get_next_id(id, &next) == 0) {
        id = next;
        int fd = bpf_prog_get_fd_by_id(id);
        if (fd < 0) {
            if (errno == ENOENT)
                continue; /* unloaded since get_next_id */
            return errno;
        }
        int no = scan_prog(s, fd);
        close(fd);
        if (no && no != ENOENT)
            return no;
    }
    return errno == ENOENT ? 0 : errno;
}

/* every iterator link over a map (iter/bpf_map_elem and the like, attached
 * with a map): it holds the map; its program's map_ids do not name it. 0 or
 * an errno (EPERM without CAP_SYS_ADMIN) */
static int scan_links(scan *s) {
    uint32_t id = 0, next;
    while (bpf_link_get_next_id(id, &next) == 0) {
        id = next;
        int fd = bpf_link_get_fd_by_id(id);
        if (fd < 0) {
            if (errno == ENOENT)
                continue; /* released since get_next_id */
            return errno;
        }
        struct bpf_link_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        int r = bpf_obj_get_info_by_fd(fd, &info, &len); /* no name buffer: none is filled */
        close(fd);
        if (r != 0 || info.type != BPF_LINK_TYPE_ITER || !info.iter.map.map_id ||
            (s->want && info.iter.map.map_id != s->want))
            continue;
        link_hold *p = grow(s->links, &s->links_cap, s->nlinks, sizeof *p);
        if (!p)
            return ENOMEM;
        s->links = p;
        p = &s->links[s->nlinks++];
        p->link_id = info.id;
        p->prog_id = info.prog_id;
        p->map_id = info.iter.map.map_id;
    }
    return errno == ENOENT ? 0 : errno;
}

/* adds the outer map behind fd (a map of maps with keys of key_size bytes
 * and at most max_entries of them) to the holders of each inner map an entry
 * names; 0 or ENOMEM. The walk is bounded: entries changing under it may be
 * missed, never looped on. */
static int scan_outer(scan *s, int fd, uint32_t outer_id, uint32_t key_size,
                      uint32_t max_entries) {
    unsigned char *key = calloc(2, key_size ? key_size : 1);
    if (!key)
        return ENOMEM;
    unsigned char *next = key + key_size;
    const void *prev = NULL;
    int err = 0;
    for (uint64_t steps = 0; steps <= (uint64_t)max_entries; steps++) {
        if (bpf_map_get_next_key(fd, prev, next) != 0)
            break; /* ENOENT: the end */
        memcpy(key, next, key_size);
        prev = key;
        uint32_t id = 0;
        if (bpf_map_lookup_elem(fd, key, &id) != 0 || !id || (s->want && id != s->want))
            continue; /* an empty array_of_maps slot, or deleted meanwhile */
        outer_hold *p = grow(s->outers, &s->outers_cap, s->nouters, sizeof *p);
        if (!p) {
            err = ENOMEM;
            break;
        }
        s->outers = p;
        p = &s->outers[s->nouters++];
        p->outer_id = outer_id;
        p->map_id = id;
    }
    free(key);
    return err;
}

/* every map of maps, entry by entry: an entry holds its inner map. 0 or an
 * errno (EPERM without CAP_SYS_ADMIN) */
static int scan_outers(scan *s) {
    uint32_t id = 0, next;
    while (bpf_map_get_next_id(id, &next) == 0) {
        id = next;
        LIBBPF_OPTS(bpf_get_fd_by_id_opts, o, .open_flags = BPF_F_RDONLY);
        int fd = bpf_map_get_fd_by_id_opts(id, &o);
        if (fd < 0 && (errno == EACCES || errno == EPERM)) {
            o.open_flags = 0; /* a map that refuses read-only opens (info needs either) */
            fd = bpf_map_get_fd_by_id_opts(id, &o);
        }
        if (fd < 0) {
            if (errno == ENOENT || errno == EACCES || errno == EPERM)
                continue; /* freed since get_next_id, or closed to both opens */
            return errno;
        }
        struct bpf_map_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        int err = 0;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
            luaebpf_type_holds_maps(info.type) && info.value_size == sizeof(uint32_t))
            err = scan_outer(s, fd, info.id, info.key_size, info.max_entries);
        close(fd);
        if (err)
            return err;
    }
    return errno == ENOENT ? 0 : errno;
}

/* ------------------------------------------------------------ the pins */

static int pin_found(void *ctx, uint32_t map_id, const char *path) {
    scan *s = ctx;
    pin_hold *p = grow(s->pins, &s->pins_cap, s->npins, sizeof *p);
    if (!p)
        return ENOMEM;
    s->pins = p;
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    p = &s->pins[s->npins++];
    p->map_id = map_id;
    p->path = copy;
    return 0;
}

/* ------------------------------------------------------------ the tables */

/* pushes { programs = {}, processes = {}, pins = {}, links = {}, outer = {},
 * hidden = n, pins_hidden = n [, programs_hidden = true] } */
static void push_holders_table(lua_State *L, const scan *s) {
    lua_createtable(L, 0, 8);
    lua_newtable(L);
    lua_setfield(L, -2, "programs");
    lua_newtable(L);
    lua_setfield(L, -2, "processes");
    lua_newtable(L);
    lua_setfield(L, -2, "pins");
    lua_newtable(L);
    lua_setfield(L, -2, "links");
    lua_newtable(L);
    lua_setfield(L, -2, "outer");
    lua_pushinteger(L, s->hidden);
    lua_setfield(L, -2, "hidden");
    lua_pushinteger(L, s->pins_hidden);
    lua_setfield(L, -2, "pins_hidden");
    if (s->programs_hidden) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "programs_hidden");
    }
}

/* the holders table of map_id in the result at idx (want set: the result itself) */
static void holders_of(lua_State *L, const scan *s, int idx, uint32_t map_id) {
    if (s->want) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_rawgeti(L, idx, map_id);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        push_holders_table(L, s);
        lua_pushvalue(L, -1);
        lua_rawseti(L, idx, map_id);
    }
}

/* appends the table on top to the list `field` of the table below it */
static void append(lua_State *L, const char *field) {
    lua_getfield(L, -2, field);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

/* protected: light userdata scan -> the result table */
static int build(lua_State *L) {
    const scan *s = lua_touserdata(L, 1);
    if (s->want)
        push_holders_table(L, s);
    else
        lua_newtable(L);
    int res = lua_gettop(L);
    for (size_t i = 0; i < s->nprogs; i++) {
        const prog_hold *p = &s->progs[i];
        holders_of(L, s, res, p->map_id);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, p->prog_id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, p->name);
        lua_setfield(L, -2, "name");
        const char *tn = libbpf_bpf_prog_type_str(p->type);
        if (tn)
            lua_pushstring(L, tn);
        else
            lua_pushfstring(L, "type_%s", LUAEBPF_UTEXT(p->type));
        lua_setfield(L, -2, "type");
        append(L, "programs");
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < s->nprocs; i++) {
        const proc_hold *p = &s->procs[i];
        holders_of(L, s, res, p->map_id);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, p->pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, p->comm);
        lua_setfield(L, -2, "comm");
        lua_pushinteger(L, p->fds);
        lua_setfield(L, -2, "fds");
        append(L, "processes");
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < s->nlinks; i++) {
        const link_hold *k = &s->links[i];
        holders_of(L, s, res, k->map_id);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, k->link_id);
        lua_setfield(L, -2, "id");
        lua_pushliteral(L, "iter");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, k->prog_id);
        lua_setfield(L, -2, "prog_id");
        append(L, "links");
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < s->nouters; i++) {
        holders_of(L, s, res, s->outers[i].map_id);
        lua_pushinteger(L, s->outers[i].outer_id);
        append(L, "outer");
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < s->npins; i++) {
        holders_of(L, s, res, s->pins[i].map_id);
        lua_pushstring(L, s->pins[i].path);
        append(L, "pins");
        lua_pop(L, 1);
    }
    return 1;
}

/* scans for the holders of map id `want` (0: every map) and pushes the result */
static int holders_push(lua_State *L, uint32_t want, const char *name) {
    scan s;
    memset(&s, 0, sizeof s);
    s.want = want;
    int no = scan_progs(&s);
    const char *detail = NULL;
    if (!no)
        no = scan_links(&s);
    if (!no)
        no = scan_outers(&s);
    if (no == EPERM || no == EACCES) { /* the processes may still be ours to see */
        s.programs_hidden = 1;
        no = 0;
    }
    if (!no) {
        no = scan_procs(&s);
        detail = "cannot read /proc";
    }
    if (!no) {
        no = luaebpf_pins_walk(want, pin_found, &s, &s.pins_hidden);
        detail = NULL;
    }
    int status = 0;
    if (!no) {
        lua_pushcfunction(L, build);
        lua_pushlightuserdata(L, &s);
        status = lua_pcall(L, 1, 1, 0);
    }
    free(s.procs);
    free(s.progs);
    free(s.links);
    free(s.outers);
    for (size_t i = 0; i < s.npins; i++)
        free(s.pins[i].path);
    free(s.pins);
    if (no)
        return luaebpf_raise(L, "holders", no, name, want, detail);
    if (status)
        return lua_error(L);
    return 1;
}

/* m:holders() */
static int map_holders(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "holders");
    return holders_push(L, m->id, m->name);
}

/* core.holders([id]): of the map with that id, or { [id] = holders } of every
 * map something holds */
static int core_holders(lua_State *L) {
    if (lua_isnoneornil(L, 1))
        return holders_push(L, 0, NULL);
    lua_Integer id;
    if (!luaebpf_tointeger_in(L, 1, 1, UINT32_MAX, &id))
        return luaL_argerror(L, 1, lua_pushfstring(L, "a map id (integer >= 1) expected, got %s",
                             lua_type(L, 1) == LUA_TNUMBER ? luaL_tolstring(L, 1, NULL)
                                                           : luaL_typename(L, 1)));
    int fd = bpf_map_get_fd_by_id((uint32_t)id); /* the map must exist: a typo is not "no holders" */
    if (fd < 0) {
        int no = errno;
        return luaebpf_raise(L, "holders", no, NULL, (uint32_t)id, luaebpf_open_hint(no, 0, 1));
    }
    close(fd);
    return holders_push(L, (uint32_t)id, NULL);
}

void luaebpf_holders_open(lua_State *L) {
    static const luaL_Reg funcs[] = {{"holders", core_holders}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"holders", map_holders}, {"freeze", map_freeze}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
    lua_getfield(L, -1, "Map"); /* module, methods */
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
}

/* hint.c: why a map operation failed, in words a user can act on: the
 * detail an error object carries after the errno's own words. Owns the hints
 * of the element operations and walks (by map type, access, flags, the frozen
 * state), of opening a pin or an id, and of pinning. Knows the kernel's
 * answers; says nothing about what errno codes are called (err.c does). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "luaebpf.h"

/* ------------------------------------------------- element operations */

/* bpf_map_info has no frozen field; fdinfo has had a "frozen:" line since 5.2 */
static int map_is_frozen(int fd) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "re");
    int frozen = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "frozen:", 7) == 0) {
            frozen = atoi(line + 7) != 0;
            break;
        }
    }
    fclose(f);
    return frozen;
}

/* types whose keys are fds of another kind of object, as the kernel names them */
static const char *fd_key_kind(uint32_t type) {
    switch (type) {
    case BPF_MAP_TYPE_TASK_STORAGE: return "a pidfd (pidfd_open)";
    case BPF_MAP_TYPE_INODE_STORAGE: return "an open file's fd";
    case BPF_MAP_TYPE_SK_STORAGE: return "a socket's fd";
    case 32: return "a cgroup directory's fd"; /* CGRP_STORAGE: newer than these headers */
    default: return NULL;
    }
}

/* types whose values user space writes as fds of another kind of object */
static const char *fd_value_kind(uint32_t type) {
    switch (type) {
    case BPF_MAP_TYPE_PROG_ARRAY: return "a BPF program's fd";
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY: return "a perf event's fd";
    case BPF_MAP_TYPE_CGROUP_ARRAY: return "a cgroup directory's fd";
    case BPF_MAP_TYPE_ARRAY_OF_MAPS:
    case BPF_MAP_TYPE_HASH_OF_MAPS: return "a map's fd";
    case BPF_MAP_TYPE_SOCKMAP:
    case BPF_MAP_TYPE_SOCKHASH:
    case BPF_MAP_TYPE_REUSEPORT_SOCKARRAY:
    case BPF_MAP_TYPE_XSKMAP: return "a socket's fd";
    default: return NULL;
    }
}

static int op_writes(const char *op) {
    return strcmp(op, "update") == 0 || strcmp(op, "delete") == 0 ||
           strcmp(op, "lookup_and_delete") == 0 || strcmp(op, "drain") == 0;
}

/* EPERM: which side refused the write or the read */
static const char *permission_hint(const luaebpf_map *m, int writes) {
    if (writes && m->access == BPF_F_RDONLY)
        return "opened read-only; open with access = \"rw\" to write";
    if (!writes && m->access == BPF_F_WRONLY)
        return "opened write-only; open with access = \"rw\" to read";
    if (writes && (m->map_flags & BPF_F_RDONLY))
        return "the map was created with flag rdonly: user space cannot write it";
    if (!writes && (m->map_flags & BPF_F_WRONLY))
        return "the map was created with flag wronly: user space cannot read it";
    if (writes && m->fd >= 0 && map_is_frozen(m->fd))
        return "the map is frozen (bpf_map_freeze): user space can no longer change it; "
               "reads still work";
    return NULL;
}

/* EINVAL, EOPNOTSUPP, ENOTSUPP: what this map type or this flag cannot do */
static const char *unsupported_hint(const luaebpf_map *m, const char *op, int errnum,
                                    const char *flag) {
    uint32_t type = m->shape.type;
    int is_array = luaebpf_type_is_array(type);
    if (flag && strcmp(flag, "lock") == 0)
        return "\"lock\" needs a value holding a struct bpf_spin_lock";
    if (strcmp(op, "drain") == 0)
        return is_array ? "array elements cannot be deleted: read them with dump or pairs, "
                          "reset them with update"
                        : "this map type has no lookup_and_delete: drain works on hash maps";
    if (strcmp(op, "lookup_and_delete") == 0)
        return "this map type has no lookup_and_delete";
    if (strcmp(op, "delete") == 0 && is_array)
        return "array elements cannot be deleted; write a zero value with update instead";
    if (strcmp(op, "update") != 0 || errnum != EINVAL)
        return NULL;
    if (type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS)
        return "the value must be a map like the outer map's inner map (same type, "
               "key size, value size and flags)";
    if (fd_value_kind(type))
        return type == BPF_MAP_TYPE_PROG_ARRAY
            ? "the value must be a BPF program's fd (of the type the array holds)"
            : "the value is not an fd of the kind this map holds";
    return NULL;
}

const char *luaebpf_elem_hint(const luaebpf_map *m, const char *op, int errnum,
                              const char *flag) {
    uint32_t type = m->shape.type;
    switch (errnum) {
    case EPERM:
        return permission_hint(m, op_writes(op));
    case EBADF: /* the handle was open: the fd the kernel refused is in the key or value */
        if (fd_key_kind(type))
            return type == BPF_MAP_TYPE_TASK_STORAGE
                ? "task_storage keys are pidfds (pidfd_open): the key is not an open fd"
                : "this map's keys are fds and the key is not an open fd";
        if (fd_value_kind(type))
            return "this map's values are fds and the value is not an open fd";
        return NULL;
    case E2BIG:
        return luaebpf_type_is_array(type) ? "the index is past max_entries"
                                           : "the map is full (max_entries reached)";
    case EEXIST:
        return "the key exists and the flag was \"noexist\"";
    case ENOENT:
        return flag && strcmp(flag, "exist") == 0 ? "the key is absent and the flag was \"exist\""
                                                  : NULL;
    case EINVAL:
    case EOPNOTSUPP:
    case LUAEBPF_ENOTSUPP:
        return unsupported_hint(m, op, errnum, flag);
    default:
        return NULL;
    }
}

/* -------------------------------------------------------- open and pin */

const char *luaebpf_open_hint(int errnum, uint32_t access, int by_id) {
    switch (errnum) {
    case ENOENT:
        return by_id ? "no loaded map has this id" : "no such pinned object (is a bpffs mounted there?)";
    case EACCES:
    case EPERM:
        if (by_id)
            return "opening a map by id needs CAP_SYS_ADMIN";
        return access == BPF_F_RDONLY ? "needs read permission on the pin file"
               : "needs read and write permission on the pin file (or open with access = \"r\")";
    case EINVAL:
        return by_id ? NULL : "not a pinned BPF object (is this path on a bpffs?)";
    default:
        return NULL;
    }
}

/* every directory on the way to path can be searched by this process */
static int dir_searchable(const char *path) {
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return 1; /* cannot tell */
    memcpy(dir, path, n + 1);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int ok = access(dir, X_OK) == 0;
        *p = '/';
        if (!ok)
            return 0;
    }
    return 1;
}

/* a pin path outside any bpffs makes the kernel answer EACCES or EINVAL */
static int on_bpffs(const char *path) {
    struct statfs st;
    if (statfs(path, &st) != 0)
        return 1; /* cannot tell: keep the kernel's word */
    return st.f_type == BPF_FS_MAGIC;
}

int luaebpf_open_failed(lua_State *L, const char *path, int no, uint32_t access) {
    struct stat st;
    if (no == EACCES && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        luaebpf_pusherror(L, "open", no, "invalid", path, 0, "a directory, not a pinned map");
        return lua_error(L);
    }
    if ((no == EACCES || no == EPERM || no == EINVAL) && !on_bpffs(path)) {
        luaebpf_pusherror(L, "open", no, "invalid", path, 0,
                          "not on a bpffs: pinned maps live on a mounted bpf filesystem");
        return lua_error(L);
    }
    /* on a bpffs, only an object that is not a map refuses a valid access
     * flag (a link: the kernel opens links read-write only) */
    if (no == EINVAL && access)
        return luaebpf_raise(L, "open", no, path, 0, LUAEBPF_NOT_A_MAP);
    if (no == EACCES && !dir_searchable(path))
        return luaebpf_raise(L, "open", no, path, 0, "needs search (x) permission on the "
                             "directory of the pin, and read permission on the pin file");
    return luaebpf_raise(L, "open", no, path, 0, luaebpf_open_hint(no, access, 0));
}

const char *luaebpf_pin_hint(int errnum, const char *path) {
    return errnum == EEXIST ? "the path exists already"
           : errnum == EPERM || errnum == EACCES ? "needs write permission on the directory "
                                                   "(and a bpffs there)"
           : !on_bpffs(path) ? "not on a bpffs" : NULL;
}

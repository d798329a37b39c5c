/* pinned.c: pinning a program or a link on a bpffs, opening the one a path
 * pins, and telling what kind of BPF object an fd is. Maps pin and open
 * their own way (map.c: access flags, the map's error fields); pins.c finds
 * where maps are pinned. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

int luaebpf_fd_is(int fd, const char *anon) {
    char proc[64], target[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, target, sizeof target - 1);
    if (n < 0)
        return -1;
    target[n] = '\0';
    return strncmp(target, "anon_inode:", 11) == 0 && strcmp(target + 11, anon) == 0;
}

int luaebpf_pin_fd(lua_State *L, int fd, const char *path, const char *name) {
    if (bpf_obj_pin(fd, path) != 0) {
        int no = errno;
        lua_pushnil(L);
        luaebpf_pusherror_about(L, "pin", no, "program", name, luaebpf_pin_hint(no, path));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int luaebpf_open_pinned(lua_State *L, const char *path, const char *const kinds[],
                        const char *not_it) {
    int fd;
    LUAEBPF_RETRY(fd, bpf_obj_get(path), fd >= 0);
    if (fd < 0) {
        int no = errno;
        luaebpf_pusherror_about(L, "open", no, "object", path,
                                no == ENOENT ? "no such pin" : luaebpf_pin_hint(no, path));
        return lua_error(L);
    }
    for (int i = 0; kinds[i]; i++)
        if (luaebpf_fd_is(fd, kinds[i]) > 0)
            return fd;
    close(fd);
    luaebpf_pusherror_about(L, "open", EINVAL, "object", path, not_it);
    return lua_error(L);
}

/* fdinfo.c: what /proc/<pid>/fdinfo/<fd> says about a BPF fd that bpf(2)
 * does not: whether a map is frozen, the memory the kernel charges for it,
 * and which map an fd of another process refers to (holders.c). A leaf: it
 * calls no other file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "luaebpf.h"

long long luaebpf_fdinfo_field(const char *text, const char *key) {
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, n) == 0 && p[n] == ':')
            return strtoll(p + n + 1, NULL, 10);
    }
    return -1;
}

int luaebpf_read_small(int dirfd, const char *path, char *buf, size_t size) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, size - 1);
    int no = errno;
    close(fd);
    if (n < 0)
        return no;
    buf[n] = '\0';
    return 0;
}

void luaebpf_fdinfo_read(int fd, luaebpf_fdinfo *fi) {
    char path[64], text[1024];
    fi->frozen = fi->memlock = -1;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    if (luaebpf_read_small(AT_FDCWD, path, text, sizeof text) != 0)
        return; /* no /proc: the fields stay absent, not guessed */
    fi->frozen = luaebpf_fdinfo_field(text, "frozen");
    fi->memlock = luaebpf_fdinfo_field(text, "memlock");
}

void luaebpf_fdinfo_push(lua_State *L, const luaebpf_fdinfo *fi, int idx) {
    idx = lua_absindex(L, idx);
    if (fi->frozen >= 0) {
        lua_pushboolean(L, fi->frozen != 0);
        lua_setfield(L, idx, "frozen");
    }
    if (fi->memlock >= 0) {
        lua_pushinteger(L, (lua_Integer)fi->memlock);
        lua_setfield(L, idx, "memlock");
    }
}

void luaebpf_push_fdinfo(lua_State *L, int fd, int idx) {
    luaebpf_fdinfo fi;
    luaebpf_fdinfo_read(fd, &fi);
    luaebpf_fdinfo_push(L, &fi, idx);
}

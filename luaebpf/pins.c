/* pins.c: where maps are pinned. Pins show in no fdinfo and no info field:
 * the only way to find them is bpftool's (map show -f), opening every file
 * on every bpffs mounted in this process's mount namespace and asking each
 * map for its id. holders.c lists them among a map's holders. Calls no Lua. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include "luaebpf.h"

typedef struct pin_walk {
    uint32_t want;          /* the map id asked about; 0: every map */
    int (*found)(void *ctx, uint32_t map_id, const char *path);
    void *ctx;
    uint32_t hidden;        /* directories or pins that refused us, or left unwalked */
    size_t budget;          /* entries the walk may still look at */
} pin_walk;

/* A map opens read-only (then write-only); a pinned program or link refuses both
 * flags with EINVAL, a bpffs file that is no BPF object (maps.debug) with
 * EACCES although the file itself is readable, which tells it from a pin
 * closed to us. */
#define PIN_DEPTH 16            /* directory levels below a mount point */
#define PIN_BUDGET 100000       /* entries looked at, over all mounts */

/* the pin at path (name in dirfd): found's answer when it is a map's, else 0 */
static int scan_pin(pin_walk *w, int dirfd, const char *path, const char *name) {
    LIBBPF_OPTS(bpf_obj_get_opts, o, .file_flags = BPF_F_RDONLY);
    int fd = bpf_obj_get_opts(path, &o);
    if (fd < 0 && errno == EACCES) {
        o.file_flags = BPF_F_WRONLY;
        fd = bpf_obj_get_opts(path, &o);
    }
    if (fd < 0) {
        /* EPERM: bpf() itself refused us (kernel.unprivileged_bpf_disabled) */
        if (errno == EPERM || (errno == EACCES && faccessat(dirfd, name, R_OK, AT_EACCESS) != 0))
            w->hidden++;
        return 0; /* not a map, or gone meanwhile */
    }
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    int r = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    if (r != 0 || (w->want && info.id != w->want))
        return 0;
    return w->found(w->ctx, info.id, path);
}

/* walks the directory path (its name in path[0, len)), which is on device
 * dev: a directory on another device is another mount, walked on its own */
static int walk_pins(pin_walk *w, char *path, size_t len, dev_t dev, int depth) {
    DIR *d = opendir(path);
    if (!d) {
        if (errno == EACCES || errno == EPERM)
            w->hidden++;
        return 0;
    }
    struct stat st;
    if (fstat(dirfd(d), &st) != 0 || st.st_dev != dev) {
        closedir(d);
        return 0;
    }
    int err = 0;
    struct dirent *e;
    while (!err && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (w->budget == 0) { /* a directory left unfinished: its pins may be missing */
            w->hidden++;
            break;
        }
        w->budget--;
        size_t n = strlen(e->d_name);
        if (len + 1 + n >= PATH_MAX)
            continue;
        path[len] = '/';
        memcpy(path + len + 1, e->d_name, n + 1);
        unsigned char type = e->d_type;
        if (type == DT_UNKNOWN) {
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
        if (type == DT_DIR && depth < PIN_DEPTH)
            err = walk_pins(w, path, len + 1 + n, dev, depth + 1);
        else if (type == DT_REG) /* a symlink is not a pin: its target is, if anything */
            err = scan_pin(w, dirfd(d), path, e->d_name);
    }
    path[len] = '\0';
    closedir(d);
    return err;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape_octal(char *p) {
    char *w = p;
    for (; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

int luaebpf_pins_walk(uint32_t want, int (*found)(void *ctx, uint32_t map_id, const char *path),
                      void *ctx, uint32_t *hidden) {
    pin_walk walk = {want, found, ctx, 0, PIN_BUDGET}, *w = &walk;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0; /* no /proc: none found, not an error */
    char line[4096], path[PATH_MAX];
    dev_t seen[64];
    size_t nseen = 0;
    int err = 0;
    while (!err && fgets(line, sizeof line, f)) {
        /* "36 25 0:32 / /sys/fs/bpf rw,relatime shared:7 - bpf bpf rw,mode=700" */
        char *dash = strstr(line, " - ");
        if (!dash || strncmp(dash, " - bpf ", 7) != 0)
            continue;
        char *fields[5];
        char *p = line;
        int k;
        for (k = 0; k < 5; k++) {
            fields[k] = p;
            p = strchr(p, ' ');
            if (!p || p > dash)
                break;
            *p++ = '\0';
        }
        if (k < 5 || strcmp(fields[3], "/") != 0)
            continue; /* a bind mount of a subdirectory: its mount is walked whole */
        unescape_octal(fields[4]);
        struct stat st;
        struct statfs sfs; /* a bpffs hidden under a later mount is not walked */
        if (stat(fields[4], &st) != 0 || statfs(fields[4], &sfs) != 0 ||
            sfs.f_type != BPF_FS_MAGIC)
            continue;
        int dup = 0;
        for (size_t i = 0; i < nseen; i++)
            dup |= seen[i] == st.st_dev;
        if (dup) /* the same bpffs mounted twice: its pins are listed once */
            continue;
        if (nseen < sizeof seen / sizeof seen[0])
            seen[nseen++] = st.st_dev;
        size_t len = strlen(fields[4]);
        if (len >= PATH_MAX)
            continue;
        memcpy(path, fields[4], len + 1);
        err = walk_pins(w, path, len, st.st_dev, 0);
    }
    fclose(f);
    *hidden += w->hidden;
    return err;
}


/* decoders.c: what the bytes of a decoder node (LUAEBPF_DECODED, layout.c)
 * mean, both ways, with no Lua in sight: encode.c and decode.c call it and
 * own the Lua side (values, paths, messages). Addresses go through the C
 * library (inet_ntop writes RFC 5952 text), kernel symbols through ksym.c,
 * syscall and errno names through sysnames.c; interface names, cgroup paths
 * and the boot clock are read from the system when asked. A value that maps
 * to nothing is handed back as its integer: a read never fails for it. */
#define _GNU_SOURCE /* nftw and its FTW_PHYS, FTW_MOUNT */
#include <arpa/inet.h>
#include <ftw.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "luaebpf.h"

/* ------------------------------------------------------------- integers */

static uint64_t load_host(const unsigned char *p, uint32_t size) {
    if (size == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void store_host(unsigned char *p, uint64_t v, uint32_t size) {
    if (size == 4) {
        uint32_t t = (uint32_t)v;
        memcpy(p, &t, 4);
    } else {
        memcpy(p, &v, 8);
    }
}

/* ------------------------------------------------------------- cgroups */
/* A cgroup id is the inode number of its directory on the cgroup2 mount.
 * Ids are mapped to paths by walking that mount once and caching what it
 * held; an id not found walks it again, at most once a second, so a new
 * cgroup is found and an unknown id cannot make every read walk the tree. */

typedef struct cgroup_dir {
    uint64_t id;
    char *path; /* under the mount, "/" for its root, as /proc/PID/cgroup writes it */
} cgroup_dir;

static struct {
    pthread_mutex_t lock;
    cgroup_dir *dirs;
    size_t n, cap;
    size_t root_len;        /* of the mount point, while walking */
    struct timespec walked; /* when the last walk began; 0: never */
    int failed;             /* the walk ran out of memory: keep what was read */
} cg = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, {0, 0}, 0};

/* the first cgroup2 mount point in /proc/self/mountinfo into buf; 0 when none */
static int cgroup2_mount(char *buf, size_t size) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        /* "36 35 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw,..." */
        const char *sep = strstr(line, " - cgroup2 ");
        char mnt[4096];
        if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            continue;
        size_t j = 0; /* the kernel writes space, tab, newline, backslash as \ooo */
        for (const char *s = mnt; *s && j + 1 < size; j++) {
            if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
                buf[j] = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
                s += 4;
            } else {
                buf[j] = *s++;
            }
        }
        buf[j] = '\0';
        found = 1;
    }
    fclose(f);
    return found;
}

static int cgroup_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)ftw;
    if (flag != FTW_D)
        return 0;
    if (cg.n == cg.cap) {
        size_t cap = cg.cap ? cg.cap * 2 : 64;
        cgroup_dir *dirs = realloc(cg.dirs, cap * sizeof *dirs);
        if (!dirs) {
            cg.failed = 1;
            return 1; /* stops the walk */
        }
        cg.dirs = dirs;
        cg.cap = cap;
    }
    const char *rel = path + cg.root_len;
    char *copy = strdup(*rel ? rel : "/");
    if (!copy) {
        cg.failed = 1;
        return 1;
    }
    cg.dirs[cg.n].id = (uint64_t)st->st_ino;
    cg.dirs[cg.n++].path = copy;
    return 0;
}

static int by_id(const void *a, const void *b) {
    uint64_t x = ((const cgroup_dir *)a)->id, y = ((const cgroup_dir *)b)->id;
    return x < y ? -1 : x > y;
}

/* called with cg.lock held: reads the mount anew */
static void cgroup_walk(void) {
    char mnt[4096];
    for (size_t i = 0; i < cg.n; i++)
        free(cg.dirs[i].path);
    cg.n = 0;
    cg.failed = 0;
    if (!cgroup2_mount(mnt, sizeof mnt))
        return;
    size_t len = strlen(mnt);
    while (len > 1 && mnt[len - 1] == '/')
        mnt[--len] = '\0';
    cg.root_len = len == 1 ? 0 : len; /* a mount at "/" keeps the whole path */
    nftw(mnt, cgroup_visit, 16, FTW_PHYS | FTW_MOUNT);
    qsort(cg.dirs, cg.n, sizeof *cg.dirs, by_id);
}

/* the cache lives until the module is unloaded (dlclose of its last user) */
__attribute__((destructor)) static void cgroup_unload(void) {
    for (size_t i = 0; i < cg.n; i++)
        free(cg.dirs[i].path);
    free(cg.dirs);
    cg.dirs = NULL;
    cg.n = cg.cap = 0;
}

static const cgroup_dir *cgroup_find(uint64_t id) {
    size_t lo = 0, hi = cg.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cg.dirs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < cg.n && cg.dirs[lo].id == id ? &cg.dirs[lo] : NULL;
}

/* the path of cgroup id into buf; 0 when no cgroup has that id */
static int cgroup_path(uint64_t id, char *buf, size_t size) {
    pthread_mutex_lock(&cg.lock);
    const cgroup_dir *d = cgroup_find(id);
    if (!d) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((cg.walked.tv_sec == 0 && cg.walked.tv_nsec == 0) ||
            now.tv_sec - cg.walked.tv_sec >= 2 ||
            (now.tv_sec - cg.walked.tv_sec) * 1000000000L + now.tv_nsec - cg.walked.tv_nsec
                >= 1000000000L) {
            cg.walked = now;
            cgroup_walk();
            d = cgroup_find(id);
        }
    }
    int found = d && strlen(d->path) < size;
    if (found)
        strcpy(buf, d->path);
    pthread_mutex_unlock(&cg.lock);
    return found;
}

/* ------------------------------------------------------------ addresses */

/* addr/prefixlen of an LPM trie key (u32 prefix length in host order, then
 * the address: 4 bytes in an 8-byte key, 16 in a 20-byte one) */
static void cidr_text(const unsigned char *p, uint32_t size, char *buf, size_t bufsize) {
    uint32_t prefixlen;
    char addr[INET6_ADDRSTRLEN];
    memcpy(&prefixlen, p, 4);
    inet_ntop(size == 8 ? AF_INET : AF_INET6, p + 4, addr, sizeof addr);
    snprintf(buf, bufsize, "%s/%u", addr, prefixlen);
}

static int hexdigit(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "02:00:00:00:00:01" (either case) into 6 bytes; 0 when it is not one */
static int mac_parse(const char *s, unsigned char *p) {
    if (strlen(s) != 17)
        return 0;
    for (int i = 0; i < 6; i++) {
        int hi = hexdigit(s[3 * i]), lo = hexdigit(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
            return 0;
        p[i] = (unsigned char)(hi * 16 + lo);
    }
    return 1;
}

/* "10.1.0.0/16" (or an address alone: the whole length) into an LPM trie key */
static const char *cidr_parse(const luaebpf_node *n, const char *s, unsigned char *p) {
    int v4 = n->size == 8;
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN + 1];
    if (alen >= sizeof addr)
        return luaebpf_decoded_expected(n);
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(v4 ? AF_INET : AF_INET6, addr, p + 4) != 1)
        return luaebpf_decoded_expected(n);
    unsigned long len = v4 ? 32 : 128;
    if (slash) {
        const char *d = slash + 1;
        char *end;
        if (*d < '0' || *d > '9' || strlen(d) > 3)
            return v4 ? "an IPv4 prefix length 0..32 after the '/'"
                      : "an IPv6 prefix length 0..128 after the '/'";
        len = strtoul(d, &end, 10);
        if (*end || len > (v4 ? 32u : 128u))
            return v4 ? "an IPv4 prefix length 0..32 after the '/'"
                      : "an IPv6 prefix length 0..128 after the '/'";
    }
    uint32_t prefixlen = (uint32_t)len;
    memcpy(p, &prefixlen, 4);
    return NULL;
}

/* ---------------------------------------------------------------- reads */

int luaebpf_decoded_read(const luaebpf_node *n, const unsigned char *p, char *buf, size_t size,
                         uint64_t *num, double *f) {
    switch (n->decoder) {
    case LUAEBPF_DEC_IPV4:
        inet_ntop(AF_INET, p, buf, (socklen_t)size);
        return LUAEBPF_READ_TEXT;
    case LUAEBPF_DEC_IPV4_HOST: {
        uint32_t a = htonl((uint32_t)load_host(p, 4));
        inet_ntop(AF_INET, &a, buf, (socklen_t)size);
        return LUAEBPF_READ_TEXT;
    }
    case LUAEBPF_DEC_IPV6:
        inet_ntop(AF_INET6, p, buf, (socklen_t)size);
        return LUAEBPF_READ_TEXT;
    case LUAEBPF_DEC_MAC:
        snprintf(buf, size, "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2], p[3], p[4], p[5]);
        return LUAEBPF_READ_TEXT;
    case LUAEBPF_DEC_CIDR:
        cidr_text(p, n->size, buf, size);
        return LUAEBPF_READ_TEXT;
    case LUAEBPF_DEC_BOOT_NS: {
        /* the realtime clock's distance from the boot clock now, plus the value;
         * seconds and nanoseconds apart, so no value can overflow the sum */
        struct timespec rt, bt;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_BOOTTIME, &bt);
        uint64_t v = load_host(p, 8);
        int64_t sec = (int64_t)rt.tv_sec - (int64_t)bt.tv_sec + (int64_t)(v / 1000000000u);
        int64_t nsec = (int64_t)rt.tv_nsec - (int64_t)bt.tv_nsec + (int64_t)(v % 1000000000u);
        *f = (double)sec + (double)nsec / 1e9;
        return LUAEBPF_READ_FLOAT;
    }
    default:
        break;
    }
    uint64_t v = load_host(p, n->size);
    const char *name = NULL;
    *num = v;
    switch (n->decoder) {
    case LUAEBPF_DEC_KSYM: {
        uint64_t off;
        if (!luaebpf_ksym(v, &off, buf, size))
            return LUAEBPF_READ_NUMBER;
        if (off) {
            size_t len = strlen(buf);
            snprintf(buf + len, size - len, "+0x%llx", (unsigned long long)off);
        }
        return LUAEBPF_READ_TEXT;
    }
    case LUAEBPF_DEC_SYSCALL:
        name = luaebpf_syscall_name(v);
        break;
    case LUAEBPF_DEC_ERRNO: {
        int64_t e = n->size == 4 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
        *num = (uint64_t)e;
        name = e != INT64_MIN ? luaebpf_errno_name(e < 0 ? -e : e) : NULL;
        if (name && e < 0) {
            snprintf(buf, size, "-%s", name);
            return LUAEBPF_READ_TEXT;
        }
        break;
    }
    case LUAEBPF_DEC_IFINDEX: {
        char ifname[IF_NAMESIZE];
        if (v == 0 || !if_indextoname((unsigned)v, ifname))
            return LUAEBPF_READ_NUMBER;
        snprintf(buf, size, "%s", ifname);
        return LUAEBPF_READ_TEXT;
    }
    case LUAEBPF_DEC_CGROUP:
        return cgroup_path(v, buf, size) ? LUAEBPF_READ_TEXT : LUAEBPF_READ_NUMBER;
    default:
        break;
    }
    if (!name)
        return LUAEBPF_READ_NUMBER;
    snprintf(buf, size, "%s", name);
    return LUAEBPF_READ_TEXT;
}

/* --------------------------------------------------------------- writes */

const char *luaebpf_decoded_expected(const luaebpf_node *n) {
    switch (n->decoder) {
    case LUAEBPF_DEC_IPV4:
    case LUAEBPF_DEC_IPV4_HOST: return "an IPv4 address such as \"10.0.0.1\"";
    case LUAEBPF_DEC_IPV6: return "an IPv6 address such as \"2001:db8::1\"";
    case LUAEBPF_DEC_MAC: return "a MAC address such as \"02:00:00:00:00:01\"";
    case LUAEBPF_DEC_CIDR:
        return n->size == 8 ? "an IPv4 prefix such as \"10.1.0.0/16\""
                            : "an IPv6 prefix such as \"2001:db8::/32\"";
    case LUAEBPF_DEC_SYSCALL:
        if (!luaebpf_sysnames_built())
            return n->size == 4 ? "a u32 (this build has no syscall names: make generates them)"
                                : "a u64 (this build has no syscall names: make generates them)";
        return n->size == 4 ? "a syscall name such as \"getpid\" or a u32"
                            : "a syscall name such as \"getpid\" or a u64";
    case LUAEBPF_DEC_ERRNO:
        if (!luaebpf_sysnames_built())
            return n->size == 4 ? "an i32 (this build has no errno names: make generates them)"
                                : "an i64 (this build has no errno names: make generates them)";
        return n->size == 4 ? "an errno name such as \"ENOENT\" or \"-ENOENT\", or an i32"
                            : "an errno name such as \"ENOENT\" or \"-ENOENT\", or an i64";
    case LUAEBPF_DEC_KSYM: return "a kernel address (an integer: ksym writes no names)";
    case LUAEBPF_DEC_IFINDEX: return "an interface index (an integer: ifindex writes no names)";
    case LUAEBPF_DEC_CGROUP: return "a cgroup id (an integer: cgroup writes no paths)";
    default: return "nanoseconds since boot (an integer)";
    }
}

int luaebpf_decoded_takes_number(const luaebpf_node *n) {
    return n->decoder >= LUAEBPF_DEC_KSYM;
}

const char *luaebpf_decoded_parse(const luaebpf_node *n, const char *s, unsigned char *p) {
    switch (n->decoder) {
    case LUAEBPF_DEC_IPV4:
        return inet_pton(AF_INET, s, p) == 1 ? NULL : luaebpf_decoded_expected(n);
    case LUAEBPF_DEC_IPV4_HOST: {
        uint32_t a;
        if (inet_pton(AF_INET, s, &a) != 1)
            return luaebpf_decoded_expected(n);
        store_host(p, ntohl(a), 4);
        return NULL;
    }
    case LUAEBPF_DEC_IPV6:
        return inet_pton(AF_INET6, s, p) == 1 ? NULL : luaebpf_decoded_expected(n);
    case LUAEBPF_DEC_MAC:
        return mac_parse(s, p) ? NULL : luaebpf_decoded_expected(n);
    case LUAEBPF_DEC_CIDR:
        return cidr_parse(n, s, p);
    case LUAEBPF_DEC_SYSCALL: {
        int64_t nr = luaebpf_syscall_number(s);
        if (nr < 0)
            return luaebpf_decoded_expected(n);
        store_host(p, (uint64_t)nr, n->size);
        return NULL;
    }
    case LUAEBPF_DEC_ERRNO: {
        int neg = *s == '-';
        int64_t no = luaebpf_errno_number(s + neg);
        if (no < 0)
            return luaebpf_decoded_expected(n);
        store_host(p, (uint64_t)(neg ? -no : no), n->size);
        return NULL;
    }
    default:
        return luaebpf_decoded_expected(n);
    }
}

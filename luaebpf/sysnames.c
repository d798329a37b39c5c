/* sysnames.c: this architecture's syscall and errno names. Neither is written
 * here by hand: make generates luaebpf_sysnames.h into the build directory
 * from the C library's kernel headers (<asm/unistd.h>, <asm/errno.h> as the
 * compiler sees them for its target), so the numbers are the ones the kernel
 * this module was built for uses. A build without that header (luarocks'
 * builtin one runs no generator) has empty tables: every number then stays a
 * number and names are refused with a message that says why. */
#include <string.h>
#include "luaebpf.h"

typedef struct luaebpf_sysname {
    int64_t no;
    const char *name;
} luaebpf_sysname;

#if defined(__has_include)
#if __has_include(<luaebpf_sysnames.h>)
#include <luaebpf_sysnames.h> /* gen_syscalls, gen_errnos (sorted by number), the errno
                                * aliases (EWOULDBLOCK), the architecture */
#define HAVE_SYSNAMES 1
#endif
#endif
#ifndef HAVE_SYSNAMES
static const luaebpf_sysname gen_syscalls[] = {{-1, NULL}};
static const luaebpf_sysname gen_errnos[] = {{-1, NULL}};
static const luaebpf_sysname gen_errno_aliases[] = {{-1, NULL}};
#define LUAEBPF_SYSCALL_ARCH "none: built without the generated table"
#endif

#define NSYSCALLS (sizeof gen_syscalls / sizeof gen_syscalls[0])
#define NERRNOS (sizeof gen_errnos / sizeof gen_errnos[0])

const char luaebpf_syscall_arch[] = LUAEBPF_SYSCALL_ARCH;

int luaebpf_sysnames_built(void) {
#ifdef HAVE_SYSNAMES
    return 1;
#else
    return 0;
#endif
}

/* the name of number no in table t (n entries, sorted by number), or NULL */
static const char *name_of(const luaebpf_sysname *t, size_t n, int64_t no) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t[lo].no == no ? t[lo].name : NULL;
}

/* the number called name, or -1: a linear walk, for writes only */
static int64_t number_of(const luaebpf_sysname *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (t[i].name && strcmp(t[i].name, name) == 0)
            return t[i].no;
    return -1;
}

const char *luaebpf_syscall_name(uint64_t nr) {
    return nr > INT32_MAX ? NULL : name_of(gen_syscalls, NSYSCALLS, (int64_t)nr);
}

int64_t luaebpf_syscall_number(const char *name) {
    return number_of(gen_syscalls, NSYSCALLS, name);
}

const char *luaebpf_errno_name(int64_t no) {
    return no <= 0 ? NULL : name_of(gen_errnos, NERRNOS, no);
}

int64_t luaebpf_errno_number(const char *name) {
    int64_t no = number_of(gen_errnos, NERRNOS, name);
    return no >= 0 ? no : number_of(gen_errno_aliases, sizeof gen_errno_aliases /
                                    sizeof gen_errno_aliases[0], name);
}

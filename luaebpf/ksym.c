/* ksym.c: kernel symbols by address, for the "ksym" decoder and kernel stack
 * frames. /proc/kallsyms (about 5 MiB and 40 ms of kernel time here, too much
 * per lookup) is read into one sorted array searched by binary search, shared
 * by every Lua state of the process and freed when the module is unloaded.
 *
 * The core kernel's symbols never change, but BPF programs (and modules) come
 * and go, and a new program's code is often packed right after an older
 * one's: a table read before it was loaded names its addresses after that
 * older program, plus an offset. So an answer that is not a core kernel
 * symbol (one of a module or a BPF program, kallsyms' "\t[name]" lines, or
 * none) is given only after checking that no BPF program was loaded since
 * the table was read (one bpf() call: the next program id after the newest
 * the table saw); if one was, the table is read again first. Reads are at
 * least RELOAD_GAP_NS apart, counted from the end of the last: within that,
 * such an address gets no name rather than a wrong one. So does every such
 * address in a process that may read kallsyms' addresses (CAP_SYSLOG) but
 * not list programs (CAP_SYS_ADMIN): it cannot know what is stale. Modules
 * and programs are never placed inside the kernel's image, so an address
 * between two core symbols needs no check.
 *
 * The kernel lists BPF symbols by their index in a list, so a symbol removed
 * while the file is being read (an unloaded program, a replaced trampoline)
 * can make it skip a later one; and it lists none with bpf_jit_kallsyms off.
 * So after each read, every program the table should hold (ids up to the
 * newest) is asked for its code's addresses; if one is missing, the table
 * counts as stale until a read finds them all (two reads in a row missing
 * code with no program loaded between mean it is hidden: no more reads then
 * until a program is loaded). Not seen: modules loaded since, BPF
 * trampolines and dispatchers (made on attach, with no program id), ftrace
 * and kprobe trampolines. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "luaebpf.h"
#include "valgrind.h"

typedef struct ksym {
    uint64_t addr;
    const char *name; /* into the file's text, which the table keeps */
    int global;       /* kallsyms' type letter upper-case: a global symbol */
    int loaded;       /* a module's or a BPF program's ("\t[name]"): it may go */
} ksym;

typedef struct ksym_table {
    ksym *syms;
    size_t n;
    char *text;
    uint32_t newest_prog;      /* the highest BPF program id before the file was read */
    int can_list;              /* 0: programs cannot be listed, so staleness is unknowable */
    int skipped;               /* a program's code is missing from it */
    int skips_again;           /* and was in the last read too, with no program loaded since:
                                * hidden (bpf_jit_kallsyms off), so reading again cannot help */
    int failed;                /* the file could not be read: try again after the gap */
    int64_t read_at;           /* CLOCK_MONOTONIC ns when its read ended; 0: never */
} ksym_table;

static ksym_table table;
/* readers copy a name out under the read lock; a reload swaps under the write lock */
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER; /* one reader of the file at a time */

#define RELOAD_GAP_NS 250000000LL

/* A function's end is the next symbol's start; past the last symbol nothing
 * is known, and an offset this large means the address is not code we know. */
#define KSYM_MAX_OFFSET (1u << 20)

/* Of names sharing an address ("_text" and "_stext", a function and its
 * alias), the one a reader knows: global before local (kallsyms' upper-case
 * types), then fewer leading underscores, then the shorter. Larger is better. */
static int preference(const ksym *s) {
    const char *n = s->name;
    int under = 0;
    while (n[under] == '_') under++;
    size_t len = strlen(n);
    return (s->global ? 1 << 20 : 0) - (under << 12) - (int)(len < 4095 ? len : 4095);
}

/* by address; among equal addresses the preferred last, where the search lands */
static int by_addr(const void *a, const void *b) {
    const ksym *x = a, *y = b;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    int px = preference(x), py = preference(y);
    if (px != py) return px < py ? -1 : 1;
    return strcmp(x->name, y->name); /* a total order: the same name on every run */
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "re");
    if (!f) return NULL;
    size_t len = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1) break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) { free(buf); buf = NULL; break; }
        buf = bigger;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) { free(buf); return NULL; }
    buf[len] = '\0';
    return buf;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* the highest loaded program id into *newest (0: none, or as far as the walk
 * got); 0 when this process may not list programs (EPERM, or an LSM's or
 * seccomp's refusal: anything but the walk's end) */
static int newest_prog_id(uint32_t *newest) {
    uint32_t cur = 0, next;
    while (bpf_prog_get_next_id(cur, &next) == 0)
        cur = next;
    int listed = errno == ENOENT;
    *newest = cur;
    return listed;
}

/* how many of t's symbols (sorted by address) are at or below addr */
static size_t at_or_below(const ksym_table *t, uint64_t addr) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->syms[mid].addr <= addr) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* whether t holds a module's or program's symbol at addr */
static int has_loaded_at(const ksym_table *t, uint64_t addr) {
    for (size_t i = at_or_below(t, addr); i > 0 && t->syms[i - 1].addr == addr; i--)
        if (t->syms[i - 1].loaded)
            return 1;
    return 0;
}

/* Whether t, read after the programs up to id t->newest_prog were listed,
 * holds the start of each one's code (its functions' addresses, the first
 * CODE_ADDRS of them); a program gone since, or run by the interpreter
 * (no addresses), is passed over. */
#define CODE_ADDRS 64
static int holds_every_program(const ksym_table *t) {
    uint32_t cur = 0, next;
    while (bpf_prog_get_next_id(cur, &next) == 0 && next <= t->newest_prog) {
        cur = next;
        int fd = bpf_prog_get_fd_by_id(cur);
        if (fd < 0)
            continue;
        uint64_t addrs[CODE_ADDRS] = {0}; /* left as they are where the kernel hides them */
        struct bpf_prog_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        info.nr_jited_ksyms = CODE_ADDRS;
        info.jited_ksyms = (uint64_t)(uintptr_t)addrs;
        int r = bpf_obj_get_info_by_fd(fd, &info, &len);
        close(fd);
        if (r != 0 || !info.jited_ksyms) /* the kernel zeroes the pointer when it hides them */
            continue;
        uint32_t k = info.nr_jited_ksyms < CODE_ADDRS ? info.nr_jited_ksyms : CODE_ADDRS;
        VALGRIND_MAKE_MEM_DEFINED(addrs, k * sizeof addrs[0]); /* the kernel wrote them */
        for (uint32_t i = 0; i < k; i++)
            if (addrs[i] && !has_loaded_at(t, addrs[i]))
                return 0;
    }
    return 1;
}

/* Whether a program with an id above newest is loaded (ids are handed out in
 * rising order, wrapping only past 2^31, so it was loaded since the listing
 * that saw newest), or that cannot be asked */
static int loaded_since(uint32_t newest) {
    uint32_t next;
    return bpf_prog_get_next_id(newest, &next) == 0 || errno != ENOENT;
}

/* Whether the table may lack a program. Called under a lock. */
static int table_stale(void) {
    return !table.can_list || table.skipped || loaded_since(table.newest_prog);
}

/* Lines read "ffffffff81000000 T _stext" or "... t name\t[module]". Absolute
 * and undefined symbols are not places in code; addresses all zero mean the
 * kernel hides them from this process (kptr_restrict): then the table stays
 * empty and every address stays a number. Programs are listed before the
 * file is read, so one loaded meanwhile makes the table stale, and checked
 * after, so one it missed does too. */
static void read_table(ksym_table *t) {
    memset(t, 0, sizeof *t);
    t->can_list = newest_prog_id(&t->newest_prog);
    char *text = read_all("/proc/kallsyms");
    t->read_at = now_ns(); /* a read under load or valgrind may take seconds */
    if (!text) {
        t->failed = 1;
        return;
    }
    size_t cap = 1024, n = 0;
    ksym *syms = malloc(cap * sizeof *syms);
    for (char *line = text, *next; syms && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0'; else next = line + strlen(line);
        char *end, *name;
        uint64_t addr = strtoull(line, &end, 16);
        if (end == line || end[0] != ' ' || !end[1] || end[2] != ' ') continue;
        char type = end[1];
        name = end + 3;
        size_t len = strcspn(name, "\t");
        int loaded = name[len] == '\t';
        name[len] = '\0';
        if (addr == 0 || type == 'a' || type == 'A' || type == 'U' || !*name) continue;
        if (n == cap) {
            ksym *bigger = realloc(syms, (cap *= 2) * sizeof *syms);
            if (!bigger) { free(syms); syms = NULL; break; }
            syms = bigger;
        }
        syms[n].addr = addr;
        syms[n].global = type >= 'A' && type <= 'Z';
        syms[n].loaded = loaded;
        syms[n++].name = name;
    }
    if (!syms || n == 0) {
        t->failed = !syms;
        free(syms);
        free(text);
        return;
    }
    qsort(syms, n, sizeof *syms, by_addr);
    t->syms = syms;
    t->n = n;
    t->text = text;
    t->skipped = t->can_list && !holds_every_program(t);
}

/* Reads the file again if the table was never read, or (stale) if it may
 * lack a program, can learn of one by reading, and was read RELOAD_GAP_NS ago
 * or more; the swap waits for the readers, and the old table is freed after
 * it, when no reader can hold it. */
static void reload(int stale) {
    pthread_mutex_lock(&reload_lock);
    pthread_rwlock_rdlock(&table_lock);
    /* another thread may have read it while this one waited */
    int gap = now_ns() - table.read_at >= RELOAD_GAP_NS;
    int due = table.read_at == 0 || (table.failed && gap) ||
              (stale && table.can_list && gap &&
               ((table.skipped && !table.skips_again) || loaded_since(table.newest_prog)));
    pthread_rwlock_unlock(&table_lock);
    if (due) {
        ksym_table fresh, old;
        read_table(&fresh);
        pthread_rwlock_wrlock(&table_lock);
        old = table;
        fresh.skips_again = fresh.skipped && old.skipped && fresh.newest_prog == old.newest_prog;
        table = fresh;
        pthread_rwlock_unlock(&table_lock);
        free(old.syms);
        free(old.text);
    }
    pthread_mutex_unlock(&reload_lock);
}

/* The symbol holding addr, or NULL; under the read lock */
static const ksym *holder(uint64_t addr) {
    size_t i = at_or_below(&table, addr); /* the last symbol at or below addr is i - 1 */
    if (i == 0 || addr - table.syms[i - 1].addr >= KSYM_MAX_OFFSET)
        return NULL;
    return &table.syms[i - 1];
}

/* Whether the answer for addr, s, may come from a table that lacks the code
 * holding it, while the table may lack a program: it may unless s is a core
 * kernel symbol followed by another (inside the kernel's image, where nothing
 * is loaded). An address below every symbol (0, say) is named by nothing,
 * whatever a read would find, so it costs no bpf() call. Under the read lock. */
static int maybe_unseen(uint64_t addr, const ksym *s) {
    if (table.n == 0 || addr < table.syms[0].addr)
        return 0;
    if (s && !s->loaded && s + 1 < table.syms + table.n && !s[1].loaded)
        return 0;
    return table_stale();
}

int luaebpf_ksym(uint64_t addr, uint64_t *off, char *name, size_t size) {
    pthread_rwlock_rdlock(&table_lock);
    if (table.read_at == 0 || table.failed) { /* reload reads it when due */
        pthread_rwlock_unlock(&table_lock);
        reload(0);
        pthread_rwlock_rdlock(&table_lock);
    }
    const ksym *s = holder(addr);
    if (maybe_unseen(addr, s)) {
        pthread_rwlock_unlock(&table_lock);
        reload(1);
        pthread_rwlock_rdlock(&table_lock);
        s = holder(addr);
        if (maybe_unseen(addr, s)) {
            /* not read again (too soon, or it cannot tell): no name, not a wrong one */
            pthread_rwlock_unlock(&table_lock);
            return 0;
        }
    }
    if (s) {
        *off = addr - s->addr;
        snprintf(name, size, "%s", s->name);
    }
    pthread_rwlock_unlock(&table_lock);
    return s != NULL;
}

/* The table lives until the module is unloaded: dlclose of its last user (a
 * Lua state closing) runs this, when no code of the module can run again. */
__attribute__((destructor)) static void ksym_unload(void) {
    free(table.syms);
    free(table.text);
    memset(&table, 0, sizeof table);
}

/* An address as Lua holds it: on 5.3+ an integer (kernel addresses, above
 * 2^63, read as negative ones), on any Lua a string ("0xffffffff81000000"
 * or decimal), which is the only exact form on LuaJIT. */
static uint64_t check_address(lua_State *L, int i) {
    if (lua_type(L, i) == LUA_TSTRING) {
        const char *s = lua_tostring(L, i);
        char *end;
        errno = 0;
        uint64_t a = strtoull(s, &end, 0);
        if (end != s && *end == '\0' && errno == 0 && *s != '-')
            return a;
    } else {
        int64_t v;
        if (luaebpf_tointeger_fast(L, i, &v)) return (uint64_t)v;
        lua_Integer n;
        if (luaebpf_tointeger_in(L, i, 0, (lua_Integer)1 << 53, &n)) return (uint64_t)n;
    }
    const char *given = lua_type(L, i) == LUA_TSTRING
        ? lua_pushfstring(L, "\"%s\"", luaebpf_push_shown(L, i)) : luaL_typename(L, i);
    luaL_argerror(L, i, lua_pushfstring(L, "expected an address (an integer, or a string "
                  "such as \"0xffffffff81000000\"), got %s", given));
    return 0;
}

/* core.ksym(addr): name, offset of the kernel symbol holding addr, or nil */
static int core_ksym(lua_State *L) {
    uint64_t off, addr = check_address(L, 1);
    char name[LUAEBPF_KSYM_NAME];
    if (!luaebpf_ksym(addr, &off, name, sizeof name)) return 0;
    lua_pushstring(L, name);
    lua_pushinteger(L, (lua_Integer)off);
    return 2;
}

void luaebpf_ksym_open(lua_State *L) {
    lua_pushcfunction(L, core_ksym);
    lua_setfield(L, -2, "ksym");
}

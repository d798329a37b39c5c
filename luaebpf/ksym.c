/* ksym.c: kernel symbols by address, for the "ksym" decoder and kernel stack
 * frames. /proc/kallsyms is read once per process (about 5 MiB and 40 ms of
 * kernel time here, too much per lookup) into one sorted array searched by
 * binary search, and freed only when the module is unloaded. Symbols loaded
 * after the first use (modules, BPF programs) are not in it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaebpf.h"

typedef struct ksym {
    uint64_t addr;
    const char *name; /* into the file's text, which the table keeps */
    int global;       /* kallsyms' type letter upper-case: a global symbol */
} ksym;

static struct {
    ksym *syms;
    size_t n;
    char *text;
} table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

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

/* Lines read "ffffffff81000000 T _stext" or "... t name\t[module]". Absolute
 * and undefined symbols are not places in code; addresses all zero mean the
 * kernel hides them from this process (kptr_restrict): then the table stays
 * empty and every address stays a number. */
static void load_table(void) {
    char *text = read_all("/proc/kallsyms");
    if (!text) return;
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
        name[strcspn(name, "\t")] = '\0';
        if (addr == 0 || type == 'a' || type == 'A' || type == 'U' || !*name) continue;
        if (n == cap) {
            ksym *bigger = realloc(syms, (cap *= 2) * sizeof *syms);
            if (!bigger) { free(syms); syms = NULL; break; }
            syms = bigger;
        }
        syms[n].addr = addr;
        syms[n].global = type >= 'A' && type <= 'Z';
        syms[n++].name = name;
    }
    if (!syms || n == 0) { free(syms); free(text); return; }
    qsort(syms, n, sizeof *syms, by_addr);
    table.syms = syms;
    table.n = n;
    table.text = text;
}

const char *luaebpf_ksym(uint64_t addr, uint64_t *off) {
    pthread_once(&table_once, load_table);
    size_t lo = 0, hi = table.n; /* find the last symbol at or below addr */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (table.syms[mid].addr <= addr) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const ksym *s = &table.syms[lo - 1];
    if (addr - s->addr >= KSYM_MAX_OFFSET) return NULL;
    *off = addr - s->addr;
    return s->name;
}

/* The table lives until the module is unloaded: dlclose of its last user (a
 * Lua state closing) runs this, when no code of the module can run again. */
__attribute__((destructor)) static void ksym_unload(void) {
    free(table.syms);
    free(table.text);
    table.syms = NULL;
    table.text = NULL;
    table.n = 0;
}

size_t luaebpf_ksym_count(void) {
    pthread_once(&table_once, load_table);
    return table.n;
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
    const char *name = luaebpf_ksym(addr, &off);
    if (!name) return 0;
    lua_pushstring(L, name);
    lua_pushinteger(L, (lua_Integer)off);
    return 2;
}

void luaebpf_ksym_open(lua_State *L) {
    lua_pushcfunction(L, core_ksym);
    lua_setfield(L, -2, "ksym");
}

/* elfsym.c: function symbols of ELF files, for user stack frames. A frame
 * gives a file offset (the address minus its mapping's start, plus the
 * mapping's file offset, or the offset of a build-id frame); this file turns
 * it into the address the file's symbols use, through the PT_LOAD segments,
 * and finds the function whose range holds it, from .symtab or else .dynsym.
 * It also reads the file's GNU build id, to find the file a build-id frame
 * names. Files are read with libelf once and kept in a small process-wide
 * cache, keyed by the file's device, inode, size and mtime (not its path), so
 * a file replaced on disk is read again; the cache holds at most
 * ELFSYM_CACHE_MAX files and drops the least recently used. A mutex guards
 * it: every Lua state of the process shares it, from any thread. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "luaebpf.h"

#define ELFSYM_CACHE_MAX 64
#define ELFSYM_MAX_QUERIES (1 << 20) /* offsets one call may ask about */

typedef struct elfsym {
    uint64_t addr, size;
    const char *name; /* into the file's names block */
    int local;        /* STB_LOCAL: a name the file keeps to itself */
    int sizeless;     /* st_size 0: size = up to the next symbol or its section's end */
} elfsym;

typedef struct elfseg {
    uint64_t vaddr, offset, filesz, memsz;
    int exec;
} elfseg;

typedef struct elffile {
    struct elffile *next;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    const char *why;        /* NULL, or why the file gave no symbols (static text) */
    int bad;                /* with why: not an ELF file at all (no build id either) */
    elfsym *syms;
    size_t nsyms;
    char *names;
    elfseg *segs;
    size_t nsegs;
    int debug_only;         /* code segments without file bytes: a separate debug file */
    unsigned char build_id[64];
    size_t build_id_len;
} elffile;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static elffile *cache;      /* most recently used first */

static void file_free(elffile *f) {
    free(f->syms);
    free(f->names);
    free(f->segs);
    free(f);
}

/* Among aliases at one address (write and __write, nanosleep and
 * __nanosleep in libc; __GI_ names in a .symtab), the name to show: an
 * exported one before a local one, then the fewest leading underscores (the
 * public name), then the shorter, then by bytes, so the choice does not
 * depend on the order of the table. nm lists them all; each is right. */
static size_t underscores(const char *s) {
    return strspn(s, "_");
}

static int better(const elfsym *x, const elfsym *y) {
    if (x->sizeless != y->sizeless) return y->sizeless; /* a size the file states */
    if (x->local != y->local) return y->local;
    size_t ux = underscores(x->name), uy = underscores(y->name);
    if (ux != uy) return ux < uy;
    size_t lx = strlen(x->name), ly = strlen(y->name);
    if (lx != ly) return lx < ly;
    return strcmp(x->name, y->name) < 0;
}

static int by_addr(const void *a, const void *b) {
    const elfsym *x = a, *y = b;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    if (better(x, y)) return -1;
    return better(y, x) ? 1 : 0;
}

/* the NT_GNU_BUILD_ID note of any SHT_NOTE section */
static void read_build_id(Elf *e, elffile *f) {
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        if (!d) continue;
        GElf_Nhdr nh;
        size_t off = 0, name_off, desc_off, next;
        while ((next = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp((char *)d->d_buf + name_off, "GNU", 4) == 0 &&
                nh.n_descsz > 0 && nh.n_descsz <= sizeof f->build_id) {
                memcpy(f->build_id, (char *)d->d_buf + desc_off, nh.n_descsz);
                f->build_id_len = nh.n_descsz;
                return;
            }
            off = next;
        }
    }
}

static const char *read_segments(Elf *e, elffile *f) {
    size_t n;
    if (elf_getphdrnum(e, &n) != 0) return "the file has no program headers";
    f->segs = calloc(n ? n : 1, sizeof *f->segs);
    if (!f->segs) return "out of memory";
    int code_without_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD) continue;
        elfseg *s = &f->segs[f->nsegs++];
        s->vaddr = ph.p_vaddr;
        s->offset = ph.p_offset;
        s->filesz = ph.p_filesz;
        s->memsz = ph.p_memsz;
        s->exec = (ph.p_flags & PF_X) != 0;
        /* a separate debug file keeps the code segment's size, not its bytes */
        code_without_bytes |= s->exec && s->filesz == 0 && s->memsz > 0;
    }
    f->debug_only = code_without_bytes;
    return NULL;
}

/* the end of the section a symbol lies in, 0 when it lies in none */
static uint64_t section_end(Elf *e, const GElf_Sym *s) {
    GElf_Shdr sh;
    Elf_Scn *scn;
    if (s->st_shndx == SHN_UNDEF || s->st_shndx >= SHN_LORESERVE ||
        !(scn = elf_getscn(e, s->st_shndx)) || !gelf_getshdr(scn, &sh) ||
        !(sh.sh_flags & SHF_ALLOC) || s->st_value < sh.sh_addr ||
        s->st_value - sh.sh_addr >= sh.sh_size)
        return 0;
    return sh.sh_addr + sh.sh_size;
}

/* the functions of .symtab, or of .dynsym when the file was stripped:
 * defined functions with a size, so an address past the end of one is not
 * taken for the function before it. A function without a size (assembly
 * without .size: crtstuff's, _init, _fini) reaches up to the next symbol or
 * the end of its section, and gives way to any function with a size. */
static const char *read_symbols(Elf *e, elffile *f) {
    Elf_Scn *scn = NULL, *symtab = NULL, *dynsym = NULL;
    GElf_Shdr sh;
    while ((scn = elf_nextscn(e, scn)) != NULL) {
        if (!gelf_getshdr(scn, &sh)) continue;
        if (sh.sh_type == SHT_SYMTAB) symtab = scn;
        if (sh.sh_type == SHT_DYNSYM) dynsym = scn;
    }
    scn = symtab ? symtab : dynsym;
    if (!scn) return "the file has no symbol table";
    if (!gelf_getshdr(scn, &sh) || sh.sh_entsize == 0) return "unreadable symbol table";
    Elf_Data *d = elf_getdata(scn, NULL);
    if (!d || sh.sh_type == SHT_NOBITS) return "unreadable symbol table";
    size_t count = sh.sh_size / sh.sh_entsize, total = 0, n = 0;
    if (count > INT_MAX) return "unreadable symbol table"; /* gelf_getsym takes an int */
    f->syms = calloc(count ? count : 1, sizeof *f->syms);
    if (!f->syms) return "out of memory";
    for (size_t i = 0; i < count; i++) {
        GElf_Sym s;
        if (!gelf_getsym(d, (int)i, &s)) continue;
        int type = GELF_ST_TYPE(s.st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF) continue;
        uint64_t size = s.st_size;
        int sizeless = size == 0;
        if (sizeless) {
            uint64_t end = section_end(e, &s);
            if (end == 0) continue;
            size = end - s.st_value; /* cut at the next symbol below */
        }
        const char *name = elf_strptr(e, sh.sh_link, s.st_name);
        if (!name || !*name) continue;
        f->syms[n].addr = s.st_value;
        f->syms[n].size = size;
        f->syms[n].sizeless = sizeless;
        f->syms[n].local = GELF_ST_BIND(s.st_info) == STB_LOCAL;
        f->syms[n++].name = name; /* libelf's, until the copy below */
        total += strlen(name) + 1;
    }
    f->names = malloc(total ? total : 1);
    if (!f->names) return "out of memory";
    char *p = f->names;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(f->syms[i].name) + 1;
        memcpy(p, f->syms[i].name, len);
        f->syms[i].name = p;
        p += len;
    }
    f->nsyms = n;
    qsort(f->syms, n, sizeof *f->syms, by_addr);
    /* a sizeless function ends where the next function starts */
    for (size_t i = 0, j = 0; i < n; i++) {
        if (j <= i) j = i + 1;
        while (j < n && f->syms[j].addr == f->syms[i].addr) j++;
        if (f->syms[i].sizeless && j < n && f->syms[j].addr - f->syms[i].addr < f->syms[i].size)
            f->syms[i].size = f->syms[j].addr - f->syms[i].addr;
    }
    return NULL;
}

static pthread_once_t version_once = PTHREAD_ONCE_INIT;
static void set_version(void) {
    elf_version(EV_CURRENT);
}

static void load(elffile *f, int fd) {
    pthread_once(&version_once, set_version);
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    if (!e || elf_kind(e) != ELF_K_ELF) {
        f->why = "not an ELF file";
        f->bad = 1;
    } else {
        read_build_id(e, f);
        f->why = read_segments(e, f);
        if (!f->why) f->why = read_symbols(e, f);
    }
    if (e) elf_end(e);
}

/* The cached file for path, read now when it is new or changed on disk.
 * Called with cache_lock held. NULL with *errnum when it cannot be opened. */
static elffile *file_get(const char *path, int *errnum) {
    /* O_NONBLOCK: a FIFO given as the path must not hang the caller */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *errnum = errno;
        if (fd >= 0) close(fd);
        return NULL;
    }
    /* by the file, not the path: one file reached by many paths (each
     * process's /proc/PID/root/usr/lib/...) is read once, and a path whose
     * file was replaced finds no entry; the replaced file's entry ages out */
    elffile **pp = &cache, *f;
    for (; (f = *pp) != NULL; pp = &f->next) {
        if (f->dev == st.st_dev && f->ino == st.st_ino && f->size == st.st_size &&
            f->mtime.tv_sec == st.st_mtim.tv_sec && f->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            close(fd);
            *pp = f->next; /* to the front */
            f->next = cache;
            cache = f;
            return f;
        }
    }
    f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        *errnum = ENOMEM;
        return NULL;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime = st.st_mtim;
    if (S_ISREG(st.st_mode)) {
        load(f, fd);
    } else {
        f->why = "not a regular file";
        f->bad = 1;
    }
    close(fd);
    f->next = cache;
    cache = f;
    /* keep at most ELFSYM_CACHE_MAX: drop the tail */
    size_t n = 0;
    for (pp = &cache; *pp; pp = &(*pp)->next) {
        if (++n > ELFSYM_CACHE_MAX) {
            elffile *rest = *pp;
            *pp = NULL;
            while (rest) {
                elffile *next = rest->next;
                file_free(rest);
                rest = next;
            }
            break;
        }
    }
    return f;
}

/* Lua 5.4 unloads the module (dlclose) when its state closes: the cache
 * goes with it rather than stay behind unreachable. */
__attribute__((destructor)) static void cache_drop(void) {
    pthread_mutex_lock(&cache_lock);
    while (cache) {
        elffile *next = cache->next;
        file_free(cache);
        cache = next;
    }
    pthread_mutex_unlock(&cache_lock);
}

/* the address the symbols use for file offset off; 0 when no segment maps it */
static int to_vaddr(const elffile *f, uint64_t off, uint64_t *vaddr) {
    for (size_t i = 0; i < f->nsegs; i++) {
        const elfseg *s = &f->segs[i];
        if (!f->debug_only) {
            if (off >= s->offset && off - s->offset < s->filesz) {
                *vaddr = off - s->offset + s->vaddr;
                return 1;
            }
        } else if (s->exec) {
            /* A separate debug file keeps the segments' addresses but not
             * their file offsets. Linkers (GNU ld, gold) place code at the
             * same distance from the file's start as from the first
             * segment's page, which is what this assumes. */
            uint64_t base = f->segs[0].vaddr & ~(uint64_t)0xfff;
            uint64_t v = off + base;
            if (v >= s->vaddr && v - s->vaddr < s->memsz) {
                *vaddr = v;
                return 1;
            }
        }
    }
    return 0;
}

/* the function holding vaddr, or NULL */
static const elfsym *find(const elffile *f, uint64_t vaddr) {
    size_t lo = 0, hi = f->nsyms; /* the last symbol starting at or below vaddr */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->syms[mid].addr <= vaddr) lo = mid + 1; else hi = mid;
    }
    /* a few symbols back: a short one (a local label with a size) may start
     * inside a longer function that holds vaddr; the nearest start wins,
     * though a function without a size only when no sized one holds vaddr */
    const elfsym *fallback = NULL;
    for (size_t i = lo, steps = 0; i > 0 && steps < 16; i--, steps++) {
        const elfsym *s = &f->syms[i - 1];
        if (vaddr - s->addr < s->size) {
            /* aliases at s's address sort best first: the first of them that
             * also holds vaddr (an alias may be shorter) */
            size_t j = i - 1;
            while (j > 0 && f->syms[j - 1].addr == s->addr) j--;
            for (; j < i - 1; j++)
                if (vaddr - f->syms[j].addr < f->syms[j].size) break;
            s = &f->syms[j];
            if (!s->sizeless) return s;
            if (!fallback) fallback = s;
        }
    }
    return fallback;
}

/* pushes nil, "path: why" and returns 2 */
static int failed(lua_State *L, const char *path, const char *why, int errnum) {
    lua_pushnil(L);
    if (errnum)
        lua_pushfstring(L, "%s: %s", path, strerror(errnum));
    else
        lua_pushfstring(L, "%s: %s", path, why);
    return 2;
}

/* What elf_symbolize copies out of the cache under the lock, before any Lua
 * allocation: a userdata, so that a memory error while the results are
 * pushed leaves it to the collector instead of leaking it. */
#define ELFSYM_COPIES "luaebpf.ElfSymbolCopies"
typedef struct copies {
    size_t n;
    char **names;    /* strdup'd, NULL where no function holds the offset */
    uint64_t *delta;
} copies;

static void copies_free(copies *c) { /* idempotent */
    for (size_t i = 0; c->names && i < c->n; i++) free(c->names[i]);
    free(c->names);
    free(c->delta);
    c->names = NULL;
    c->delta = NULL;
}

static int copies_gc(lua_State *L) {
    copies_free(luaL_checkudata(L, 1, ELFSYM_COPIES));
    return 0;
}

/* core.elf_symbolize(path, offsets): for each file offset in the array
 * offsets, the name of the function holding it (false when none) and the
 * offset into that function; as two arrays names, offsets. nil, message when
 * the file cannot be read or has no symbols. */
static int core_elf_symbolize(lua_State *L) {
    const char *path = luaebpf_check_path(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    if (n > ELFSYM_MAX_QUERIES)
        luaL_argerror(L, 2, "too many offsets (at most 1048576 a call)");
    /* the offsets first: nothing below may raise while the lock is held */
    uint64_t *offs = lua_newuserdata(L, (n ? n : 1) * sizeof *offs);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        lua_Integer v;
        if (!luaebpf_tointeger_in(L, -1, 0, (lua_Integer)1 << 53, &v))
            luaL_argerror(L, 2, lua_pushfstring(L, "offset %d: expected an integer in "
                          "0..2^53, got %s", (int)i + 1, luaL_typename(L, -1)));
        lua_pop(L, 1);
        offs[i] = (uint64_t)v;
    }
    copies *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, ELFSYM_COPIES);
    lua_setmetatable(L, -2);
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    int names = lua_gettop(L) - 1;
    /* lua_push* may fail for memory (and a collection may run a finalizer
     * that calls back in here), so the lock is never held across one:
     * names go through C copies, pushed after unlocking */
    c->delta = malloc((n ? n : 1) * sizeof *c->delta);
    c->names = calloc(n ? n : 1, sizeof *c->names);
    if (!c->delta || !c->names) return luaL_error(L, "out of memory");
    c->n = n;
    int errnum = 0, oom = 0;
    pthread_mutex_lock(&cache_lock);
    elffile *f = file_get(path, &errnum);
    if (!f || f->why) {
        const char *why = f ? f->why : NULL;
        pthread_mutex_unlock(&cache_lock);
        copies_free(c);
        return failed(L, path, why, errnum);
    }
    for (size_t i = 0; !oom && i < n; i++) {
        uint64_t vaddr;
        const elfsym *s = to_vaddr(f, offs[i], &vaddr) ? find(f, vaddr) : NULL;
        if (s) {
            c->delta[i] = vaddr - s->addr;
            c->names[i] = strdup(s->name);
            if (!c->names[i]) oom = 1;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    if (oom) return luaL_error(L, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (c->names[i]) {
            lua_pushstring(L, c->names[i]);
            lua_rawseti(L, names, (lua_Integer)i + 1);
            lua_pushinteger(L, (lua_Integer)c->delta[i]); /* within a symbol's size */
        } else {
            lua_pushboolean(L, 0);
            lua_rawseti(L, names, (lua_Integer)i + 1);
            lua_pushboolean(L, 0);
        }
        lua_rawseti(L, names + 1, (lua_Integer)i + 1);
    }
    copies_free(c);
    return 2;
}

/* core.elf_build_id(path): the file's GNU build id as lowercase hex, false
 * when it has none, or nil, message when it cannot be read */
static int core_elf_build_id(lua_State *L) {
    const char *path = luaebpf_check_path(L, 1);
    char hex[2 * sizeof ((elffile *)0)->build_id + 1];
    int errnum = 0;
    pthread_mutex_lock(&cache_lock);
    elffile *f = file_get(path, &errnum);
    int ok = f && !f->bad; /* a file without symbols may still have a build id */
    const char *why = f ? f->why : NULL;
    size_t len = f ? f->build_id_len : 0;
    for (size_t i = 0; ok && i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", f->build_id[i]);
    pthread_mutex_unlock(&cache_lock);
    if (!ok) return failed(L, path, why, errnum);
    if (len == 0)
        lua_pushboolean(L, 0);
    else
        lua_pushlstring(L, hex, 2 * len);
    return 1;
}

void luaebpf_elfsym_open(lua_State *L) {
    luaL_newmetatable(L, ELFSYM_COPIES);
    lua_pushcfunction(L, copies_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_elf_symbolize);
    lua_setfield(L, -2, "elf_symbolize");
    lua_pushcfunction(L, core_elf_build_id);
    lua_setfield(L, -2, "elf_build_id");
}

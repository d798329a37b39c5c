/* object.c: BPF objects and links. ebpf.load(path [, opts]) opens and loads an
 * ELF object with libbpf; obj:map(name) and obj:maps() give Maps (each owns a
 * dup of libbpf's fd, so it outlives obj:close()); obj:programs() lists the
 * programs; obj:attach(name) and obj:attach_all() give Links that detach on
 * close or GC. libbpf's log is captured while luaebpf calls it: it goes to
 * opts.log when given, and its last lines (the verifier's reason) into the
 * error of a failed load. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

typedef struct luaebpf_object {
    struct bpf_object *obj; /* NULL once closed */
    int busy;               /* methods holding libbpf pointers across Lua allocations */
    int close_pending;      /* close() came while busy: done when the last one ends */
} luaebpf_object;

typedef struct luaebpf_link {
    struct bpf_link *link;  /* NULL once detached */
    char prog[64];
} luaebpf_link;

/* ------------------------------------------------------- libbpf's log */

/* libbpf's print callback is process-wide and has no user pointer. Between
 * log_begin and log_end, which enclose libbpf calls and no Lua, what libbpf
 * prints on this thread (print.c) is appended to this thread's buffer, grown
 * to whatever libbpf prints: a verifier log comes as one call of up to
 * 16 MiB, its reason at the very end. */
static _Thread_local struct {
    char *buf;
    size_t len, cap;
    luaebpf_print_section outer; /* restored by log_end */
} logc;

static int log_capture(enum libbpf_print_level level, const char *fmt, va_list ap) {
    if (level == LIBBPF_DEBUG)
        return 0; /* debug chatter is not for users */
    va_list again;
    va_copy(again, ap); /* one pass to size the text, one to write it */
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n <= 0)
        return 0;
    size_t need = logc.len + (size_t)n + 1;
    if (need > logc.cap) {
        size_t cap = logc.cap ? logc.cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = realloc(logc.buf, cap);
        if (!p)
            return 0; /* out of memory: the log stays as it was */
        logc.buf = p;
        logc.cap = cap;
    }
    vsnprintf(logc.buf + logc.len, (size_t)n + 1, fmt, ap);
    VALGRIND_MAKE_MEM_DEFINED(logc.buf + logc.len, n); /* the verifier's log, written by the kernel */
    logc.len += (size_t)n;
    return 0;
}

static void log_begin(void) {
    logc.len = 0;
    logc.outer = luaebpf_print_begin(log_capture, 0);
}

/* ends the capture and pushes what was captured, as a string */
static void log_end(lua_State *L) {
    luaebpf_print_end(logc.outer);
    lua_pushlstring(L, logc.buf ? logc.buf : "", logc.len); /* copies before any GC step */
    free(logc.buf); /* a big log is not kept for the life of the process */
    logc.buf = NULL;
    logc.len = logc.cap = 0;
}

static int is_space(char c) {
    return c == '\n' || c == ' ';
}

/* pushes the last `lines` non-empty lines of log[0, end), joined with " | " */
static void push_log_lines(lua_State *L, const char *log, size_t end, int lines) {
    luaL_Buffer b;
    while (end > 0 && is_space(log[end - 1]))
        end--;
    size_t start = end;
    for (int seen = 0; start > 0; start--)
        if (log[start - 1] == '\n' && ++seen == lines)
            break;
    luaL_buffinit(L, &b); /* log stays anchored below the buffer */
    for (size_t i = start; i < end; i++) {
        if (log[i] != '\n')
            luaL_addchar(&b, log[i]);
        else if (i + 1 < end && log[i + 1] != '\n')
            luaL_addstring(&b, " | ");
    }
    luaL_pushresult(&b);
}

/* start of the line holding position p of log */
static size_t line_start(const char *log, size_t p) {
    while (p > 0 && log[p - 1] != '\n')
        p--;
    return p;
}

/* is the line at s an instruction of the verifier's log, "12: (79) r1 = ..."? */
static int is_insn(const char *s) {
    const char *d = s;
    while (*d >= '0' && *d <= '9')
        d++;
    return d > s && strncmp(d, ": (", 3) == 0;
}

/* The verifier's verdict in the log at idx (a string), pushed as "the
 * verifier refused it: <instruction> | <reason>": the lines from the failing
 * instruction to the statistics that end the kernel's log ("processed N
 * insns ..."), inside libbpf's BEGIN/END markers. Returns 0 and pushes
 * nothing when the log holds no verifier part. */
static int push_verifier_reason(lua_State *L, int idx) {
    const char *log = lua_tostring(L, idx);
    const char *endp = strstr(log, "-- END PROG LOAD LOG --");
    if (!endp || !strstr(log, "-- BEGIN PROG LOAD LOG --"))
        return 0;
    size_t stop = line_start(log, (size_t)(endp - log));
    for (;;) { /* drop the statistics lines that close the kernel's log */
        size_t prev_end = stop;
        while (prev_end > 0 && is_space(log[prev_end - 1]))
            prev_end--;
        size_t s = line_start(log, prev_end);
        if (prev_end == 0 || !(strncmp(log + s, "processed ", 10) == 0 ||
                               strncmp(log + s, "verification time ", 18) == 0 ||
                               strncmp(log + s, "stack depth ", 12) == 0))
            break;
        stop = s;
    }
    int lines = 2; /* from the failing instruction on, when it is near the end */
    for (size_t e = stop, n = 1; n <= 6 && e > 0; n++) {
        while (e > 0 && is_space(log[e - 1]))
            e--;
        size_t s = line_start(log, e);
        if (is_insn(log + s)) {
            lines = (int)n;
            break;
        }
        e = s;
    }
    lua_pushliteral(L, "the verifier refused it: ");
    push_log_lines(L, log, stop, lines);
    lua_concat(L, 2);
    return 1;
}

/* hands the log at idx to opts.log (at stack index fn), line by line */
static void log_deliver(lua_State *L, int fn, int idx) {
    size_t len, start = 0;
    const char *log = lua_tolstring(L, idx, &len); /* anchored at idx while fn runs */
    if (!fn)
        return;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || log[i] == '\n') {
            if (i > start) {
                lua_pushvalue(L, fn);
                lua_pushlstring(L, log + start, i - start);
                lua_call(L, 1, 0);
            }
            start = i + 1;
        }
    }
}

/* ------------------------------------------------------------ objects */

static luaebpf_object *check_object(lua_State *L, int idx, const char *op) {
    luaebpf_object *o = luaL_checkudata(L, idx, LUAEBPF_OBJECT);
    if (!o->obj || o->close_pending)
        luaebpf_raise_closed(L, op, NULL, 0, "the object was closed");
    return o;
}

/* A method that holds a struct bpf_map or bpf_program of the object while Lua
 * allocates (and a finalizer may run and close the object) marks it busy:
 * close() then only marks it, and the last busy method closes it. */
static void object_release(luaebpf_object *o) {
    struct bpf_object *obj = o->obj;
    o->obj = NULL;
    o->close_pending = 0;
    if (obj)
        bpf_object__close(obj); /* Maps and Links made from it hold their own references */
}

static void object_unbusy(luaebpf_object *o) {
    if (--o->busy == 0 && o->close_pending)
        object_release(o);
}

static int object_close(lua_State *L) { /* close, __close */
    luaebpf_object *o = luaL_checkudata(L, 1, LUAEBPF_OBJECT);
    if (o->busy > 0)
        o->close_pending = 1;
    else
        object_release(o);
    return 0;
}

static int object_gc(lua_State *L) { /* nothing can be using it once it is garbage */
    luaebpf_object *o = luaL_checkudata(L, 1, LUAEBPF_OBJECT);
    o->busy = 0;
    object_release(o);
    return 0;
}

/* Runs body, a method's work on libbpf's state of the object at index 1,
 * with the object busy, as a protected call given a copy of the method's
 * stack: busy ends on every exit, a raise included, so a close() that came
 * meanwhile is done now, not at the GC. Leaves body's results, or its
 * error, above the method's values; returns the lua_pcall status. */
static int object_pcall(lua_State *L, const char *op, lua_CFunction body) {
    int n = lua_gettop(L);
    luaL_checkstack(L, n + 1, NULL);
    lua_pushcfunction(L, body); /* allocates on 5.1: before the check below */
    for (int i = 1; i <= n; i++)
        lua_pushvalue(L, i);
    luaebpf_object *o = check_object(L, 1, op); /* nothing allocates from here to busy */
    o->busy++;
    int status = lua_pcall(L, n, LUA_MULTRET, 0);
    object_unbusy(o);
    return status;
}

/* object_pcall for a method with nothing to undo: body's results or its error */
static int object_run(lua_State *L, const char *op, lua_CFunction body) {
    int n = lua_gettop(L);
    if (object_pcall(L, op, body) != 0)
        return lua_error(L);
    return lua_gettop(L) - n;
}

/* raises the error of a bpf_object__load that failed with errno no; the
 * log captured meanwhile is the string at log_idx */
static int raise_load_failure(lua_State *L, const char *path, int no, int log_idx) {
    size_t len;
    const char *log = lua_tolstring(L, log_idx, &len);
    int refused = push_verifier_reason(L, log_idx);
    if (!refused && (no == EPERM || no == EACCES)) /* libbpf's text blames memlock */
        lua_pushliteral(L, "loading BPF programs needs CAP_BPF and CAP_PERFMON (or root)");
    else if (!refused)
        push_log_lines(L, log, len, 4);
    luaebpf_pusherror_about(L, "load", no, "object", path, lua_tostring(L, -1));
    if (refused && (no == EACCES || no == EPERM || no == EINVAL)) {
        /* the verifier ran, so the caller may load programs: this is its
         * "no" to the program, not a missing privilege */
        lua_pushliteral(L, "invalid");
        lua_setfield(L, -2, "class");
    }
    return lua_error(L);
}

/* core.load(path [, { log = function(line) end }]) */
static int core_load(lua_State *L) {
    static const char *const known[] = {"log", NULL};
    const char *path = luaL_checkstring(L, 1);
    int logfn = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        luaebpf_check_options(L, 2, "load options", known);
        lua_getfield(L, 2, "log");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            return luaL_error(L, "bad option 'log': a function expected, got %s",
                              luaL_typename(L, -1));
        logfn = lua_isnil(L, -1) ? 0 : lua_gettop(L);
    }
    luaebpf_object *o = luaebpf_newuserdata(L, sizeof *o);
    memset(o, 0, sizeof *o);
    luaL_setmetatable(L, LUAEBPF_OBJECT);
    int self = lua_gettop(L);
    log_begin();
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    int no = errno;
    o->obj = obj; /* from here on the GC closes it */
    log_end(L);   /* self + 1: libbpf's log of the open */
    if (!obj) {
        size_t len;
        const char *log = lua_tolstring(L, self + 1, &len);
        log_deliver(L, logfn, self + 1);
        push_log_lines(L, log, len, 2);
        luaebpf_pusherror_about(L, "load", no, "object", path, lua_rawlen(L, -1)
                                ? lua_tostring(L, -1) : "cannot open the object file");
        return lua_error(L);
    }
    log_begin();
    int rc = bpf_object__load(obj);
    no = errno;
    if (rc != 0) {
        o->obj = NULL;
        bpf_object__close(obj);
    }
    log_end(L);   /* self + 2: libbpf's log of the load, the verifier's among it */
    lua_concat(L, 2);
    log_deliver(L, logfn, self + 1);
    if (rc != 0)
        return raise_load_failure(L, path, no, self + 1);
    lua_createtable(L, 0, 2); /* user value: the path, for messages; the live links */
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "path");
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "links");
    luaebpf_setuservalue(L, self);
    lua_settop(L, self);
    return 1;
}

/* a Map for one of the object's maps: a dup of its fd, keeping obj alive too;
 * the caller holds the object busy (libbpf's fd stays open until duplicated) */
static void push_object_map(lua_State *L, int obj_idx, struct bpf_map *map) {
    luaebpf_map_from_fd(L, bpf_map__fd(map));
    luaebpf_getuservalue(L, -1);
    lua_pushvalue(L, obj_idx);
    lua_setfield(L, -2, "owner");
    lua_pop(L, 1);
}

/* raises ENOENT for the `about` ("map", "program") called name, with the
 * names the object has (a list on the stack top) in the detail: "no map named
 * 'x' in this object (it has: a b)" */
static int raise_not_found(lua_State *L, const char *op, const char *about, const char *name) {
    int list = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "no %s named '%s' in this object (it has:", about, name);
    luaL_addvalue(&b);
    for (int i = 1; i <= (int)lua_rawlen(L, list); i++) {
        lua_rawgeti(L, list, i);
        lua_pushfstring(L, " %s", lua_tostring(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    luaebpf_pusherror_about(L, op, ENOENT, about, name, lua_tostring(L, -1));
    return lua_error(L);
}

/* obj:map(name), busy: obj, name -> Map */
static int object_map_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    const char *name = lua_tostring(L, 2);
    struct bpf_map *map = bpf_object__find_map_by_name(o->obj, name);
    if (!map || bpf_map__fd(map) < 0) {
        lua_newtable(L);
        int n = 0;
        bpf_object__for_each_map(map, o->obj) {
            lua_pushstring(L, bpf_map__name(map));
            lua_rawseti(L, -2, ++n);
        }
        return raise_not_found(L, "open", "map", name);
    }
    push_object_map(L, 1, map);
    return 1;
}

static int object_map(lua_State *L) {
    check_object(L, 1, "map");
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    return object_run(L, "map", object_map_body);
}

/* one step of obj:maps(), busy: obj, index of the next map -> index, name, Map */
static int object_maps_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    lua_Integer want = lua_tointeger(L, 2), i = 0;
    struct bpf_map *map;
    bpf_object__for_each_map(map, o->obj) {
        if (i++ < want || bpf_map__fd(map) < 0)
            continue;
        lua_pushinteger(L, i);
        lua_pushstring(L, bpf_map__name(map));
        push_object_map(L, 1, map);
        return 3;
    }
    return 0;
}

/* upvalues: object, index of the next map */
static int object_maps_step(lua_State *L) {
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    if (object_run(L, "maps", object_maps_body) == 0)
        return 0;
    lua_pushvalue(L, 3);
    lua_replace(L, lua_upvalueindex(2));
    return 2; /* name, Map */
}

/* for name, m in obj:maps() do ... end */
static int object_maps(lua_State *L) {
    check_object(L, 1, "maps");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, object_maps_step, 2);
    return 1;
}

/* obj:programs(), busy -> { { name =, section =, type =, fd = }, ... } */
static int object_programs_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    struct bpf_program *prog;
    lua_newtable(L);
    int i = 0;
    bpf_object__for_each_program(prog, o->obj) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, bpf_program__name(prog));
        lua_setfield(L, -2, "name");
        lua_pushstring(L, bpf_program__section_name(prog));
        lua_setfield(L, -2, "section");
        const char *t = libbpf_bpf_prog_type_str(bpf_program__type(prog));
        lua_pushstring(L, t ? t : "unknown");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, bpf_program__fd(prog));
        lua_setfield(L, -2, "fd");
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

static int object_programs(lua_State *L) {
    check_object(L, 1, "programs");
    lua_settop(L, 1);
    return object_run(L, "programs", object_programs_body);
}

/* the id of the type called name in btf: "struct x", "union x", "enum x" (or
 * enum64), else any type of that name (a typedef, an integer); -1 if none */
static int find_btf_type(const struct btf *btf, const char *name) {
    static const struct { const char *prefix; int kind; } kinds[] = {
        {"struct ", BTF_KIND_STRUCT}, {"union ", BTF_KIND_UNION}, {"enum ", BTF_KIND_ENUM}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t len = strlen(kinds[i].prefix);
        if (strncmp(name, kinds[i].prefix, len) != 0)
            continue;
        int id = btf__find_by_name_kind(btf, name + len, kinds[i].kind);
        if (id < 0 && kinds[i].kind == BTF_KIND_ENUM)
            id = btf__find_by_name_kind(btf, name + len, BTF_KIND_ENUM64);
        return id < 0 ? -1 : id;
    }
    int id = btf__find_by_name(btf, name);
    return id < 0 ? -1 : id;
}

/* busy: obj, type name -> the Codec of that BTF type */
static int object_codec_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    const char *name = lua_tostring(L, 2);
    const struct btf *btf = bpf_object__btf(o->obj);
    int id = btf ? find_btf_type(btf, name) : -1;
    if (id < 0) {
        lua_pushfstring(L, btf ? "no type '%s' in the object's BTF" : "the object has no "
                        "BTF (compile it with clang -g) to find type '%s' in", name);
        luaebpf_pusherror_about(L, "codec", ENOENT, "type", name, lua_tostring(L, -1));
        return lua_error(L);
    }
    luaebpf_codec_from_btf(L, btf, (uint32_t)id);
    return 1;
}

/* object_pcall's pattern for a caller in another file: busy while the codec
 * is built from BTF the object owns, released on a raise too */
luaebpf_codec *luaebpf_object_codec(lua_State *L, int idx, const char *name) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, object_codec_body);
    lua_pushvalue(L, idx);
    lua_pushstring(L, name);
    luaebpf_object *o = check_object(L, -2, "codec"); /* nothing allocates from here to busy */
    o->busy++;
    int status = lua_pcall(L, 2, 1, 0);
    object_unbusy(o);
    if (status != 0)
        lua_error(L);
    return lua_touserdata(L, -1);
}

/* ---------------------------------------------------------------- links */

static void link_detach(luaebpf_link *k) {
    struct bpf_link *link = k->link;
    k->link = NULL;
    if (link)
        bpf_link__destroy(link);
}

static int link_close(lua_State *L) { /* close, __close, __gc: detaches */
    link_detach(luaL_checkudata(L, 1, LUAEBPF_LINK));
    return 0;
}

static int link_tostring(lua_State *L) {
    luaebpf_link *k = luaL_checkudata(L, 1, LUAEBPF_LINK);
    lua_pushfstring(L, "luaebpf.Link: %s (%s)", k->prog, k->link ? "attached" : "detached");
    return 1;
}

/* link:attached() */
static int link_attached(lua_State *L) {
    luaebpf_link *k = luaL_checkudata(L, 1, LUAEBPF_LINK);
    lua_pushboolean(L, k->link != NULL);
    return 1;
}

/* pushes a link for prog, attached; refuses a program whose link is still live,
 * since a second attachment would count every event twice. The caller holds
 * the object busy: prog and its name belong to the object. */
static void push_link(lua_State *L, int obj_idx, struct bpf_program *prog) {
    const char *pname = bpf_program__name(prog);
    luaebpf_getuservalue(L, obj_idx);
    lua_getfield(L, -1, "links");
    lua_getfield(L, -1, pname); /* uv, links, link or nil */
    luaebpf_link *old = luaL_testudata(L, -1, LUAEBPF_LINK);
    if (old && old->link) {
        luaebpf_pusherror_about(L, "attach", EEXIST, "program", pname,
                                "already attached by this object: close that link first");
        lua_error(L);
    }
    lua_pop(L, 1);
    luaebpf_link *k = luaebpf_newuserdata(L, sizeof *k);
    k->link = NULL;
    snprintf(k->prog, sizeof k->prog, "%s", pname);
    luaL_setmetatable(L, LUAEBPF_LINK);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, obj_idx);
    lua_setfield(L, -2, "owner");
    luaebpf_setuservalue(L, -2);
    log_begin();
    struct bpf_link *link = bpf_program__attach(prog);
    int no = errno;
    k->link = link; /* from here on the GC detaches it */
    log_end(L);     /* uv, links, link, log */
    if (!link) {
        size_t len;
        const char *log = lua_tolstring(L, -1, &len);
        push_log_lines(L, log, len, 2);
        luaebpf_pusherror_about(L, "attach", no, "program", pname,
                                no == EEXIST ? "this program is attached there already"
                                : lua_rawlen(L, -1) ? lua_tostring(L, -1) : NULL);
        lua_error(L);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, pname); /* uv, links, link */
    lua_replace(L, -3);
    lua_pop(L, 1);              /* link */
}

/* obj:attach(name), busy: obj, name -> link */
static int object_attach_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    const char *name = lua_tostring(L, 2);
    struct bpf_program *prog = bpf_object__find_program_by_name(o->obj, name);
    if (!prog) {
        lua_newtable(L);
        int n = 0;
        bpf_object__for_each_program(prog, o->obj) {
            lua_pushstring(L, bpf_program__name(prog));
            lua_rawseti(L, -2, ++n);
        }
        return raise_not_found(L, "attach", "program", name);
    }
    push_link(L, 1, prog);
    return 1;
}

static int object_attach(lua_State *L) {
    check_object(L, 1, "attach");
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    return object_run(L, "attach", object_attach_body);
}

/* obj:attach_all(), busy: obj, links -> links, filled */
static int object_attach_all_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    struct bpf_program *prog;
    bpf_object__for_each_program(prog, o->obj) {
        if (!bpf_program__autoload(prog))
            continue;
        push_link(L, 1, prog);
        lua_setfield(L, 2, bpf_program__name(prog));
    }
    lua_settop(L, 2);
    return 1;
}

/* obj:attach_all() -> { [program name] = link } for every loaded program; all
 * or nothing: when one fails, those attached before it are detached again */
static int object_attach_all(lua_State *L) {
    check_object(L, 1, "attach_all");
    lua_settop(L, 1);
    lua_newtable(L); /* links: here, so that a failure can detach them */
    if (object_pcall(L, "attach_all", object_attach_all_body) != 0) {
        lua_pushnil(L); /* obj, links, error, key */
        while (lua_next(L, 2)) {
            link_detach(lua_touserdata(L, -1));
            lua_pop(L, 1);
        }
        return lua_error(L);
    }
    return 1;
}

static int object_tostring(lua_State *L) {
    luaebpf_object *o = luaL_checkudata(L, 1, LUAEBPF_OBJECT);
    luaebpf_getuservalue(L, 1);
    const char *path = lua_istable(L, -1) ? (lua_getfield(L, -1, "path"), lua_tostring(L, -1))
                                          : NULL;
    lua_pushfstring(L, "luaebpf.Object: %s%s", path ? path : "?", o->obj ? "" : " (closed)");
    return 1;
}

void luaebpf_object_open(lua_State *L) {
    static const luaL_Reg obj_methods[] = {
        {"map", object_map},       {"maps", object_maps},
        {"programs", object_programs}, {"attach", object_attach},
        {"attach_all", object_attach_all}, {"close", object_close},
        {NULL, NULL}};
    static const luaL_Reg obj_meta[] = {
        {"__gc", object_gc}, {"__close", object_close}, {"__tostring", object_tostring},
        {NULL, NULL}};
    static const luaL_Reg link_methods[] = {
        {"close", link_close}, {"attached", link_attached}, {NULL, NULL}};
    static const luaL_Reg link_meta[] = {
        {"__gc", link_close}, {"__close", link_close}, {"__tostring", link_tostring},
        {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_OBJECT, "Object", obj_meta, obj_methods, 0);
    luaebpf_class(L, LUAEBPF_LINK, "Link", link_meta, link_methods, 0);
    lua_pushcfunction(L, core_load);
    lua_setfield(L, -2, "load");
}

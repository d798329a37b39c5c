/* object.c: BPF objects and links. ebpf.load(path [, opts]) opens and loads an
 * ELF object with libbpf; obj:map(name) and obj:maps() give Maps (each owns a
 * dup of libbpf's fd, so it outlives obj:close()); obj:programs() lists the
 * programs; obj:attach(name) and obj:attach_all() give Links that detach on
 * close or GC. libbpf's log is captured while luaebpf calls it: it goes to
 * opts.log when given, and its last lines (the verifier's reason) into the
 * error of a failed load. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
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

/* libbpf's print callback is process-wide: it appends to this buffer, which
 * keeps the newest text when it fills (the verifier's verdict comes last) */
#define LOG_CAP 16384
static char log_buf[LOG_CAP];
static size_t log_len;

static int log_capture(enum libbpf_print_level level, const char *fmt, va_list ap) {
    char line[1024];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n <= 0)
        return 0;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    VALGRIND_MAKE_MEM_DEFINED(line, len); /* the verifier's log, written by the kernel */
    if (level == LIBBPF_DEBUG)
        return 0; /* debug chatter would push the verifier's lines out */
    if (len + 1 > LOG_CAP)
        return 0;
    if (log_len + len + 1 > LOG_CAP) { /* drop the oldest half */
        size_t drop = log_len / 2;
        memmove(log_buf, log_buf + drop, log_len - drop);
        log_len -= drop;
    }
    memcpy(log_buf + log_len, line, len);
    log_len += len;
    log_buf[log_len] = '\0';
    return 0;
}

static void log_begin(void) {
    log_len = 0;
    log_buf[0] = '\0';
    libbpf_set_print(log_capture);
}

/* the last `lines` non-empty lines of the log up to `end`, joined with " | " */
static void push_log_lines(lua_State *L, size_t end, int lines) {
    while (end > 0 && (log_buf[end - 1] == '\n' || log_buf[end - 1] == ' '))
        end--;
    size_t start = end;
    int seen = 0;
    while (start > 0) {
        if (log_buf[start - 1] == '\n' && ++seen == lines)
            break;
        start--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = start; i < end; i++)
        luaL_addstring(&b, log_buf[i] == '\n' ? " | " : (char[2]){log_buf[i], 0});
    luaL_pushresult(&b);
}

static void push_log_tail(lua_State *L, int lines) {
    push_log_lines(L, log_len, lines);
}

/* the verifier's verdict: the lines before libbpf's end-of-log marker, without
 * the statistics line; 0 (nothing pushed) when the log has no verifier part */
static int push_verifier_reason(lua_State *L) {
    const char *end = strstr(log_buf, "-- END PROG LOAD LOG --");
    if (!end)
        return 0;
    size_t stop = (size_t)(end - log_buf);
    const char *stats = NULL, *p = log_buf;
    while ((p = strstr(p, "processed ")) && p < end) /* "processed N insns (limit ...)" */
        stats = p++;
    if (stats && (stats == log_buf || stats[-1] == '\n'))
        stop = (size_t)(stats - log_buf);
    push_log_lines(L, stop, 3);
    lua_pushfstring(L, "the verifier refused it: %s", lua_tostring(L, -1));
    lua_remove(L, -2);
    return 1;
}

/* hands the captured log to opts.log (at stack index fn), line by line */
static void log_deliver(lua_State *L, int fn) {
    if (!fn || !lua_isfunction(L, fn))
        return;
    size_t start = 0;
    for (size_t i = 0; i <= log_len; i++) {
        if (i == log_len || log_buf[i] == '\n') {
            if (i > start) {
                lua_pushvalue(L, fn);
                lua_pushlstring(L, log_buf + start, i - start);
                lua_call(L, 1, 0);
            }
            start = i + 1;
        }
    }
}

/* ------------------------------------------------------------ objects */

static luaebpf_object *check_object(lua_State *L, int idx, const char *op) {
    luaebpf_object *o = luaL_checkudata(L, idx, LUAEBPF_OBJECT);
    if (!o->obj || o->close_pending) {
        luaebpf_pusherror(L, op, EBADF, "closed", NULL, 0, "the object was closed");
        lua_error(L);
    }
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

static int object_gc(lua_State *L) { /* nothing is using it now, even after a raise */
    luaebpf_object *o = luaL_checkudata(L, 1, LUAEBPF_OBJECT);
    o->busy = 0;
    object_release(o);
    return 0;
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
    if (!obj) {
        int no = errno;
        log_deliver(L, logfn);
        push_log_tail(L, 2);
        luaebpf_pusherror_about(L, "load", no, "object", path, lua_rawlen(L, -1)
                                ? lua_tostring(L, -1) : "cannot open the object file");
        return lua_error(L);
    }
    o->obj = obj; /* from here on the GC closes it */
    if (bpf_object__load(obj) != 0) {
        int no = errno;
        bpf_object__close(obj);
        o->obj = NULL;
        log_deliver(L, logfn);
        int refused = push_verifier_reason(L);
        if (!refused && (no == EPERM || no == EACCES)) /* libbpf's text blames memlock */
            lua_pushliteral(L, "loading BPF programs needs CAP_BPF and CAP_PERFMON (or root)");
        else if (!refused)
            push_log_tail(L, 4);
        luaebpf_pusherror_about(L, "load", no, "object", path, lua_tostring(L, -1));
        if (refused) { /* EACCES here is the verifier's "no", not a missing privilege */
            lua_pushliteral(L, "invalid");
            lua_setfield(L, -2, "class");
        }
        return lua_error(L);
    }
    log_deliver(L, logfn);
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

/* a Map for one of the object's maps: a dup of its fd, keeping obj alive too */
static void push_object_map(lua_State *L, int obj_idx, struct bpf_map *map) {
    luaebpf_object *o = lua_touserdata(L, obj_idx);
    o->busy++; /* libbpf's fd must stay open until it is duplicated */
    luaebpf_map_from_fd(L, bpf_map__fd(map)); /* a raise here leaves busy set: GC closes */
    object_unbusy(o);
    luaebpf_getuservalue(L, -1);
    lua_pushvalue(L, obj_idx);
    lua_setfield(L, -2, "owner");
    lua_pop(L, 1);
}

/* obj:map(name) */
static int object_map(lua_State *L) {
    luaebpf_object *o = check_object(L, 1, "map");
    const char *name = luaL_checkstring(L, 2);
    struct bpf_map *map = bpf_object__find_map_by_name(o->obj, name);
    if (!map || bpf_map__fd(map) < 0) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        lua_pushfstring(L, "no map named '%s' in this object (it has:", name);
        luaL_addvalue(&b);
        bpf_object__for_each_map(map, o->obj) {
            lua_pushfstring(L, " %s", bpf_map__name(map));
            luaL_addvalue(&b);
        }
        luaL_addchar(&b, ')');
        luaL_pushresult(&b);
        luaebpf_pusherror_about(L, "open", ENOENT, "map", name, lua_tostring(L, -1));
        return lua_error(L);
    }
    push_object_map(L, 1, map);
    return 1;
}

/* upvalues: object, index of the next map */
static int object_maps_step(lua_State *L) {
    luaebpf_object *o = check_object(L, lua_upvalueindex(1), "maps");
    lua_Integer want = lua_tointeger(L, lua_upvalueindex(2)), i = 0;
    struct bpf_map *map;
    bpf_object__for_each_map(map, o->obj) {
        if (i++ < want || bpf_map__fd(map) < 0)
            continue;
        lua_pushinteger(L, i);
        lua_replace(L, lua_upvalueindex(2));
        o->busy++;
        lua_pushstring(L, bpf_map__name(map));
        push_object_map(L, lua_upvalueindex(1), map);
        object_unbusy(o);
        return 2;
    }
    return 0;
}

/* for name, m in obj:maps() do ... end */
static int object_maps(lua_State *L) {
    check_object(L, 1, "maps");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, object_maps_step, 2);
    return 1;
}

/* obj:programs() -> { { name =, section =, type =, fd = }, ... } */
static int object_programs(lua_State *L) {
    luaebpf_object *o = check_object(L, 1, "programs");
    struct bpf_program *prog;
    lua_newtable(L);
    int i = 0;
    o->busy++;
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
    object_unbusy(o);
    return 1;
}

/* ---------------------------------------------------------------- links */

static int link_close(lua_State *L) { /* close, __close, __gc: detaches */
    luaebpf_link *k = luaL_checkudata(L, 1, LUAEBPF_LINK);
    struct bpf_link *link = k->link;
    k->link = NULL;
    if (link)
        bpf_link__destroy(link);
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
 * since a second attachment would count every event twice */
static void push_link(lua_State *L, int obj_idx, struct bpf_program *prog) {
    luaebpf_object *o = lua_touserdata(L, obj_idx);
    const char *pname = bpf_program__name(prog);
    o->busy++; /* prog and pname belong to the object: keep it open until done */
    luaebpf_getuservalue(L, obj_idx);
    lua_getfield(L, -1, "links");
    lua_getfield(L, -1, pname); /* uv, links, link or nil */
    luaebpf_link *old = luaL_testudata(L, -1, LUAEBPF_LINK);
    if (old && old->link) {
        luaebpf_pusherror_about(L, "attach", EEXIST, "program", pname,
                                "already attached by this object: close that link first");
        object_unbusy(o);
        lua_error(L);
    }
    lua_pop(L, 1);
    luaebpf_link *k = luaebpf_newuserdata(L, sizeof *k);
    k->link = NULL;
    snprintf(k->prog, sizeof k->prog, "%s", bpf_program__name(prog));
    luaL_setmetatable(L, LUAEBPF_LINK);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, obj_idx);
    lua_setfield(L, -2, "owner");
    luaebpf_setuservalue(L, -2);
    log_begin();
    struct bpf_link *link = bpf_program__attach(prog);
    if (!link) {
        int no = errno;
        push_log_tail(L, 2);
        luaebpf_pusherror_about(L, "attach", no, "program", pname,
                                no == EEXIST ? "this program is attached there already"
                                : lua_rawlen(L, -1) ? lua_tostring(L, -1) : NULL);
        object_unbusy(o);
        lua_error(L);
    }
    k->link = link;
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, pname); /* uv, links, link */
    lua_replace(L, -3);
    lua_pop(L, 1);              /* link */
    object_unbusy(o);
}

/* obj:attach(name) -> link */
static int object_attach(lua_State *L) {
    luaebpf_object *o = check_object(L, 1, "attach");
    const char *name = luaL_checkstring(L, 2);
    struct bpf_program *prog = bpf_object__find_program_by_name(o->obj, name);
    if (!prog) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        lua_pushfstring(L, "no program named '%s' in this object (it has:", name);
        luaL_addvalue(&b);
        bpf_object__for_each_program(prog, o->obj) {
            lua_pushfstring(L, " %s", bpf_program__name(prog));
            luaL_addvalue(&b);
        }
        luaL_addchar(&b, ')');
        luaL_pushresult(&b);
        luaebpf_pusherror_about(L, "attach", ENOENT, "program", name, lua_tostring(L, -1));
        return lua_error(L);
    }
    push_link(L, 1, prog);
    return 1;
}

/* obj:attach_all() -> { [program name] = link } for every loaded program */
static int object_attach_all(lua_State *L) {
    luaebpf_object *o = check_object(L, 1, "attach_all");
    struct bpf_program *prog;
    lua_newtable(L);
    int links = lua_gettop(L);
    o->busy++; /* the loop walks the object's programs while Lua allocates */
    bpf_object__for_each_program(prog, o->obj) {
        if (!bpf_program__autoload(prog))
            continue;
        push_link(L, 1, prog); /* a failure raises; links made so far detach on GC */
        lua_setfield(L, links, bpf_program__name(prog));
    }
    object_unbusy(o);
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

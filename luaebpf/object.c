/* object.c: BPF objects. ebpf.load(path [, opts]) opens and loads an ELF
 * object with libbpf (or only opens it: opts.load = false, then obj:load());
 * obj:map(name) and obj:maps() give Maps (each owns a dup of libbpf's fd, so
 * it outlives obj:close()); obj:programs() lists the programs, obj:program(name)
 * gives one as a Program (program.c); obj:attach(name [, uprobe options]) and
 * obj:attach_all() attach them, as Links (link.c) that detach on close or GC;
 * obj:global(name [, value]) is globals.c's. libbpf's log is captured
 * (libbpflog.c) around every libbpf call that may print: it goes to opts.log
 * when given, and its last lines (the verifier's reason) into the error of a
 * failed load or attach. */
#include <errno.h>
#include <string.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

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
    luaebpf_mappings_release(&o->mappings);
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

/* Loads the opened object o: libbpf's log goes to the function at logfn (0:
 * none), the path at index path names the object; on failure the object is
 * closed and the error raised. Nothing allocates from the caller's check of
 * the object to the load. */
static void object_load_now(lua_State *L, luaebpf_object *o, int logfn, int path) {
    struct bpf_object *obj = o->obj;
    luaebpf_log_begin();
    int rc = bpf_object__load(obj);
    int no = errno;
    if (rc != 0) {
        o->obj = NULL; /* libbpf's object is of no use after a failed load */
        bpf_object__close(obj);
    } else {
        o->loaded = 1;
    }
    luaebpf_log_end(L); /* libbpf's log of the load, the verifier's among it */
    int log = lua_gettop(L);
    luaebpf_log_deliver(L, logfn, log);
    if (rc != 0)
        luaebpf_raise_load_failure(L, lua_tostring(L, path), no, log);
    lua_pop(L, 1);
}

/* core.load(path [, { log = function(line) end, load = false }]) */
static int core_load(lua_State *L) {
    static const char *const known[] = {"log", "load", NULL};
    luaebpf_check_path(L, 1);
    lua_settop(L, 2);
    int logfn = 0, load = 1;
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        luaebpf_check_options(L, 2, "load options", known);
        lua_getfield(L, 2, "load");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            return luaL_error(L, "bad option 'load': a boolean expected, got %s",
                              luaL_typename(L, -1));
        load = lua_isnil(L, -1) || lua_toboolean(L, -1);
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
    lua_createtable(L, 0, 3); /* user value: the path, for messages; the live links; the log */
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "path");
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "links");
    if (logfn) {
        lua_pushvalue(L, logfn);
        lua_setfield(L, -2, "log"); /* for obj:load() */
    }
    luaebpf_setuservalue(L, self);
    const char *path = lua_tostring(L, 1);
    luaebpf_log_begin();
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    int no = errno;
    o->obj = obj; /* from here on the GC closes it */
    luaebpf_log_end(L);   /* self + 1: libbpf's log of the open */
    luaebpf_log_deliver(L, logfn, self + 1);
    if (!obj) {
        size_t len;
        const char *log = lua_tolstring(L, self + 1, &len);
        luaebpf_push_log_lines(L, log, len, 2);
        luaebpf_pusherror_about(L, "load", no, "object", path, lua_rawlen(L, -1)
                                ? lua_tostring(L, -1) : "cannot open the object file");
        return lua_error(L);
    }
    if (load) {
        check_object(L, self, "load"); /* a finalizer run by the log may have closed it */
        object_load_now(L, o, logfn, 1);
    }
    lua_settop(L, self);
    return 1;
}

/* obj:load(): loads an object opened with { load = false } */
static int object_load(lua_State *L) {
    check_object(L, 1, "load");
    lua_settop(L, 1);
    luaebpf_getuservalue(L, 1);
    lua_getfield(L, 2, "log");  /* 3 */
    lua_getfield(L, 2, "path"); /* 4 */
    luaebpf_object *o = check_object(L, 1, "load");
    if (o->loaded || o->busy) { /* busy: a finalizer, while a method holds libbpf's state */
        luaebpf_pusherror_about(L, "load", EINVAL, "object", lua_tostring(L, 4),
                                o->loaded ? "the object is loaded already"
                                : "not from a finalizer while a method of the object runs");
        return lua_error(L);
    }
    object_load_now(L, o, lua_isnil(L, 3) ? 0 : 3, 4);
    lua_settop(L, 1);
    return 1;
}

/* raises for op on an object opened with { load = false } and not loaded yet */
static void check_loaded(lua_State *L, luaebpf_object *o, int self, const char *op) {
    if (o->loaded)
        return;
    luaebpf_getuservalue(L, self);
    lua_getfield(L, -1, "path");
    luaebpf_pusherror_about(L, op, EINVAL, "object", lua_tostring(L, -1),
                            "the object is not loaded: call obj:load() first");
    lua_error(L);
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
        return luaebpf_raise_not_found(L, "open", "map", name);
    }
    push_object_map(L, 1, map);
    return 1;
}

static int object_map(lua_State *L) {
    check_loaded(L, check_object(L, 1, "map"), 1, "map");
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
    check_loaded(L, check_object(L, 1, "maps"), 1, "maps");
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
        if (bpf_program__fd(prog) >= 0) { /* none before load */
            lua_pushinteger(L, bpf_program__fd(prog));
            lua_setfield(L, -2, "fd");
        }
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

/* where a uprobe goes: obj:attach(name, opts) */
typedef struct uprobe_target {
    const char *binary, *func; /* anchored in the options table, on the stack */
    size_t offset;
    int pid;                   /* -1: every process */
    int retprobe;
} uprobe_target;

static int is_uprobe(const struct bpf_program *prog) {
    const char *sec = bpf_program__section_name(prog);
    return bpf_program__type(prog) == BPF_PROG_TYPE_KPROBE &&
           (strncmp(sec, "uprobe", 6) == 0 || strncmp(sec, "uretprobe", 9) == 0);
}

/* reads the attach options at idx into u; the strings stay on the stack */
static void check_uprobe_options(lua_State *L, int idx, const struct bpf_program *prog,
                                 uprobe_target *u) {
    static const char *const known[] = {"binary", "func", "offset", "pid", "retprobe", NULL};
    const char *pname = bpf_program__name(prog);
    luaL_checktype(L, idx, LUA_TTABLE);
    luaebpf_check_options(L, idx, "attach options", known);
    if (!is_uprobe(prog)) {
        const char *t = libbpf_bpf_prog_type_str(bpf_program__type(prog));
        luaL_error(L, "attach options are for uprobe programs (SEC(\"uprobe\") or "
                   "SEC(\"uretprobe\")); '%s' is a %s program in section '%s'", pname,
                   t ? t : "unknown", bpf_program__section_name(prog));
    }
    lua_getfield(L, idx, "binary");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad option 'binary': a path expected, got %s", luaL_typename(L, -1));
    /* C strings from here on: a NUL inside would cut them short without a word */
    u->binary = luaebpf_tostring_nonul(L, -1);
    if (!u->binary || !*u->binary)
        luaL_error(L, "bad option 'binary': a path expected, got %s",
                   u->binary ? "an empty string" : "a string holding a NUL byte");
    lua_getfield(L, idx, "func");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad option 'func': a function name expected, got %s",
                   luaL_typename(L, -1));
    u->func = lua_isnil(L, -1) ? NULL : luaebpf_tostring_nonul(L, -1);
    if (!lua_isnil(L, -1) && (!u->func || !*u->func))
        luaL_error(L, "bad option 'func': a function name expected, got %s",
                   u->func ? "an empty string" : "a string holding a NUL byte");
    lua_Integer v = 0;
    lua_getfield(L, idx, "offset");
    if (!lua_isnil(L, -1) && !luaebpf_tointeger_in(L, -1, 0, INT64_MAX, &v))
        luaL_error(L, "bad option 'offset': an integer >= 0 expected, got %s",
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
    u->offset = (size_t)v;
    if (!u->func && lua_isnil(L, -1))
        luaL_error(L, "attach options need 'func' (a function name) or 'offset' (in the binary)");
    lua_pop(L, 1);
    v = -1;
    lua_getfield(L, idx, "pid");
    if (!lua_isnil(L, -1) && !luaebpf_tointeger_in(L, -1, -1, INT32_MAX, &v))
        luaL_error(L, "bad option 'pid': a process id (or -1: every process) expected, got %s",
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
    u->pid = (int)v;
    lua_pop(L, 1);
    lua_getfield(L, idx, "retprobe");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_error(L, "bad option 'retprobe': a boolean expected, got %s", luaL_typename(L, -1));
    u->retprobe = lua_isnil(L, -1)
                      ? strncmp(bpf_program__section_name(prog), "uretprobe", 9) == 0
                      : lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* pushes a link for prog, attached, to the uprobe target u when not NULL.
 * Without u, refuses a program whose link is still live, since a second
 * attachment would count every event twice (a uprobe program may go on
 * several functions). The caller holds the object busy: prog and its name
 * belong to the object. */
static void push_link(lua_State *L, int obj_idx, struct bpf_program *prog,
                      const uprobe_target *u) {
    const char *pname = bpf_program__name(prog);
    luaebpf_getuservalue(L, obj_idx);
    lua_getfield(L, -1, "links");
    lua_getfield(L, -1, pname); /* uv, links, link or nil */
    luaebpf_link *old = luaL_testudata(L, -1, LUAEBPF_LINK);
    if (old && old->fd >= 0 && !u) {
        luaebpf_pusherror_about(L, "attach", EEXIST, "program", pname,
                                "already attached by this object: close that link first");
        lua_error(L);
    }
    lua_pop(L, 1);
    luaebpf_link *k = luaebpf_link_push(L, obj_idx, pname);
    luaebpf_log_begin();
    struct bpf_link *link;
    if (u) {
        LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = u->retprobe, .func_name = u->func);
        link = bpf_program__attach_uprobe_opts(prog, u->pid, u->binary, u->offset, &uo);
    } else {
        link = bpf_program__attach(prog);
    }
    int no = errno;
    if (link) { /* from here on the GC detaches it */
        k->link = link;
        k->fd = bpf_link__fd(link);
    }
    luaebpf_log_end(L);     /* uv, links, link, log */
    if (!link) {
        size_t len;
        const char *log = lua_tolstring(L, -1, &len);
        luaebpf_push_log_lines(L, log, len, 2);
        luaebpf_pusherror_about(L, "attach", no, "program", pname,
                                no == EEXIST ? "this program is attached there already"
                                : lua_rawlen(L, -1) ? lua_tostring(L, -1) : NULL);
        lua_error(L);
    }
    lua_pop(L, 1);
    if (!u) {
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, pname); /* uv, links, link */
    }
    lua_replace(L, -3);
    lua_pop(L, 1);              /* link */
}

/* the program called name, or a raise listing the object's programs */
static struct bpf_program *find_program(lua_State *L, luaebpf_object *o, const char *op,
                                        const char *name) {
    struct bpf_program *prog = bpf_object__find_program_by_name(o->obj, name);
    if (!prog) {
        lua_newtable(L);
        int n = 0;
        bpf_object__for_each_program(prog, o->obj) {
            lua_pushstring(L, bpf_program__name(prog));
            lua_rawseti(L, -2, ++n);
        }
        luaebpf_raise_not_found(L, op, "program", name);
    }
    return prog;
}

/* obj:attach(name [, opts]), busy: obj, name, opts -> link */
static int object_attach_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    struct bpf_program *prog = find_program(L, o, "attach", lua_tostring(L, 2));
    uprobe_target u;
    if (!lua_isnil(L, 3))
        check_uprobe_options(L, 3, prog, &u);
    push_link(L, 1, prog, lua_isnil(L, 3) ? NULL : &u);
    return 1;
}

static int object_attach(lua_State *L) {
    check_loaded(L, check_object(L, 1, "attach"), 1, "attach");
    luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    return object_run(L, "attach", object_attach_body);
}

/* obj:program(name), busy: obj, name -> Program */
static int object_program_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    struct bpf_program *prog = find_program(L, o, "program", lua_tostring(L, 2));
    if (bpf_program__fd(prog) < 0) {
        luaebpf_pusherror_about(L, "program", ENOENT, "program", bpf_program__name(prog),
                                "the program was not loaded (autoload is off)");
        return lua_error(L);
    }
    luaebpf_program_push(L, 1, bpf_program__fd(prog), bpf_program__name(prog));
    return 1;
}

static int object_program(lua_State *L) {
    check_loaded(L, check_object(L, 1, "program"), 1, "program");
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    return object_run(L, "program", object_program_body);
}

/* obj:global(name [, value]), busy */
static int object_global_body(lua_State *L) {
    return luaebpf_global(L, lua_touserdata(L, 1));
}

static int object_global(lua_State *L) {
    check_object(L, 1, "global");
    luaL_checkstring(L, 2);
    if (lua_gettop(L) > 3)
        lua_settop(L, 3);
    return object_run(L, "global", object_global_body);
}

/* obj:attach_all(), busy: obj, links -> links, filled */
static int object_attach_all_body(lua_State *L) {
    luaebpf_object *o = lua_touserdata(L, 1);
    struct bpf_program *prog;
    bpf_object__for_each_program(prog, o->obj) {
        if (!bpf_program__autoload(prog))
            continue;
        push_link(L, 1, prog, NULL);
        lua_setfield(L, 2, bpf_program__name(prog));
    }
    lua_settop(L, 2);
    return 1;
}

/* obj:attach_all() -> { [program name] = link } for every loaded program; all
 * or nothing: when one fails, those attached before it are detached again */
static int object_attach_all(lua_State *L) {
    check_loaded(L, check_object(L, 1, "attach_all"), 1, "attach_all");
    lua_settop(L, 1);
    lua_newtable(L); /* links: here, so that a failure can detach them */
    if (object_pcall(L, "attach_all", object_attach_all_body) != 0) {
        lua_pushnil(L); /* obj, links, error, key */
        while (lua_next(L, 2)) {
            luaebpf_link_detach(lua_touserdata(L, -1));
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
        {"load", object_load},     {"program", object_program},
        {"global", object_global}, {NULL, NULL}};
    static const luaL_Reg obj_meta[] = {
        {"__gc", object_gc}, {"__close", object_close}, {"__tostring", object_tostring},
        {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_OBJECT, "Object", obj_meta, obj_methods, 0);
    luaebpf_link_open(L);
    luaebpf_program_open(L);
    lua_pushcfunction(L, core_load);
    lua_setfield(L, -2, "load");
}

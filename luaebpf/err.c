/* err.c: the only place that turns an errno into words. Owns the error
 * object (a table with op, errno, code, class, map, id, detail and the shared
 * metatable "luaebpf.Error" whose __tostring is the one-line message), the
 * errno -> code/class table, what counts as "unsupported", the "closed"
 * error of every handle, and core.error, the constructor Lua uses. Calls
 * only auxlib.c (strict options for core.error). */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

static const struct {
    int no;
    const char *code, *cls;
} errtab[] = {
    {ENOENT, "ENOENT", "missing"},       {ESRCH, "ESRCH", "missing"},
    {ENOTDIR, "ENOTDIR", "missing"},     {ENODEV, "ENODEV", "missing"},
    {EPERM, "EPERM", "permission"},      {EACCES, "EACCES", "permission"},
    {EINVAL, "EINVAL", "invalid"},       {EEXIST, "EEXIST", "invalid"},
    {EFAULT, "EFAULT", "invalid"},       {EBADF, "EBADF", "closed"},
    {E2BIG, "E2BIG", "resource"},        {ENOMEM, "ENOMEM", "resource"},
    {ENOSPC, "ENOSPC", "resource"},      {EMFILE, "EMFILE", "resource"},
    {ENFILE, "ENFILE", "resource"},      {EAGAIN, "EAGAIN", "transient"},
    {EINTR, "EINTR", "transient"},       {EBUSY, "EBUSY", "transient"},
    {EOPNOTSUPP, "EOPNOTSUPP", "unsupported"},
    {ENOSYS, "ENOSYS", "unsupported"},   {LUAEBPF_ENOTSUPP, "ENOTSUPP", "unsupported"},
};

/* libbpf's own error numbers (LIBBPF_ERRNO__*), 4000 up */
static const char *const libbpf_codes[] = {
    "LIBBPF_LIBELF", "LIBBPF_FORMAT", "LIBBPF_KVERSION", "LIBBPF_ENDIAN", "LIBBPF_INTERNAL",
    "LIBBPF_RELOC", "LIBBPF_LOAD", "LIBBPF_VERIFY", "LIBBPF_PROG2BIG", "LIBBPF_KVER",
    "LIBBPF_PROGTYPE", "LIBBPF_WRNGPID", "LIBBPF_INVSEQ", "LIBBPF_NLPARSE",
};
#define NLIBBPF (sizeof libbpf_codes / sizeof libbpf_codes[0])

static void errno_names(int no, const char **code, const char **cls) {
    if (no >= 4000 && no < 4000 + (int)NLIBBPF) {
        *code = libbpf_codes[no - 4000];
        *cls = "invalid";
        return;
    }
    for (size_t i = 0; i < sizeof errtab / sizeof errtab[0]; i++) {
        if (errtab[i].no == no) {
            *code = errtab[i].code;
            *cls = errtab[i].cls;
            return;
        }
    }
    *code = NULL;
    *cls = "invalid";
}

int luaebpf_errno_unsupported(int no) {
    return no == LUAEBPF_ENOTSUPP || no == EOPNOTSUPP;
}

/* the words for errno no; buf (size bytes) holds them when they are not a constant */
static const char *errno_text(int no, char *buf, size_t size) {
    if (no == LUAEBPF_ENOTSUPP)
        return "Operation not supported by this map type";
    if (no >= 4000 && no < 4000 + (int)NLIBBPF && libbpf_strerror(no, buf, size) == 0)
        return buf;
    return strerror(no);
}

/* the error object; `subject` is the field that names the map ("map"), the
 * program ("program") or the object file ("object") */
static void push_error(lua_State *L, const char *op, int errnum, const char *class_,
                       const char *subject, const char *map, uint32_t id, const char *detail) {
    const char *code, *cls;
    errno_names(errnum, &code, &cls);
    if (map && !*map)
        map = NULL; /* an unnamed map is named by its id */
    lua_createtable(L, 0, 8);
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
    if (errnum != 0) {
        lua_pushinteger(L, errnum);
        lua_setfield(L, -2, "errno");
        if (code)
            lua_pushstring(L, code);
        else
            lua_pushfstring(L, "errno %d", errnum);
        lua_setfield(L, -2, "code");
    }
    lua_pushstring(L, class_ ? class_ : cls);
    lua_setfield(L, -2, "class");
    if (map) {
        lua_pushstring(L, map);
        lua_setfield(L, -2, subject);
    }
    if (id) {
        lua_pushinteger(L, id);
        lua_setfield(L, -2, "id");
    }
    if (detail) {
        lua_pushstring(L, detail);
        lua_setfield(L, -2, "detail");
    }
    luaL_setmetatable(L, LUAEBPF_ERROR);
}

void luaebpf_pusherror(lua_State *L, const char *op, int errnum, const char *class_,
                       const char *map, uint32_t id, const char *detail) {
    push_error(L, op, errnum, class_, "map", map, id, detail);
}

/* the same error object, about a program or an object file instead of a map */
void luaebpf_pusherror_about(lua_State *L, const char *op, int errnum, const char *about,
                             const char *name, const char *detail) {
    push_error(L, op, errnum, NULL, about, name, 0, detail);
}

int luaebpf_fail(lua_State *L, const char *op, int errnum, const luaebpf_map *m,
                 const char *detail) {
    lua_pushnil(L);
    luaebpf_pusherror(L, op, errnum, NULL, m->name, m->id, detail); /* "" reads as no name */
    return 2;
}

int luaebpf_raise(lua_State *L, const char *op, int errnum, const char *map, uint32_t id,
                  const char *detail) {
    luaebpf_pusherror(L, op, errnum, NULL, map, id, detail);
    return lua_error(L);
}

/* A method of a handle closed before (by close, __close or the GC) raises
 * this, never a syscall on an fd number the process may have reused. */
int luaebpf_raise_closed(lua_State *L, const char *op, const char *name, uint32_t id,
                         const char *detail) {
    luaebpf_pusherror(L, op, EBADF, "closed", name, id, detail);
    return lua_error(L);
}

/* field `name` of the table at 1 as a string, or NULL. The value stays on
 * the stack, one slot per call: an __index function may have computed it,
 * and then nothing else keeps the text alive. The caller settles the stack. */
static const char *field_string(lua_State *L, const char *name) {
    lua_getfield(L, 1, name);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

/* field `name` of the table at 1: an integer in 0..hi, or 0 when absent. With
 * `expected` (core.error) anything else raises; without (tostring) it reads 0. */
static lua_Integer field_integer(lua_State *L, const char *name, lua_Integer hi,
                                 const char *expected) {
    lua_Integer v = 0;
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1) && !luaebpf_tointeger_in(L, -1, 0, hi, &v) && expected)
        luaL_error(L, "error: field '%s': %s expected, got %s", name, expected,
                   lua_type(L, -1) == LUA_TNUMBER ? luaL_tolstring(L, -1, NULL)
                                                  : luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* luaebpf: update on map 'counts' (id 28): Operation not permitted (EPERM, permission): detail */
static int error_tostring(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 12, "error message");
    luaL_Buffer b;
    char text[128]; /* libbpf's words for its own errnos */
    const char *op = field_string(L, "op"), *map = field_string(L, "map");
    const char *about = "map";
    if (!map && (map = field_string(L, "program")) != NULL)
        about = "program";
    else if (!map && (map = field_string(L, "object")) != NULL)
        about = "object";
    const char *code = field_string(L, "code"), *cls = field_string(L, "class");
    const char *detail = field_string(L, "detail");
    lua_Integer id = field_integer(L, "id", UINT32_MAX, NULL);
    int errnum = (int)field_integer(L, "errno", INT_MAX, NULL);
    luaL_buffinit(L, &b); /* above the fields' strings, which stay until the result */
    luaL_addstring(&b, "luaebpf: ");
    luaL_addstring(&b, op ? op : "error");
    if (map || id) {
        luaL_addstring(&b, " on ");
        luaL_addstring(&b, about);
        if (map) {
            lua_pushfstring(L, " '%s'", map);
            luaL_addvalue(&b);
        }
        if (id) {
            lua_pushfstring(L, map ? " (id %s)" : " id %s", LUAEBPF_UTEXT(id));
            luaL_addvalue(&b);
        }
    }
    luaL_addstring(&b, ": ");
    if (errnum) {
        lua_pushfstring(L, "%s (%s, %s)", errno_text(errnum, text, sizeof text), code ? code : "?",
                        cls ? cls : "?");
        luaL_addvalue(&b);
        if (detail) {
            luaL_addstring(&b, ": ");
            luaL_addstring(&b, detail);
        }
    } else { /* an error made in Lua: the detail is the message */
        lua_pushfstring(L, "%s (%s)", detail ? detail : "failed", cls ? cls : "?");
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return 1;
}

/* core.error{ op=, class=, map=, id=, errno=, detail= }: an error object made in Lua */
static int core_error(lua_State *L) {
    static const char *const known[] = {"op", "class", "map", "id", "errno", "detail", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaebpf_check_options(L, 1, "error", known);
    const char *op = field_string(L, "op");         /* 2: each string stays on the stack */
    const char *cls = field_string(L, "class");     /* 3 */
    const char *map = field_string(L, "map");       /* 4 */
    const char *detail = field_string(L, "detail"); /* 5 */
    int errnum = (int)field_integer(L, "errno", INT_MAX, "an errno (integer >= 0)");
    uint32_t id = (uint32_t)field_integer(L, "id", UINT32_MAX, "a map id (0..4294967295)");
    luaebpf_pusherror(L, op ? op : "error", errnum, cls, map, id, detail);
    return 1;
}

void luaebpf_err_open(lua_State *L) {
    luaL_newmetatable(L, LUAEBPF_ERROR); /* module, mt */
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_error);
    lua_setfield(L, -2, "error");
}

/* raises ENOENT for the `about` ("map", "program") called name, with the
 * names the object has (a list on the stack top) in the detail: "no map named
 * 'x' in this object (it has: a b)" */
int luaebpf_raise_not_found(lua_State *L, const char *op, const char *about, const char *name) {
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

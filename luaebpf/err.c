/* err.c: the only place that turns an errno into words. Owns the error
 * object (a table with op, errno, code, class, map, id, detail and the shared
 * metatable "luaebpf.Error" whose __tostring is the one-line message), the
 * errno -> code/class table, and core.error, the constructor Lua uses. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

#define ENOTSUPP_KERNEL 524 /* kernel-internal; libc's strerror says "Unknown error 524" */

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
    {ENOSYS, "ENOSYS", "unsupported"},   {ENOTSUPP_KERNEL, "ENOTSUPP", "unsupported"},
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

static const char *errno_text(int no) {
    static char buf[128];
    if (no == ENOTSUPP_KERNEL)
        return "Operation not supported by this map type";
    if (no >= 4000 && no < 4000 + (int)NLIBBPF && libbpf_strerror(no, buf, sizeof buf) == 0)
        return buf;
    return strerror(no);
}

static const char *subject_field = "map"; /* what `map` names in the next error */

/* the same error object, about a program or an object file instead of a map */
void luaebpf_pusherror_about(lua_State *L, const char *op, int errnum, const char *about,
                             const char *name, const char *detail) {
    subject_field = about;
    luaebpf_pusherror(L, op, errnum, NULL, name, 0, detail);
    subject_field = "map";
}

void luaebpf_pusherror(lua_State *L, const char *op, int errnum, const char *class_,
                       const char *map, uint32_t id, const char *detail) {
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
    if (map && subject_field) {
        lua_pushstring(L, map);
        lua_setfield(L, -2, subject_field);
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

static const char *map_label(const luaebpf_map *m) {
    return m->name[0] ? m->name : NULL;
}

int luaebpf_fail(lua_State *L, const char *op, int errnum, const luaebpf_map *m,
                 const char *detail) {
    lua_pushnil(L);
    luaebpf_pusherror(L, op, errnum, NULL, map_label(m), m->id, detail);
    return 2;
}

int luaebpf_raise(lua_State *L, const char *op, int errnum, const char *map, uint32_t id,
                  const char *detail) {
    luaebpf_pusherror(L, op, errnum, NULL, map, id, detail);
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
        lua_pushfstring(L, "%s (%s, %s)", errno_text(errnum), code ? code : "?",
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

/* the key on top is a string among `known`: lengths compared, so "access\0x"
 * is not "access" */
static int known_key(lua_State *L, const char *const known[]) {
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING)
        return 0;
    const char *k = lua_tolstring(L, -1, &len);
    for (int i = 0; known[i]; i++)
        if (strlen(known[i]) == len && memcmp(k, known[i], len) == 0)
            return 1;
    return 0;
}

void luaebpf_check_options(lua_State *L, int idx, const char *what, const char *const known[]) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1); /* the key stays, for lua_next */
        if (known_key(L, known))
            continue;
        int key = lua_gettop(L);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "unknown field '");
        if (lua_type(L, key) == LUA_TSTRING) { /* every byte shown, a NUL as \0 */
            size_t len;
            const char *k = lua_tolstring(L, key, &len);
            for (size_t i = 0; i < len; i++) {
                if (k[i])
                    luaL_addchar(&b, k[i]);
                else
                    luaL_addstring(&b, "\\0");
            }
        } else {
            luaL_addstring(&b, luaL_typename(L, key));
        }
        lua_pushfstring(L, "' in %s (expected one of:", what);
        luaL_addvalue(&b);
        for (int i = 0; known[i]; i++) {
            lua_pushfstring(L, " %s", known[i]);
            luaL_addvalue(&b);
        }
        luaL_addstring(&b, ")");
        luaL_pushresult(&b);
        lua_error(L);
    }
}

void luaebpf_err_open(lua_State *L) {
    luaL_newmetatable(L, LUAEBPF_ERROR); /* module, mt */
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_error);
    lua_setfield(L, -2, "error");
}

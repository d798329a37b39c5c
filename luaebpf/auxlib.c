/* auxlib.c: the Lua plumbing every file shares, as lauxlib is Lua's: classes
 * (a metatable whose __index is a method table also exposed in the module),
 * strict option tables, and options or arguments that name one of a list.
 * A leaf: it calls Lua and nothing of luaebpf, so any file may call it.
 * Error objects are err.c's; the caller's mistakes raised here are plain
 * luaL_error/luaL_argerror messages, as everywhere. */
#include <string.h>
#include "luaebpf.h"

void luaebpf_class(lua_State *L, const char *tname, const char *field, const luaL_Reg *meta,
                   const luaL_Reg *methods, int mt_upvalue) {
    luaL_newmetatable(L, tname); /* module, mt */
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);             /* module, mt, methods */
    if (mt_upvalue)
        lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, mt_upvalue ? 1 : 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, field);  /* module, mt */
    lua_pop(L, 1);
}

/* the index in names of the string at idx, or -1. Lengths are compared, so
 * "access\0x" is not "access": C would stop at the NUL and accept it. */
static int name_index(lua_State *L, int idx, const char *const names[]) {
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        return -1;
    const char *s = lua_tolstring(L, idx, &len);
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0)
            return i;
    return -1;
}

/* adds the string at idx with every byte shown, a NUL as \0 */
static void add_shown(luaL_Buffer *b, lua_State *L, int idx) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    for (size_t i = 0; i < len; i++) {
        if (s[i])
            luaL_addchar(b, s[i]);
        else
            luaL_addstring(b, "\\0");
    }
}

void luaebpf_check_options(lua_State *L, int idx, const char *what, const char *const known[]) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1); /* the key stays, for lua_next */
        if (name_index(L, -1, known) >= 0)
            continue;
        int key = lua_gettop(L);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "unknown field '");
        if (lua_type(L, key) == LUA_TSTRING)
            add_shown(&b, L, key);
        else
            luaL_addstring(&b, luaL_typename(L, key));
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

/* pushes '"a", "b" or "c" expected, got <the string given, quoted, or its type>' */
static const char *push_name_expected(lua_State *L, int idx, const char *const names[]) {
    luaL_Buffer b;
    idx = lua_absindex(L, idx);
    luaL_buffinit(L, &b);
    for (int i = 0; names[i]; i++) {
        luaL_addstring(&b, i == 0 ? "\"" : names[i + 1] ? ", \"" : " or \"");
        luaL_addstring(&b, names[i]);
        luaL_addchar(&b, '"');
    }
    luaL_addstring(&b, " expected, got ");
    if (lua_type(L, idx) == LUA_TSTRING) {
        luaL_addchar(&b, '"');
        add_shown(&b, L, idx);
        luaL_addchar(&b, '"');
    } else {
        luaL_addstring(&b, luaL_typename(L, idx));
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

int luaebpf_check_name(lua_State *L, int arg, const char *const names[], int dflt) {
    if (lua_isnoneornil(L, arg))
        return dflt;
    int i = name_index(L, arg, names);
    if (i < 0)
        luaL_argerror(L, arg, push_name_expected(L, arg, names));
    return i;
}

int luaebpf_opt_name(lua_State *L, int opts, const char *field, const char *const names[],
                     int dflt) {
    if (lua_isnoneornil(L, opts))
        return dflt;
    lua_getfield(L, opts, field);
    int i = lua_isnil(L, -1) ? dflt : name_index(L, -1, names);
    if (i < 0 && !lua_isnil(L, -1))
        luaL_error(L, "bad option '%s': %s", field, push_name_expected(L, -1, names));
    lua_pop(L, 1);
    return i;
}

const char *luaebpf_check_path(lua_State *L, int arg) {
    size_t len;
    const char *path = luaL_checklstring(L, arg, &len);
    const char *nul = memchr(path, '\0', len);
    if (nul) /* the kernel and libc would stop there: another file than the one named */
        luaL_argerror(L, arg, lua_pushfstring(L, "a path without NUL bytes expected, got one "
                      "with a NUL at byte %d", (int)(nul - path) + 1));
    if (len == 0)
        luaL_argerror(L, arg, "a path expected, got an empty string");
    return path;
}

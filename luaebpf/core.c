/* core.c: luaopen_luaebpf_core, the only exported symbol. Builds the module
 * table and lets each file add its functions and metatables. */
#include "luaebpf.h"

LUAEBPF_API int luaopen_luaebpf_core(lua_State *L);

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

LUAEBPF_API int luaopen_luaebpf_core(lua_State *L) {
    lua_newtable(L);
    luaebpf_err_open(L);
    luaebpf_codec_open(L);
    luaebpf_map_open(L);
    luaebpf_iter_open(L);
    luaebpf_mmap_open(L);
    luaebpf_object_open(L);
    luaebpf_system_open(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "version");
    return 1;
}

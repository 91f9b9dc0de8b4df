/* child processes (uv_spawn) for luvd.child_process. */
#include "luvd.h"

int luvd__open_spawn(lua_State *L)
{
    (void)L;
    return 0;
}

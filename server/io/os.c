/* luvd.os: facts about the machine (libuv). */
#include "luvd.h"

int luvd__open_os(lua_State *L)
{
    (void)L;
    return 0;
}

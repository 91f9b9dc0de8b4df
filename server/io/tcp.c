/* luvd.tcp: TCP handles over the stream core. */
#include "luvd.h"

int luvd__open_tcp(lua_State *L)
{
    (void)L;
    return 0;
}

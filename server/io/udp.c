/* luvd.udp: UDP sockets. */
#include "luvd.h"

int luvd__open_udp(lua_State *L)
{
    (void)L;
    return 0;
}

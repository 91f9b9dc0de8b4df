/* the HTTP/1.1 server core (llhttp, limits, framing). */
#include "luvd.h"

int luvd__open_http(lua_State *L)
{
    (void)L;
    return 0;
}

/* the llhttp response parser for the HTTP client. */
#include "luvd.h"

int luvd__open_http_parser(lua_State *L)
{
    (void)L;
    return 0;
}

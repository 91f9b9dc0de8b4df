/* luvd.stream: the native stream core: read and write queues over uv_stream_t, backpressure, native
 * pipes. */
#include "luvd.h"

int luvd__open_stream(lua_State *L)
{
    (void)L;
    return 0;
}

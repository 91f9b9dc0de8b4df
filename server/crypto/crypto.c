/* luvd.crypto: hashes, HMACs, pbkdf2, scrypt and random bytes (OpenSSL). */
#include "luvd.h"

int luvd__open_crypto(lua_State *L)
{
    (void)L;
    return 0;
}

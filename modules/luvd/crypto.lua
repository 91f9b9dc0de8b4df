-- luvd.crypto: hashes, HMACs, key derivation and random bytes over OpenSSL
-- (API.md "luvd.zlib, luvd.crypto"; the C half is server/crypto/crypto.c).
--
--   createHash(alg[, {outputLength=}]) / createHmac(alg, key) -> object with
--     :update(data) (returns the object), :digest([enc]), :copy()
--   hash(alg, data[, enc])                one-shot; enc defaults to "hex"
--   getHashes()                           the digest names, sorted
--   pbkdf2(pw, salt, iterations, keylen, digest[, cb]) / pbkdf2Sync(...)
--   scrypt(pw, salt, keylen[, opts][, cb]) / scryptSync(pw, salt, keylen[, opts])
--     opts: N (or cost, 16384), r (or blockSize, 8), p (or parallelization, 1),
--     maxmem (bytes, 32 MiB)
--   randomBytes(n[, cb]), randomBytesSync(n), randomUUID(), timingSafeEqual(a, b)
--   encode(data, enc), toHex(data)
--
-- Data, keys and results are Lua strings of raw bytes (Node's Buffers).
-- Encodings: nil, "buffer", "binary" or "latin1" give the raw bytes; "hex",
-- "base64" and "base64url" the text.
--
-- pbkdf2, scrypt and randomBytes run on the thread pool in the three calling
-- styles (API.md): with a callback, cb(err, bytes); inside a luvd coroutine,
-- suspend and return bytes or nil, err; the Sync forms run now and return
-- bytes or nil, err. randomBytes(n) without a callback outside a coroutine
-- is synchronous as in Node (it returns the bytes or nil, err);
-- randomBytesSync(n) is that same synchronous form anywhere, for the small
-- tokens a request handler makes, which are not worth a trip to the pool.
--
-- Errors. Misuse raises, with the function, the argument and Node's code in
-- the message: a wrong type (ERR_INVALID_ARG_TYPE), a number out of range
-- (ERR_OUT_OF_RANGE), an unknown algorithm for createHash/createHmac/hash
-- (ERR_CRYPTO_INVALID_DIGEST), update or digest after digest
-- (ERR_CRYPTO_HASH_FINALIZED), timingSafeEqual of different lengths
-- (ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH). What OpenSSL refuses in the
-- pool functions is an error object instead: an unknown pbkdf2 digest
-- (ERR_CRYPTO_INVALID_DIGEST) and scrypt parameters OpenSSL rejects, a
-- memory limit among them (ERR_CRYPTO_INVALID_SCRYPT_PARAMS).
--
-- Hash and Hmac objects are FFI cdata over a C struct; update and digest
-- are plain C calls the trace compiler compiles through. The OpenSSL
-- context is freed by digest(), or by the GC for an object never digested.

local ffi = require "ffi"
local core = require "luvd.core"
local loop = require "luvd.loop"
local errors = require "luvd.errors"

ffi.cdef [[
typedef struct luvd_hash_s {
    struct evp_md_ctx_st *md;
    struct evp_md_ctx_st *outer;
    int finalized;
    int hmac;
    int xof;
    int xoflen;
} luvd_hash_t;
struct evp_md_st *luvd_md_fetch(const char *name);
void luvd_md_free(struct evp_md_st *md);
int luvd_md_size(const struct evp_md_st *md);
int luvd_md_is_xof(const struct evp_md_st *md);
int luvd_hmac_supported(const struct evp_md_st *md);
int luvd_hash_init(luvd_hash_t *h, const struct evp_md_st *md);
int luvd_hmac_init(luvd_hash_t *h, const struct evp_md_st *md, const char *key, size_t keylen);
int luvd_hash_copy(luvd_hash_t *dst, const luvd_hash_t *src);
int luvd_hash_update(luvd_hash_t *h, const char *data, size_t len);
int luvd_hash_digest(luvd_hash_t *h, unsigned char *out);
void luvd_hash_cleanup(luvd_hash_t *h);
struct evp_md_ctx_st *luvd_crypto_digest_ctx_new(void);
void luvd_crypto_digest_ctx_free(struct evp_md_ctx_st *ctx);
int luvd_crypto_digest(struct evp_md_ctx_st *ctx, const struct evp_md_st *md, const char *data,
                size_t len, unsigned char *out);
size_t luvd_crypto_encode(const unsigned char *in, size_t len, int enc, char *out);
int luvd_crypto_random(unsigned char *out, size_t len);
void luvd_crypto_uuid(const unsigned char *rnd, char *out);
int luvd_crypto_memeq(const char *a, const char *b, size_t len);
]]

local C = ffi.C
local ffi_string, ffi_new, ffi_gc, ffi_cast = ffi.string, ffi.new, ffi.gc, ffi.cast
local type, error, tostring, floor = type, error, tostring, math.floor
local pool_call, pool_sync = loop.pool_call, loop.pool_sync

local crypto = {}

local INT32_MAX = 2147483647
local MAX_MD = 64 -- EVP_MAX_MD_SIZE

-- Misuse ------------------------------------------------------------------

-- The message names the function, the argument and Node's code; the
-- position is that of the first caller outside this file.
local this_file = debug.getinfo(1, "S").source

local function raise(fname, msg, code)
    errors.raise_outside(this_file, ("%s: %s [%s]"):format(fname, msg, code))
end

local function type_error(fname, i, name, expected, got)
    raise(fname, ("bad argument #%d '%s' (%s expected, got %s)"):format(
        i, name, expected, type(got)), "ERR_INVALID_ARG_TYPE")
end

local function check_string(fname, i, name, v)
    if type(v) ~= "string" then type_error(fname, i, name, "string", v) end
end

local function check_cb(fname, i, cb)
    if cb ~= nil and type(cb) ~= "function" then
        type_error(fname, i, "callback", "function", cb)
    end
end

-- An integer in [min, max] (Node's validateInt32 and friends).
local function check_int(fname, i, name, v, min, max)
    if type(v) ~= "number" then type_error(fname, i, name, "number", v) end
    if v ~= floor(v) or v < min or v > max then
        raise(fname, ("bad argument #%d '%s' (must be an integer >= %d and <= %d, got %s)")
            :format(i, name, min, max, tostring(v)), "ERR_OUT_OF_RANGE")
    end
end

-- Encodings ---------------------------------------------------------------

-- 0: the raw bytes. Anything else is luvd_crypto_encode's enc.
local ENCODINGS = { hex = 1, base64 = 2, base64url = 3, binary = 0, latin1 = 0, buffer = 0 }

local function encoding_of(fname, i, enc, default)
    if enc == nil then return default end
    local kind = ENCODINGS[enc]
    if not kind then
        if type(enc) ~= "string" then type_error(fname, i, "encoding", "string", enc) end
        raise(fname, ("bad argument #%d 'encoding' (unknown encoding '%s')"):format(i, enc),
            "ERR_UNKNOWN_ENCODING")
    end
    return kind
end

local encbuf_size = 256
local encbuf = ffi_new("char[?]", encbuf_size)

-- Encodes n bytes at p (kind > 0).
local function encode_ptr(p, n, kind)
    local need = kind == 1 and 2 * n or 4 * floor((n + 2) / 3)
    local out = encbuf
    if need > encbuf_size then out = ffi_new("char[?]", need) end
    local len = C.luvd_crypto_encode(p, n, kind, out)
    return ffi_string(out, len)
end

-- encode(data, "hex" | "base64" | "base64url" | "binary")
function crypto.encode(data, enc)
    check_string("crypto.encode", 1, "data", data)
    local kind = encoding_of("crypto.encode", 2, enc, nil)
    if kind == nil then type_error("crypto.encode", 2, "encoding", "string", enc) end
    if kind == 0 then return data end
    return encode_ptr(ffi_cast("const unsigned char *", data), #data, kind)
end

function crypto.toHex(data)
    check_string("crypto.toHex", 1, "data", data)
    return encode_ptr(ffi_cast("const unsigned char *", data), #data, 1)
end

-- Digests -----------------------------------------------------------------

-- name -> fetched EVP_MD (freed with the state). Unknown names are not
-- cached: they may come from outside and would grow the table.
local mds = {}

local function get_md(name)
    local md = mds[name]
    if md == nil then
        if name:find("\0", 1, true) then return nil end
        md = C.luvd_md_fetch(name)
        if md == nil then return nil end
        md = ffi_gc(md, C.luvd_md_free)
        mds[name] = md
    end
    return md
end

local function invalid_digest(fname, i, name)
    raise(fname, ("bad argument #%d 'algorithm' (Invalid digest: %s)"):format(i, name),
        "ERR_CRYPTO_INVALID_DIGEST")
end

local function md_of(fname, name)
    check_string(fname, 1, "algorithm", name)
    return get_md(name) or invalid_digest(fname, 1, name)
end

local outbuf = ffi_new("unsigned char[?]", MAX_MD)

local Hash = {}

-- The struct lives in Lua's heap; __gc frees the OpenSSL contexts of an
-- object that was never digested.
local hash_ct = ffi.metatype("luvd_hash_t", {
    __index = Hash,
    __gc = C.luvd_hash_cleanup,
    __tostring = function(h) return h.hmac ~= 0 and "Hmac" or "Hash" end,
})

local function finalized(fname)
    raise(fname, "Digest already called", "ERR_CRYPTO_HASH_FINALIZED")
end

-- Input encodings Node code passes to update(): a Lua string already is
-- the bytes, so each of these means "as is".
local RAW_INPUT = { binary = true, latin1 = true, buffer = true, utf8 = true, ["utf-8"] = true }

-- update(data[, inputEncoding])
function Hash:update(data, enc)
    if type(data) ~= "string" then type_error("hash:update", 1, "data", "string", data) end
    if enc ~= nil and not RAW_INPUT[enc] then
        raise("hash:update", ("bad argument #2 'encoding' (%s: data is taken as raw bytes;"
            .. " decode it first)"):format(tostring(enc)), "ERR_INVALID_ARG_VALUE")
    end
    local rc = C.luvd_hash_update(self, data, #data)
    if rc ~= 0 then
        if rc == -1 then finalized("hash:update") end
        raise("hash:update", "OpenSSL failed", "ERR_CRYPTO_OPERATION_FAILED")
    end
    return self
end

function Hash:digest(enc)
    local kind = encoding_of("hash:digest", 1, enc, 0)
    local out, n = outbuf, self.xoflen
    if n > MAX_MD then out = ffi_new("unsigned char[?]", n) end
    local len = C.luvd_hash_digest(self, out)
    if len < 0 then
        if len == -1 then finalized("hash:digest") end
        raise("hash:digest", "OpenSSL failed", "ERR_CRYPTO_OPERATION_FAILED")
    end
    if kind == 0 then return ffi_string(out, len) end
    return encode_ptr(out, len, kind)
end

-- A copy of the state so far (Node's hash.copy(), for Hmacs too).
function Hash:copy()
    if self.finalized ~= 0 then finalized("hash:copy") end
    local h = hash_ct()
    if C.luvd_hash_copy(h, self) ~= 0 then error("hash:copy: out of memory", 2) end
    return h
end

function crypto.createHash(alg, opts)
    local md = md_of("crypto.createHash", alg)
    local h = hash_ct()
    if C.luvd_hash_init(h, md) ~= 0 then error("crypto.createHash: out of memory", 2) end
    if opts ~= nil then
        if type(opts) ~= "table" then
            type_error("crypto.createHash", 2, "options", "table", opts)
        end
        local n = opts.outputLength
        if n ~= nil then
            check_int("crypto.createHash", 2, "options.outputLength", n, 0, INT32_MAX)
            if h.xof ~= 0 then
                h.xoflen = n == 0 and -1 or n -- 0 in C is the default length
            elseif n ~= C.luvd_md_size(md) then
                raise("crypto.createHash", ("Output length %d is invalid for %s, which does not"
                    .. " support XOF"):format(n, alg), "ERR_CRYPTO_INVALID_DIGEST")
            end
        end
    end
    return h
end

function crypto.createHmac(alg, key)
    local md = md_of("crypto.createHmac", alg)
    if C.luvd_hmac_supported(md) == 0 then invalid_digest("crypto.createHmac", 1, alg) end
    check_string("crypto.createHmac", 2, "key", key)
    local h = hash_ct()
    if C.luvd_hmac_init(h, md, key, #key) ~= 0 then error("crypto.createHmac: out of memory", 2) end
    return h
end

local digest_ctx -- made at the first crypto.hash

-- hash(alg, data[, enc]): enc defaults to "hex", as Node 21's crypto.hash.
function crypto.hash(alg, data, enc)
    local md = md_of("crypto.hash", alg)
    check_string("crypto.hash", 2, "data", data)
    local kind = encoding_of("crypto.hash", 3, enc, 1)
    if not digest_ctx then
        digest_ctx = C.luvd_crypto_digest_ctx_new()
        if digest_ctx == nil then error("crypto.hash: out of memory", 2) end
        digest_ctx = ffi_gc(digest_ctx, C.luvd_crypto_digest_ctx_free)
    end
    local len = C.luvd_crypto_digest(digest_ctx, md, data, #data, outbuf)
    if len < 0 then raise("crypto.hash", "OpenSSL failed", "ERR_CRYPTO_OPERATION_FAILED") end
    if kind == 0 then return ffi_string(outbuf, len) end
    return encode_ptr(outbuf, len, kind)
end

local hashes
function crypto.getHashes()
    hashes = hashes or core.crypto_get_hashes()
    local copy = {}
    for i = 1, #hashes do copy[i] = hashes[i] end
    return copy
end

-- Key derivation on the pool ------------------------------------------------

local function check_pbkdf2(fname, pw, salt, iterations, keylen, digest)
    check_string(fname, 1, "password", pw)
    check_string(fname, 2, "salt", salt)
    check_int(fname, 3, "iterations", iterations, 1, INT32_MAX)
    check_int(fname, 4, "keylen", keylen, 0, INT32_MAX)
    check_string(fname, 5, "digest", digest)
end

function crypto.pbkdf2(pw, salt, iterations, keylen, digest, cb)
    check_pbkdf2("crypto.pbkdf2", pw, salt, iterations, keylen, digest)
    check_cb("crypto.pbkdf2", 6, cb)
    return pool_call("crypto.pbkdf2", cb, core.crypto_pbkdf2, pw, salt, iterations, keylen,
        digest)
end

function crypto.pbkdf2Sync(pw, salt, iterations, keylen, digest)
    check_pbkdf2("crypto.pbkdf2Sync", pw, salt, iterations, keylen, digest)
    return pool_sync(core.crypto_pbkdf2, pw, salt, iterations, keylen, digest)
end

local SCRYPT_MAXMEM = 32 * 1024 * 1024

-- N, r, p, maxmem from the options table. Whether they make sense together
-- (N a power of two, the memory they need) is OpenSSL's to say.
local function scrypt_params(fname, opts)
    if opts == nil then return 16384, 8, 1, SCRYPT_MAXMEM end
    if type(opts) ~= "table" then type_error(fname, 4, "options", "table", opts) end
    local N = opts.N or opts.cost or 16384
    local r = opts.r or opts.blockSize or 8
    local p = opts.p or opts.parallelization or 1
    local maxmem = opts.maxmem or SCRYPT_MAXMEM
    check_int(fname, 4, "options.N", N, 0, 2 ^ 53)
    check_int(fname, 4, "options.r", r, 0, 2 ^ 32 - 1)
    check_int(fname, 4, "options.p", p, 0, 2 ^ 32 - 1)
    check_int(fname, 4, "options.maxmem", maxmem, 0, 2 ^ 53)
    return N, r, p, maxmem
end

local function check_scrypt(fname, pw, salt, keylen)
    check_string(fname, 1, "password", pw)
    check_string(fname, 2, "salt", salt)
    check_int(fname, 3, "keylen", keylen, 0, INT32_MAX)
end

function crypto.scrypt(pw, salt, keylen, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    check_scrypt("crypto.scrypt", pw, salt, keylen)
    check_cb("crypto.scrypt", 5, cb)
    local N, r, p, maxmem = scrypt_params("crypto.scrypt", opts)
    return pool_call("crypto.scrypt", cb, core.crypto_scrypt, pw, salt, keylen, N, r, p, maxmem)
end

function crypto.scryptSync(pw, salt, keylen, opts)
    check_scrypt("crypto.scryptSync", pw, salt, keylen)
    local N, r, p, maxmem = scrypt_params("crypto.scryptSync", opts)
    return pool_sync(core.crypto_scrypt, pw, salt, keylen, N, r, p, maxmem)
end

-- Random bytes ------------------------------------------------------------

local SMALL = 1024
local randbuf = ffi_new("unsigned char[?]", SMALL)

local function random_now(n)
    if n > SMALL then return pool_sync(core.crypto_random_bytes, n) end
    if C.luvd_crypto_random(randbuf, n) ~= 0 then
        return nil, errors.new("randomBytes failed", "ERR_CRYPTO_OPERATION_FAILED")
    end
    return ffi_string(randbuf, n)
end

function crypto.randomBytes(n, cb)
    check_int("crypto.randomBytes", 1, "size", n, 0, INT32_MAX)
    check_cb("crypto.randomBytes", 2, cb)
    if cb == nil and not loop.is_managed() then return random_now(n) end
    return pool_call("crypto.randomBytes", cb, core.crypto_random_bytes, n)
end

function crypto.randomBytesSync(n)
    check_int("crypto.randomBytesSync", 1, "size", n, 0, INT32_MAX)
    return random_now(n)
end

-- UUIDs come from a cache of random bytes refilled 128 at a time, as Node's.
local UUIDS = 128
local uuid_rnd = ffi_new("unsigned char[?]", 16 * UUIDS)
local uuid_out = ffi_new("char[36]")
local uuid_next = UUIDS

function crypto.randomUUID()
    if uuid_next == UUIDS then
        if C.luvd_crypto_random(uuid_rnd, 16 * UUIDS) ~= 0 then
            raise("crypto.randomUUID", "the random generator failed",
                "ERR_CRYPTO_OPERATION_FAILED")
        end
        uuid_next = 0
    end
    C.luvd_crypto_uuid(uuid_rnd + 16 * uuid_next, uuid_out)
    uuid_next = uuid_next + 1
    return ffi_string(uuid_out, 36)
end

-- Comparison --------------------------------------------------------------

-- Constant time in the length: what it costs says nothing of where a and b
-- differ.
function crypto.timingSafeEqual(a, b)
    check_string("crypto.timingSafeEqual", 1, "a", a)
    check_string("crypto.timingSafeEqual", 2, "b", b)
    if #a ~= #b then
        raise("crypto.timingSafeEqual", "Input buffers must have the same byte length",
            "ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH")
    end
    return C.luvd_crypto_memeq(a, b, #a) == 1
end

-- process.exit() leaves without closing the Lua state, so the cached
-- digests and the one-shot context would outlive OpenSSL's own clean-up at
-- exit, and LeakSanitizer would report them. They are released on "exit"
-- (hash objects hold their own references); a later call makes them again.
local function release()
    for name, md in pairs(mds) do
        mds[name] = nil
        C.luvd_md_free(ffi_gc(md, nil))
    end
    if digest_ctx then
        C.luvd_crypto_digest_ctx_free(ffi_gc(digest_ctx, nil))
        digest_ctx = nil
    end
end
if process then process:on("exit", release) end

return crypto

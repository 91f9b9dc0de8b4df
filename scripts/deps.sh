# Sourced by the scripts: installs the Debian packages luvd needs, once.
# Each package and why:
#   build-essential cmake pkg-config  the C toolchain and build system
#   libluajit2-5.1-dev   LuaJIT (OpenResty's branch): the Lua VM and its FFI
#   libuv1-dev           the event loop and thread pool
#   libssl-dev           OpenSSL: TLS and crypto
#   zlib1g-dev           gzip/deflate
#   libdeflate-dev       one-shot gzip/deflate at twice zlib's speed
#   node-llhttp          llhttp's C sources, compiled into luvd
#   libc-ares-dev        c-ares: dns.resolve* without holding a pool thread
#   lua-busted           the spec runner `luvd test` runs inside the runtime
#   lua-cjson            JSON for applications and specs
#   luarocks             `luarocks make` with luvd-scm-1.rockspec
#   lua-check            luacheck, the Lua linter run by scripts/test
#   clang-format         the C style check run by scripts/test
#   openssl              the command line the TLS specs make certificates and talk with
#   curl                 a real HTTP client for the HTTP specs
#   procps               ps, which the child_process specs read process states with
#   nodejs               only when no `node` is on PATH: the reference for order specs
LUVD_PACKAGES=(build-essential cmake pkg-config libluajit2-5.1-dev libuv1-dev libssl-dev
               zlib1g-dev libdeflate-dev node-llhttp libc-ares-dev lua-busted lua-cjson
               luarocks lua-check clang-format openssl curl procps)

luvd_install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "scripts: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# Only for bench/http/run (neither scripts/build nor scripts/test installs them):
#   wrk                    the HTTP load generator
#   nginx libnginx-mod-http-lua  Debian's nginx with lua-nginx-module (OpenResty's
#                          module, LuaJIT 2.1 of OpenResty's branch): the OpenResty peer
LUVD_BENCH_PACKAGES=(wrk nginx libnginx-mod-http-lua)

luvd_ensure_bench_deps() {
    luvd_install_packages "${LUVD_BENCH_PACKAGES[@]}"
}

luvd_ensure_deps() {
    luvd_install_packages "${LUVD_PACKAGES[@]}"
    command -v node >/dev/null || luvd_install_packages nodejs
}

# Node's `ws` package (npm), the peer of spec/ws_node_spec.lua, into
# spec/e2e/node_modules (git-ignored); only when node and npm are there and
# it is missing. Debian's npm package brings npm when node has none.
luvd_ensure_node_ws() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    [ -d "$root/spec/e2e/node_modules/ws" ] && return 0
    command -v node >/dev/null || return 0
    command -v npm >/dev/null || luvd_install_packages npm
    npm install --no-save --no-audit --no-fund --silent --prefix "$root/spec/e2e" ws@8 \
        >/dev/null 2>&1 || echo "scripts: npm install ws@8 failed (ws_node_spec is skipped)" >&2
}

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

# For the specs that talk to Node's WebSocket library and drive a browser
# (scripts/test calls luvd_ensure_e2e; bench/ws/run too):
#   chromium             the headless browser of spec/e2e/chat_e2e.js
#   npm                  only when node has no npm: installs the two npm packages below
# From the npm registry, into spec/e2e/node_modules (--no-save, never committed),
# test and bench clients only:
#   ws@8                 Node's WebSocket library: the peer of luvd.ws in specs and bench/ws
#   playwright-core@1    drives /usr/bin/chromium (it downloads no browser of its own);
#                        1.60, the last for Node 18 (Debian 12's nodejs), under Node 18
LUVD_E2E_PACKAGES=(chromium)
LUVD_E2E_NPM=(playwright-core@1 ws@8)
if command -v node >/dev/null && [ "$(node -p 'parseInt(process.versions.node)')" -lt 20 ]; then
    LUVD_E2E_NPM=(playwright-core@1.60 ws@8)
fi

# luvd_npm_install PKG@VERSION...: npm-installs into spec/e2e/node_modules
# those of the packages that are not there yet.
luvd_npm_install() {
    local dir m missing=()
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/spec/e2e
    for m in "$@"; do
        [ -f "$dir/node_modules/${m%@*}/package.json" ] || missing+=("$m")
    done
    ((${#missing[@]})) || return 0
    # without a package.json npm removes what it was not asked for: name
    # the ones already there too
    for m in "${LUVD_E2E_NPM[@]}"; do
        [ -f "$dir/node_modules/${m%@*}/package.json" ] && missing+=("$m")
    done
    command -v npm >/dev/null || luvd_install_packages npm
    echo "scripts: npm install ${missing[*]} into spec/e2e/node_modules" >&2
    npm install --no-save --no-audit --no-fund --no-package-lock --prefix "$dir" \
        "${missing[@]}" >/dev/null
}

# Node's ws only (bench/ws/run; spec/ws_node_spec.lua when it is missing).
luvd_ensure_node_ws() {
    command -v node >/dev/null || return 0
    luvd_npm_install ws@8
}

# Everything the specs need beyond the build: chromium, playwright-core, ws.
luvd_ensure_e2e() {
    luvd_install_packages "${LUVD_E2E_PACKAGES[@]}"
    luvd_npm_install "${LUVD_E2E_NPM[@]}"
}

luvd_ensure_deps() {
    luvd_install_packages "${LUVD_PACKAGES[@]}"
    command -v node >/dev/null || luvd_install_packages nodejs
}

/* luvd.os: facts about the machine, from libuv. Each binding returns its
 * value, or nil and an error object for a libuv failure (modules/luvd/os.lua
 * passes both on). Nothing here blocks for long: /proc reads at most. */
#include <stdio.h>
#include <string.h>

#include "luvd.h"

/* nil and an error object: what a failed binding returns. */
static int push_fail(lua_State *L, int err, const char *syscall)
{
    lua_pushnil(L);
    luvd__push_error(L, err, syscall, NULL, NULL);
    return 2;
}

static void set_num(lua_State *L, const char *k, lua_Number v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* os_cpus() -> {{model=, speed=, times={user=, nice=, sys=, idle=, irq=}}};
 * {} when libuv cannot tell, as Node. Times are in milliseconds. */
static int l_cpus(lua_State *L)
{
    uv_cpu_info_t *cpus;
    int n, i;
    if (uv_cpu_info(&cpus, &n) < 0) {
        lua_newtable(L);
        return 1;
    }
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        set_str(L, "model", cpus[i].model);
        set_num(L, "speed", cpus[i].speed);
        lua_createtable(L, 0, 5);
        set_num(L, "user", (lua_Number)cpus[i].cpu_times.user);
        set_num(L, "nice", (lua_Number)cpus[i].cpu_times.nice);
        set_num(L, "sys", (lua_Number)cpus[i].cpu_times.sys);
        set_num(L, "idle", (lua_Number)cpus[i].cpu_times.idle);
        set_num(L, "irq", (lua_Number)cpus[i].cpu_times.irq);
        lua_setfield(L, -2, "times");
        lua_rawseti(L, -2, i + 1);
    }
    uv_free_cpu_info(cpus, n);
    return 1;
}

static int l_totalmem(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_get_total_memory());
    return 1;
}

static int l_freemem(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_get_free_memory());
    return 1;
}

static int l_constrained_memory(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_get_constrained_memory());
    return 1;
}

static int l_loadavg(lua_State *L)
{
    double avg[3];
    int i;
    uv_loadavg(avg);
    lua_createtable(L, 3, 0);
    for (i = 0; i < 3; i++) {
        lua_pushnumber(L, avg[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_uptime(lua_State *L)
{
    double up;
    int rc = uv_uptime(&up);
    if (rc < 0)
        return push_fail(L, rc, "uv_uptime");
    lua_pushnumber(L, up);
    return 1;
}

static int l_hostname(lua_State *L)
{
    char buf[UV_MAXHOSTNAMESIZE];
    size_t len = sizeof buf;
    int rc = uv_os_gethostname(buf, &len);
    if (rc < 0)
        return push_fail(L, rc, "uv_os_gethostname");
    lua_pushlstring(L, buf, len);
    return 1;
}

/* For the two path getters: libuv says how big a buffer it wants. */
static int push_path(lua_State *L, int (*get)(char *, size_t *), const char *syscall)
{
    char small[1024];
    char *buf = small;
    size_t len = sizeof small;
    int rc = get(buf, &len);
    if (rc == UV_ENOBUFS) {
        buf = lua_newuserdata(L, len); /* collected with the rest */
        rc = get(buf, &len);
    }
    if (rc < 0)
        return push_fail(L, rc, syscall);
    lua_pushlstring(L, buf, len);
    return 1;
}

static int l_tmpdir(lua_State *L)
{
    return push_path(L, uv_os_tmpdir, "uv_os_tmpdir");
}
static int l_homedir(lua_State *L)
{
    return push_path(L, uv_os_homedir, "uv_os_homedir");
}

/* os_uname() -> sysname, release, version, machine */
static int l_uname(lua_State *L)
{
    uv_utsname_t u;
    int rc = uv_os_uname(&u);
    if (rc < 0)
        return push_fail(L, rc, "uv_os_uname");
    lua_pushstring(L, u.sysname);
    lua_pushstring(L, u.release);
    lua_pushstring(L, u.version);
    lua_pushstring(L, u.machine);
    return 4;
}

static int l_user_info(lua_State *L)
{
    uv_passwd_t pw;
    int rc = uv_os_get_passwd(&pw);
    if (rc < 0)
        return push_fail(L, rc, "uv_os_get_passwd");
    lua_createtable(L, 0, 5);
    set_num(L, "uid", (lua_Number)pw.uid);
    set_num(L, "gid", (lua_Number)pw.gid);
    set_str(L, "username", pw.username);
    set_str(L, "homedir", pw.homedir);
    if (pw.shell)
        set_str(L, "shell", pw.shell);
    uv_os_free_passwd(&pw);
    return 1;
}

static int l_available_parallelism(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
    return 1;
}

static int l_getpriority(lua_State *L)
{
    int prio;
    int rc = uv_os_getpriority((uv_pid_t)luaL_optinteger(L, 1, 0), &prio);
    if (rc < 0)
        return push_fail(L, rc, "uv_os_getpriority");
    lua_pushinteger(L, prio);
    return 1;
}

static int l_setpriority(lua_State *L)
{
    int rc = uv_os_setpriority((uv_pid_t)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2));
    if (rc < 0)
        return push_fail(L, rc, "uv_os_setpriority");
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- networkInterfaces ----------------------------------------------------- */

/* The prefix length of a netmask, or -1 when its ones are not contiguous. */
static int prefix_len(const unsigned char *m, int n)
{
    int bits = 0, i, b, zero = 0;
    for (i = 0; i < n; i++) {
        for (b = 7; b >= 0; b--) {
            if (m[i] & (1 << b)) {
                if (zero)
                    return -1;
                bits++;
            } else {
                zero = 1;
            }
        }
    }
    return bits;
}

/* os_interfaces() -> name -> {{address=, netmask=, family=, mac=, internal=,
 * cidr=, scopeid= (IPv6)}}, in libuv's order. */
static int l_interfaces(lua_State *L)
{
    uv_interface_address_t *ifs;
    int n, i, rc;
    char addr[INET6_ADDRSTRLEN], mask[INET6_ADDRSTRLEN], mac[18];
    rc = uv_interface_addresses(&ifs, &n);
    if (rc < 0)
        return push_fail(L, rc, "uv_interface_addresses");
    lua_newtable(L);
    for (i = 0; i < n; i++) {
        uv_interface_address_t *a = &ifs[i];
        const unsigned char *p = (const unsigned char *)a->phys_addr;
        int v6 = a->address.address4.sin_family == AF_INET6, plen, len;
        if (v6) {
            uv_ip6_name(&a->address.address6, addr, sizeof addr);
            uv_ip6_name(&a->netmask.netmask6, mask, sizeof mask);
            plen = prefix_len((const unsigned char *)&a->netmask.netmask6.sin6_addr, 16);
        } else if (a->address.address4.sin_family == AF_INET) {
            uv_ip4_name(&a->address.address4, addr, sizeof addr);
            uv_ip4_name(&a->netmask.netmask4, mask, sizeof mask);
            plen = prefix_len((const unsigned char *)&a->netmask.netmask4.sin_addr, 4);
        } else {
            continue;
        }
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2], p[3], p[4],
                 p[5]);
        lua_getfield(L, -1, a->name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, a->name);
        }
        len = (int)lua_objlen(L, -1);
        lua_createtable(L, 0, 7);
        set_str(L, "address", addr);
        set_str(L, "netmask", mask);
        set_str(L, "family", v6 ? "IPv6" : "IPv4");
        set_str(L, "mac", mac);
        lua_pushboolean(L, a->is_internal);
        lua_setfield(L, -2, "internal");
        if (plen >= 0) {
            lua_pushfstring(L, "%s/%d", addr, plen);
            lua_setfield(L, -2, "cidr");
        }
        if (v6)
            set_num(L, "scopeid", a->address.address6.sin6_scope_id);
        lua_rawseti(L, -2, len + 1);
        lua_pop(L, 1);
    }
    uv_free_interface_addresses(ifs, n);
    return 1;
}

static const luaL_Reg os_funcs[] = {
    {"os_cpus", l_cpus},
    {"os_totalmem", l_totalmem},
    {"os_freemem", l_freemem},
    {"os_constrained_memory", l_constrained_memory},
    {"os_loadavg", l_loadavg},
    {"os_uptime", l_uptime},
    {"os_hostname", l_hostname},
    {"os_tmpdir", l_tmpdir},
    {"os_homedir", l_homedir},
    {"os_uname", l_uname},
    {"os_user_info", l_user_info},
    {"os_available_parallelism", l_available_parallelism},
    {"os_getpriority", l_getpriority},
    {"os_setpriority", l_setpriority},
    {"os_interfaces", l_interfaces},
    {NULL, NULL},
};

int luvd__open_os(lua_State *L)
{
    const luaL_Reg *f;
    for (f = os_funcs; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    return 0;
}

# The markdown tables of bench/http/run, from its result files in one pass.
#   awk -v cases="keepalive 64k" -v servers="luvd node openresty" -v idle=1 \
#       -v conns=10000 -v client_cpu=1 -f tables.awk RES/* /dev/null
# A result file RES/CASE.SERVER has one line per run:
#   rps p99_us cpu_us_per_req hwm_kb rss_kb errors mean_us srv% others% cpu1%
# (p99 "x" when wrk gave none); RES/idle.SERVER: before_kb after_kb ready.
# Every number shown is the median over the runs; "n/a" where there is none.

FNR == 1 { key = FILENAME; sub(/.*\//, "", key) }
key != "null" && NF > 0 {
    r = ++runs[key]
    for (i = 1; i <= NF; i++) val[key, i, r] = $i
}

# med(key, i): the median of column i over key's runs, or "n/a".
function med(k, i,    n, r, j, x, v, t) {
    n = 0
    for (r = 1; r <= runs[k]; r++) {
        x = val[k, i, r]
        if (x !~ /^-?[0-9.]+$/) continue
        v[++n] = x + 0
        for (j = n; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    }
    if (n == 0) return "n/a"
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function fmt(x, f, d) { return x == "n/a" ? "n/a" : sprintf(f, x / d) }
function ratio(a, b) { return (a == "n/a" || b == "n/a" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
function has(s) { return index(" " servers " ", " " s " ") > 0 }
# per_conn(server): median idle RSS growth in bytes per connection, or "n/a".
function per_conn(s,    b, a, n) {
    b = med("idle." s, 1); a = med("idle." s, 2); n = med("idle." s, 3)
    return (a == "n/a" || b == "n/a" || n == "n/a" || n == 0) ? "n/a" : (a - b) * 1024 / n
}

END {
    nc = split(cases, cs, " ")
    ns = split(servers, ss, " ")
    if (nc > 0) {
        print "| case | server | req/s | p99 ms | mean ms | CPU µs/req | srv CPU% | others% | CPU1 busy% | peak MB | end MB | errors |"
        print "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (c = 1; c <= nc; c++)
            for (s = 1; s <= ns; s++) {
                k = cs[c] "." ss[s]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", cs[c], ss[s],
                    fmt(med(k, 1), "%.0f", 1), fmt(med(k, 2), "%.2f", 1000), fmt(med(k, 7), "%.2f", 1000),
                    fmt(med(k, 3), "%.1f", 1), fmt(med(k, 8), "%.0f", 1), fmt(med(k, 9), "%.0f", 1),
                    fmt(med(k, 10), "%.0f", 1), fmt(med(k, 4), "%.1f", 1024), fmt(med(k, 5), "%.1f", 1024),
                    fmt(med(k, 6), "%.0f", 1)
            }
        if (has("luvd")) {
            print ""
            print "| case | req/s luvd/node | req/s luvd/openresty | CPU/req luvd/node | CPU/req luvd/openresty | p99 luvd/node | p99 luvd/openresty |"
            print "|---|--:|--:|--:|--:|--:|--:|"
            for (c = 1; c <= nc; c++) {
                l = cs[c] ".luvd"; n = cs[c] ".node"; o = cs[c] ".openresty"
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", cs[c],
                    ratio(med(l, 1), med(n, 1)), ratio(med(l, 1), med(o, 1)),
                    ratio(med(l, 3), med(n, 3)), ratio(med(l, 3), med(o, 3)),
                    ratio(med(l, 2), med(n, 2)), ratio(med(l, 2), med(o, 2))
            }
        }
        print ""
    }
    if (idle) {
        print "Idle keep-alive connections: " conns " connections each made one GET /"
        print "and stay open (bench/http/idle_client.js, node, on CPU " client_cpu "); the server's VmRSS"
        print "before they open and 1 s after all have their answer."
        print ""
        print "| server | RSS before MB | RSS with idle MB | bytes/conn | conns |"
        print "|---|--:|--:|--:|--:|"
        for (s = 1; s <= ns; s++) {
            k = "idle." ss[s]
            printf "| %s | %s | %s | %s | %s |\n", ss[s], fmt(med(k, 1), "%.1f", 1024),
                fmt(med(k, 2), "%.1f", 1024), fmt(per_conn(ss[s]), "%.0f", 1), fmt(med(k, 3), "%.0f", 1)
        }
        if (has("luvd")) {
            print ""
            print "idle bytes/conn luvd/node: " ratio(per_conn("luvd"), per_conn("node")) \
                ", luvd/openresty: " ratio(per_conn("luvd"), per_conn("openresty"))
        }
        print ""
    }
}

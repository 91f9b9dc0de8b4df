-- Appended to every case's wrk script by bench/http/run: one machine-readable
-- line at the end of the run (wrk's own text report is printed as well).
--   BENCH requests duration_us p99_us errors non2xx mean_us
-- requests = responses completed; errors = connect + read + write + timeout.
-- wrk 4.1.0's percentiles come out 0 under pipelining (its coordinated-
-- omission correction adds samples below the minimum; wg/wrk#236): the
-- runner shows n/a then, and the mean, which stays right.
-- luacheck: globals done
function done(summary, latency, _)
    local e = summary.errors
    io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
        latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status, latency.mean))
end

// A tiny DNS responder for spec/dns_spec.lua: UDP on 127.0.0.1, a random
// high port, a fixed zone. Prints "<port> <pid>" on its first line, then
// answers until killed, or until its parent goes away (so a crashed spec
// leaves nothing behind), or after ten minutes at most.
//
// Zone (anything else is NXDOMAIN):
//   a.test        A 203.0.113.1, 203.0.113.2 (TTL 300); AAAA 2001:db8::1, 2001:db8::2
//   alias.test    CNAME a.test (an A/AAAA query gets the CNAME and a.test's records)
//   mx.test       MX 10 mx1.test, 20 mx2.test
//   txt.test      TXT "v=spf1" " -all" (one record, two chunks), TXT "second"
//   _sip._tcp.srv.test  SRV 10 60 5060 sip1.test, SRV 20 40 5061 sip2.test
//   ns.test       NS ns1.test, ns2.test
//   soa.test      SOA ns1.test hostmaster.test 2024010101 3600 600 86400 60
//   1.113.0.203.in-addr.arpa, and 2001:db8::1's ip6.arpa name: PTR a.test
//   nodata.test   exists, no records of any type (NOERROR, empty: ENODATA)
//   servfail.test SERVFAIL;  refused.test REFUSED;  silent.test never answered
//   slow.test     A 203.0.113.9, answered after 300 ms
"use strict";
const dgram = require("dgram");

const ip6arpa = "20010db8000000000000000000000001".split("").reverse().join(".") + ".ip6.arpa";
const A = { "a.test": ["203.0.113.1", "203.0.113.2"], "slow.test": ["203.0.113.9"] };
const AAAA = { "a.test": ["2001:db8::1", "2001:db8::2"] };
const CNAME = { "alias.test": "a.test" };
const MX = { "mx.test": [[10, "mx1.test"], [20, "mx2.test"]] };
const TXT = { "txt.test": [["v=spf1", " -all"], ["second"]] };
const SRV = { "_sip._tcp.srv.test": [[10, 60, 5060, "sip1.test"], [20, 40, 5061, "sip2.test"]] };
const NS = { "ns.test": ["ns1.test", "ns2.test"] };
const SOA = { "soa.test": ["ns1.test", "hostmaster.test", 2024010101, 3600, 600, 86400, 60] };
const PTR = { "1.113.0.203.in-addr.arpa": ["a.test"], [ip6arpa]: ["a.test"] };
const EXISTS = new Set(["nodata.test"]);
const RCODE = { "servfail.test": 2, "refused.test": 5 };
const SILENT = new Set(["silent.test"]);
const SLOW = { "slow.test": 300 };

const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33 };

function name(n) {
    const parts = n.split(".").filter(Boolean).map(l => {
        const b = Buffer.from(l, "ascii");
        return Buffer.concat([Buffer.from([b.length]), b]);
    });
    return Buffer.concat([...parts, Buffer.from([0])]);
}

function u16(...v) {
    const b = Buffer.alloc(2 * v.length);
    v.forEach((x, i) => b.writeUInt16BE(x, 2 * i));
    return b;
}

function u32(...v) {
    const b = Buffer.alloc(4 * v.length);
    v.forEach((x, i) => b.writeUInt32BE(x, 4 * i));
    return b;
}

function ipv4(s) { return Buffer.from(s.split(".").map(Number)); }

function ipv6(s) {
    const [head, tail] = s.split("::");
    const h = head ? head.split(":") : [], t = tail ? tail.split(":") : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    return u16(...groups.map(g => parseInt(g, 16)));
}

function rr(owner, type, rdata, ttl = 300) {
    const hdr = Buffer.concat([u16(type, 1), u32(ttl), u16(rdata.length)]);
    return Buffer.concat([name(owner), hdr, rdata]);
}

function records(n, qtype) {
    const out = [];
    if (CNAME[n]) {
        out.push(rr(n, T.CNAME, name(CNAME[n])));
        if (qtype === T.CNAME) return out;
        n = CNAME[n];
    }
    const each = (table, f) => (table[n] || []).forEach(v => out.push(f(v)));
    switch (qtype) {
    case T.A: each(A, a => rr(n, T.A, ipv4(a))); break;
    case T.AAAA: each(AAAA, a => rr(n, T.AAAA, ipv6(a))); break;
    case T.MX: each(MX, ([p, h]) => rr(n, T.MX, Buffer.concat([u16(p), name(h)]))); break;
    case T.TXT:
        each(TXT, chunks => rr(n, T.TXT, Buffer.concat(chunks.map(c =>
            Buffer.concat([Buffer.from([c.length]), Buffer.from(c)])))));
        break;
    case T.SRV:
        each(SRV, ([p, w, port, t]) => rr(n, T.SRV, Buffer.concat([u16(p, w, port), name(t)])));
        break;
    case T.NS: each(NS, h => rr(n, T.NS, name(h))); break;
    case T.PTR: each(PTR, h => rr(n, T.PTR, name(h))); break;
    case T.SOA:
        if (SOA[n]) {
            const [m, r, ...nums] = SOA[n];
            out.push(rr(n, T.SOA, Buffer.concat([name(m), name(r), u32(...nums)])));
        }
        break;
    }
    return out;
}

function known(n) {
    return [A, AAAA, CNAME, MX, TXT, SRV, NS, SOA, PTR].some(t => t[n]) || EXISTS.has(n);
}

// Returns [reply, delay] or null for no answer at all.
function answer(msg) {
    if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
    let pos = 12;
    const labels = [];
    while (msg[pos]) {
        labels.push(msg.toString("ascii", pos + 1, pos + 1 + msg[pos]));
        pos += 1 + msg[pos];
    }
    pos += 1;
    const qtype = msg.readUInt16BE(pos);
    const question = msg.subarray(12, pos + 4);
    const n = labels.join(".").toLowerCase();
    if (SILENT.has(n)) return null;
    let rcode = RCODE[n] || 0;
    let answers = [];
    if (rcode === 0) {
        if (known(n)) answers = records(n, qtype);
        else rcode = 3;
    }
    const rd = msg.readUInt16BE(2) & 0x0100;
    const header = u16(msg.readUInt16BE(0), 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1,
        answers.length, 0, 0);
    return [Buffer.concat([header, question, ...answers]), SLOW[n] || 0];
}

const sock = dgram.createSocket("udp4");
sock.on("message", (msg, peer) => {
    let r;
    try { r = answer(msg); } catch (e) { return; } // a malformed query gets no answer
    if (!r) return;
    const send = () => sock.send(r[0], peer.port, peer.address);
    if (r[1]) setTimeout(send, r[1]); else send();
});
sock.bind(0, "127.0.0.1", () => {
    process.stdout.write(`${sock.address().port} ${process.pid}\n`);
    const parent = process.ppid, started = Date.now();
    setInterval(() => {
        if (process.ppid !== parent || Date.now() - started > 600000) process.exit(0);
    }, 200);
});

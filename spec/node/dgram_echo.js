// A UDP echo server for spec/dgram_spec.lua, run by node. Usage:
//   node dgram_echo.js [udp4|udp6]
// Binds a random port on 127.0.0.1 (or ::1), prints "<port> <pid>" on its
// first line, then answers every datagram with the same bytes, to the
// sender. A datagram "blast <n> <port>" is answered instead with n
// datagrams "node <i>" (i = 1..n) sent to that port on the same address,
// so luvd also receives from a socket that it did not write to first.
// Exits when killed, when its parent goes away (a crashed spec leaves
// nothing behind), or after ten minutes at most.
"use strict";
const dgram = require("dgram");

const type = process.argv[2] === "udp6" ? "udp6" : "udp4";
const host = type === "udp6" ? "::1" : "127.0.0.1";
const sock = dgram.createSocket(type);

sock.on("message", (msg, peer) => {
    const m = /^blast (\d+) (\d+)$/.exec(msg.toString("latin1"));
    if (m) {
        const n = Number(m[1]), port = Number(m[2]);
        for (let i = 1; i <= n; i++) sock.send(`node ${i}`, port, host);
        return;
    }
    sock.send(msg, peer.port, peer.address);
});
sock.on("error", (err) => {
    process.stderr.write(`dgram_echo: ${err.message}\n`);
});
sock.bind(0, host, () => {
    process.stdout.write(`${sock.address().port} ${process.pid}\n`);
    const parent = process.ppid, started = Date.now();
    setInterval(() => {
        if (process.ppid !== parent || Date.now() - started > 600000) process.exit(0);
    }, 200).unref();
});

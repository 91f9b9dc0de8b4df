// Node's dgram errors, for spec/dgram_spec.lua to compare luvd's with.
// Usage: node dgram_errors.js <busy port on 127.0.0.1> <busy port on ::1>
// Prints one JSON object per line, in this order:
//   bind4     binding 127.0.0.1:<port4> again (EADDRINUSE)
//   bind6     binding ::1:<port6> again (EADDRINUSE)
//   big4      sending 70000 bytes to 127.0.0.1:<port4> (EMSGSIZE)
//   over4     sending 65508 bytes to 127.0.0.1:<port4> (EMSGSIZE)
//   big6      sending 65528 bytes to ::1:<port6> (EMSGSIZE)
//   badport   send to port 70000 (thrown synchronously)
//   closed    send after close (thrown synchronously)
// Each has name, code, errno, syscall, address, port and message.
"use strict";
const dgram = require("dgram");

const port4 = Number(process.argv[2]), port6 = Number(process.argv[3]);
const out = {};
const record = (name, e) => {
    out[name] = { name, code: e.code, errno: e.errno, syscall: e.syscall,
                  address: e.address, port: e.port, message: e.message };
};
const order = ["bind4", "bind6", "big4", "over4", "big6", "badport", "closed"];
let pending = 5;
const done = () => {
    if (--pending > 0) return;
    for (const name of order) process.stdout.write(JSON.stringify(out[name] || { name }) + "\n");
    process.exit(0);
};

const b4 = dgram.createSocket("udp4");
b4.on("error", (e) => { record("bind4", e); b4.close(); done(); });
b4.bind(port4, "127.0.0.1");

const b6 = dgram.createSocket("udp6");
b6.on("error", (e) => { record("bind6", e); b6.close(); done(); });
b6.bind(port6, "::1");

const s4 = dgram.createSocket("udp4");
s4.send(Buffer.alloc(70000), port4, "127.0.0.1", (e) => { record("big4", e); done(); });
s4.send(Buffer.alloc(65508), port4, "127.0.0.1", (e) => { record("over4", e); s4.close(); done(); });
const s6 = dgram.createSocket("udp6");
s6.send(Buffer.alloc(65528), port6, "::1", (e) => { record("big6", e); s6.close(); done(); });

const t = dgram.createSocket("udp4");
try { t.send("x", 70000, "127.0.0.1"); } catch (e) { record("badport", e); }
t.close();
try { t.send("x", port4, "127.0.0.1"); } catch (e) { record("closed", e); }

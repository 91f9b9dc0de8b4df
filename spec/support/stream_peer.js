// The far ends of the native socket pipe specs, in another process so that
// every Lua call the specs count is luvd's own.
//
//   node stream_peer.js sink <tcp|tls> <out> [key cert] [slowMs] [resetAt] [gunzip]
//       listens on 127.0.0.1:0, writes the port into <out>.port, reads one
//       connection and writes "<bytes> <sha256>" into <out> when it ends
//       or closes. slowMs > 0: pauses that long after each MiB (a slow
//       reader). resetAt > 0: resets the connection once that many bytes
//       came in. gunzip: the bytes and hash are of the gunzipped stream.
//   node stream_peer.js send <tcp|tls|unix> <port|path> <file|gen:MB> [ca] [resetAt]
//       connects, sends the file (or MB MiB made here), ends, and waits for
//       the close. resetAt > 0: resets the connection after sending that
//       many bytes instead.
'use strict';
const fs = require('fs');
const net = require('net');
const tls = require('tls');
const crypto = require('crypto');

const [mode, kind] = process.argv.slice(2, 4);
const MB = 1024 * 1024;

function sink(out, key, cert, slowMs, resetAt, gunzip) {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    let done = false;
    const finish = () => {
        if (done) return;
        done = true;
        fs.writeFileSync(out, `${bytes} ${hash.digest('hex')}\n`);
        server.close();
    };
    const onConn = (sock) => {
        let next = MB;
        let s = sock;
        if (gunzip) {
            s = sock.pipe(require('zlib').createGunzip());
            s.on('error', () => sock.destroy());
        }
        s.on('data', (d) => {
            bytes += d.length;
            hash.update(d);
            if (resetAt > 0 && bytes >= resetAt) {
                const raw = sock._parent instanceof net.Socket ? sock._parent : sock;
                try { raw.resetAndDestroy(); } catch (e) { sock.destroy(); }
                return finish();
            }
            if (slowMs > 0 && bytes >= next) {
                next += MB;
                sock.pause();
                setTimeout(() => sock.resume(), slowMs);
            }
        });
        s.on('end', finish);
        sock.on('close', () => setTimeout(finish, gunzip ? 200 : 0));
        sock.on('error', () => {});
    };
    const server = kind === 'tls'
        ? tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, onConn)
        : net.createServer(onConn);
    server.listen(0, '127.0.0.1', () => {
        fs.writeFileSync(out + '.port.tmp', String(server.address().port));
        fs.renameSync(out + '.port.tmp', out + '.port');
    });
}

function send(port, what, ca, resetAt) {
    const raw = net.connect(kind === 'unix' ? { path: port } : { host: '127.0.0.1', port });
    raw.on('error', () => {});
    const s = kind === 'tls'
        ? tls.connect({ socket: raw, ca: fs.readFileSync(ca), servername: 'localhost' })
        : raw;
    s.on('error', () => {});
    s.on('data', () => {});
    const ready = kind === 'tls' ? 'secureConnect' : 'connect';
    s.once(ready, () => {
        let src;
        if (what.startsWith('gen:')) {
            let left = Number(what.slice(4)) * MB;
            const block = crypto.randomBytes(MB);
            const { Readable } = require('stream');
            src = new Readable({
                read() {
                    if (left <= 0) return this.push(null);
                    left -= MB;
                    this.push(block);
                },
            });
        } else {
            src = fs.createReadStream(what);
        }
        if (resetAt > 0) {
            // as much as resetAt, flushed to the kernel, then an RST
            let sent = 0;
            src.on('data', (d) => {
                if (sent >= resetAt) return;
                sent += d.length;
                const more = s.write(d);
                if (sent >= resetAt) {
                    src.destroy();
                    // late enough that the reader waits in a read: libuv reports a hang-up
                    // after a short read as the end, not as the reset
                    const reset = () => setTimeout(() => raw.resetAndDestroy(), 1000);
                    if (more) reset(); else s.once('drain', reset);
                } else if (!more) {
                    src.pause();
                    s.once('drain', () => src.resume());
                }
            });
        } else {
            src.pipe(s);
        }
    });
}

if (mode === 'sink') {
    const [out, key, cert, slow, reset, gz] = process.argv.slice(4);
    sink(out, key, cert, Number(slow || 0), Number(reset || 0), gz === 'gunzip');
} else if (mode === 'send') {
    const [port, what, ca, reset] = process.argv.slice(4);
    send(kind === 'unix' ? port : Number(port), what, ca, Number(reset || 0));
} else {
    console.error('usage: stream_peer.js sink|send ...');
    process.exit(2);
}

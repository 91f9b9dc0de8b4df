// Node 20's answers to the HTTP conformance cases of
// spec/support/http_cases.lua: the same bytes, sent on raw sockets to a
// Node http server with the same options and the same handler as
// spec/http_conformance_spec.lua's. The case table is read through luvd,
// which prints it as JSON (every string hex-encoded).
//
//   node spec/e2e/http_conformance_node.js [path/to/luvd]          a table
//   node spec/e2e/http_conformance_node.js [path/to/luvd] --json   name -> outcome
//
// Each line of the table: Node's outcome, the `node` column of the case
// ("a | b" where Node answers either), and "DIFF" where they disagree.
// Exit code 0 when none disagree.
'use strict';
const http = require('http');
const net = require('net');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..', '..');
const args = process.argv.slice(2);
const asJson = args.includes('--json');
const luvd = args.find((a) => !a.startsWith('--')) || path.join(root, 'build', 'luvd');

const DUMP = `
package.path = ${JSON.stringify(root + '/?.lua;')} .. package.path
local t = require "spec.support.http_cases"
local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local out = {}
for i, c in ipairs(t.cases) do
    local req = type(c.req) == "string" and { c.req } or c.req
    local parts = {}
    for j, p in ipairs(req) do
        parts[j] = type(p) == "number" and tostring(p) or ('"' .. hex(p) .. '"')
    end
    out[i] = ('{"name":"%s","node":"%s","closeAfter":%d,"halfClose":%s,"slow":%s,"req":[%s]}')
        :format(hex(c.name), hex(tostring(c.node)), c.close_after or 0,
        tostring(c.half_close == true), tostring(c.slow == true), table.concat(parts, ","))
end
local function opts(o)
    return ('{"maxHeaderSize":%d,"maxBodySize":%d,"headersTimeout":%d,"requestTimeout":%d,'
        .. '"keepAliveTimeout":%d}'):format(o.maxHeaderSize, o.maxBodySize, o.headersTimeout,
        o.requestTimeout, o.keepAliveTimeout)
end
io.write(('{"options":%s,"slowOptions":%s,"cases":[%s]}'):format(opts(t.server_options),
    opts(t.slow_server_options), table.concat(out, ",")))
`;

const unhex = (h) => Buffer.from(h, 'hex');
const table = JSON.parse(execFileSync(luvd, ['-e', DUMP], {
  maxBuffer: 1 << 26,
  stdio: ['ignore', 'pipe', 'inherit'],
}).toString());
const cases = table.cases.map((c) => ({
  name: unhex(c.name).toString('latin1'),
  node: unhex(c.node).toString('latin1'),
  closeAfter: c.closeAfter,
  halfClose: c.halfClose,
  slow: c.slow,
  req: c.req.map((p) => (typeof p === 'number' ? p : unhex(p))),
}));

// The status codes of the responses in buf, in order ("junk" after them
// when the rest is not a response), and how many of them are whole.
// spec/support/http_raw.lua's parse() is the same reader in Lua.
function statuses(buf) {
  const s = buf.toString('latin1');
  const out = [];
  let whole = 0;
  let pos = 0;
  while (pos < s.length) {
    const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(s.slice(pos));
    const end = s.indexOf('\r\n\r\n', pos);
    if (!m || end < 0) {
      if (!m || !/^HTTP\/1\.[01] \d{3}/.test(s.slice(pos))) out.push('junk');
      break;
    }
    const status = Number(m[1]);
    out.push(String(status));
    const head = s.slice(pos, end).toLowerCase();
    pos = end + 4;
    if (status < 200 || status === 204 || status === 304) { whole++; continue; }
    const cl = /\r\ncontent-length: *(\d+)/.exec(head);
    if (/\r\ntransfer-encoding: *chunked/.test(head)) {
      for (;;) {
        const eol = s.indexOf('\r\n', pos);
        if (eol < 0) { pos = s.length + 1; break; }
        const n = parseInt(s.slice(pos, eol), 16);
        if (Number.isNaN(n)) { out.push('junk'); pos = s.length + 1; break; }
        pos = eol + 2 + n + 2;
        if (n === 0) { pos += 0; break; }
      }
    } else if (cl) {
      pos += Number(cl[1]);
    } else {
      pos = s.length + 1;
    }
    if (pos <= s.length) whole++;
  }
  return { list: out, whole };
}

const calls = new Map(); // client port -> ["METHOD url", "METHOD url n", ...]
const handler = (req, res) => {
  const log = calls.get(req.socket.remotePort) || [];
  calls.set(req.socket.remotePort, log);
  log.push(`call ${req.method} ${req.url}`);
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    log.push(`${req.method} ${req.url} ${n}`);
    res.end('ok');
  });
};
const createServer = (opts) => http.createServer({
  maxHeaderSize: opts.maxHeaderSize,
  headersTimeout: opts.headersTimeout,
  requestTimeout: opts.requestTimeout,
  keepAliveTimeout: opts.keepAliveTimeout,
  connectionsCheckingInterval: 50,
}, handler);
const server = createServer(table.options);
const slowServer = createServer(table.slowOptions);

function run(port, c) {
  return new Promise((resolve) => {
    const chunks = [];
    let closed = false;
    const sock = net.connect(port, '127.0.0.1');
    let localPort;
    let timer = setTimeout(() => { timer = null; sock.destroy(); }, 2500);
    sock.on('data', (d) => {
      chunks.push(d);
      if (c.closeAfter && statuses(Buffer.concat(chunks)).whole >= c.closeAfter) {
        closed = true;
        sock.destroy();
      }
    });
    sock.on('error', () => {});
    sock.on('end', () => { closed = true; });
    sock.on('close', () => {
      if (timer) { clearTimeout(timer); closed = true; }
      const st = statuses(Buffer.concat(chunks)).list;
      let out = st.length ? st.join(' ') : 'close';
      if (!closed) out += ' open';
      resolve({ out, handled: calls.get(localPort) || [] });
    });
    sock.on('connect', async () => {
      localPort = sock.localPort;
      sock.setNoDelay(true);
      for (const p of c.req) {
        if (typeof p === 'number') {
          await new Promise((r) => setTimeout(r, p));
        } else if (!sock.destroyed) {
          sock.write(p);
        }
      }
      if (c.halfClose && !sock.destroyed) sock.end();
    });
  });
}

const listen = (s) => new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
Promise.all([listen(server), listen(slowServer)]).then(async () => {
  const ports = [server.address().port, slowServer.address().port];
  // the big cases go last, on their own: Node takes a while over hundreds
  // of pipelined requests, and a stalled loop would time the others out
  const big = (c) => c.req.reduce((n, p) => n + (typeof p === 'number' ? 0 : p.length), 0) > 50000;
  const runAll = (pick) => Promise.all(cases.map((c) => (pick(c) ? run(ports[c.slow ? 1 : 0], c)
    : null)));
  const small = await runAll((c) => !big(c));
  const large = await runAll(big);
  const results = small.map((r, i) => r || large[i]);
  server.close();
  slowServer.close();
  let diffs = 0;
  const json = {};
  cases.forEach((c, i) => {
    const r = results[i];
    json[c.name] = r.out;
    const diff = !c.node.split(' | ').includes(r.out);
    if (diff) diffs++;
    if (!asJson) {
      console.log(`${diff ? 'DIFF' : '    '} node=${r.out.padEnd(8)} table=${c.node.padEnd(8)} `
        + `${c.name}  [${r.handled.join('; ')}]`);
    }
  });
  if (asJson) console.log(JSON.stringify(json));
  else console.log(`${cases.length} cases, ${diffs} differ from the table's node column`);
  process.exit(diffs ? 1 : 0);
});

// The seed's CSV-to-JSON-lines Transform: N rows of CSV, generated in
// memory as 64 KB chunks before the clock starts, flow from a Readable
// through a Transform that splits lines (keeping a partial line across
// chunks), parses the fields and writes one JSON object per line (a tiny
// encoder for flat objects of strings and numbers), into a Writable that
// counts bytes. ops = rows/s; check = bytes out. Same work as
// csv_transform.lua.
'use strict';
const { Readable, Transform, Writable, pipeline } = require('stream');
const N = Number(process.argv[2]) || 1000000;
const now = process.hrtime.bigint;

const CITIES = ['Lisbon', 'Oslo', 'Quito', 'Hanoi', 'Dakar', 'Perth', 'Lima', 'Turku'];

// Chunks of 64 KB, lines cut anywhere (as a file read gives them), made
// as the rows are, so that only the chunks stay in memory.
function makeChunks(n) {
  const chunks = [];
  let acc = 'id,name,city,age,score,note\n';
  for (let i = 1; i <= n; i++) {
    const note = i % 7 === 0 ? 'said "hi"' : 'ok';
    acc += `${i},user${i},${CITIES[i % 8]},${18 + (i % 60)},${(i % 1000) / 4},${note}\n`;
    if (acc.length >= 65536) {
      chunks.push(acc.slice(0, 65536));
      acc = acc.slice(65536);
    }
  }
  if (acc.length > 0) chunks.push(acc);
  return chunks;
}

function jsonString(s) {
  if (!/["\\\x00-\x1f]/.test(s)) return '"' + s + '"';
  return JSON.stringify(s);
}

class CsvToJson extends Transform {
  constructor() {
    super();
    this.rest = '';
    this.header = null;
    this.rows = 0;
  }

  _transform(chunk, enc, cb) {
    const data = this.rest + chunk.toString('latin1');
    let pos = 0;
    let out = '';
    let nl;
    while ((nl = data.indexOf('\n', pos)) !== -1) {
      const line = data.slice(pos, nl);
      pos = nl + 1;
      const fields = line.split(',');
      if (this.header === null) {
        this.header = fields.map((f) => jsonString(f) + ':');
        continue;
      }
      const h = this.header;
      let obj = '{';
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i];
        const num = Number(f);
        obj += (i ? ',' : '') + h[i] + (f !== '' && !Number.isNaN(num) ? String(num) : jsonString(f));
      }
      out += obj + '}\n';
      this.rows++;
    }
    this.rest = data.slice(pos);
    cb(null, out.length ? out : undefined);
  }

  _flush(cb) {
    cb(null, this.rest.length ? this.rest : undefined);
  }
}

const chunks = makeChunks(N);
let next = 0;
const src = new Readable({
  read() {
    if (next < chunks.length) this.push(chunks[next++], 'latin1');
    else this.push(null);
  },
});
let bytes = 0;
const sink = new Writable({
  write(chunk, enc, cb) { bytes += chunk.length; cb(); },
});
const t = new CsvToJson();
const t0 = now();
pipeline(src, t, sink, (err) => {
  if (err) throw err;
  const dt = Number(now() - t0) / 1e9;
  console.log('check ' + bytes + ' ' + t.rows);
  console.log((t.rows / dt).toFixed(0));
});

-- The seed's stream examples, each run as a child process with
-- process.execPath and checked by its output.
local fs = require "luvd.fs"
local h = require "spec.helper"
local testing = require "luvd.testing"

local q = h.quote

describe("stream examples", function()
    local dir
    before_each(function() dir = assert(fs.mkdtemp("/tmp/luvd-examples-")) end)
    after_each(function() assert(fs.rmSync(dir, { recursive = true })) end)

    it("line-counter.lua counts the lines of a 50 MB file as wc -l does", function()
        testing.timeout(30000)
        local path = dir .. "/big.txt"
        -- ~52 MB of lines of varying length, with no newline at the very end
        local _, _, code = h.sh(("awk 'BEGIN { for (i = 0; i < 2000000; i++) " ..
            "printf \"%%d,%%s\\n\", i, substr(\"abcdefghijklmnopqrstuvwxyz0123456789\", 1, " ..
            "i %% 37) }' > %s && printf 'tail without newline' >> %s"):format(q(path), q(path)))
        assert.equal(0, code)
        assert.is_true(fs.statSync(path).size > 45 * 1024 * 1024)
        local wc = tonumber((h.sh("wc -l < " .. q(path))))
        local out, err
        out, err, code = h.luvd({ "examples/line-counter.lua", path })
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal(("Total lines: %d\n"):format(wc), out)
        assert.equal(2000000, wc)
    end)

    it("line-counter.lua reports a missing file", function()
        local out, err, code = h.luvd({ "examples/line-counter.lua", dir .. "/nope" })
        assert.equal("", out)
        assert.matches("Read error: ENOENT", err)
        assert.equal(1, code)
    end)

    it("csv-to-jsonl.lua converts as the seed's Node Transform does", function()
        testing.timeout(30000)
        local csv = dir .. "/users.csv"
        local rows = { "id, name ,city,note" }
        for i = 1, 40000 do
            rows[#rows + 1] = ("%d,user %d , %s,%s"):format(i, i,
                ({ "Lisbon", "Oslo", 'Qu"ito', "Hanoi\\x" })[i % 4 + 1],
                i % 9 == 0 and "" or ("n" .. i))
            if i % 1000 == 0 then rows[#rows + 1] = "   " end -- blank lines skipped
            if i % 777 == 0 then rows[#rows + 1] = tostring(i) .. ".5" end -- short rows
        end
        local text = table.concat(rows, "\n") .. "\n40001,last,Perth,no newline"
        assert(fs.writeFileSync(csv, text))
        local out, err, code = h.luvd({ "examples/csv-to-jsonl.lua", csv, dir .. "/out.jsonl" })
        assert.equal("", err)
        assert.equal(0, code)
        assert.equal("CSV to JSON conversion complete\n", out)
        local got = fs.readFileSync(dir .. "/out.jsonl")
        assert.is_true(#text > 3 * 65536) -- lines do cross chunk boundaries
        if os.execute("command -v node >/dev/null 2>&1") == 0 then
            -- the seed's JavaScript, verbatim in behaviour, on the same input
            local js = dir .. "/csv.js"
            assert(fs.writeFileSync(js, [[
const { Transform, pipeline } = require("stream");
const fs = require("fs");
class CsvToJson extends Transform {
  constructor(options) { super({ ...options, objectMode: true }); this.headers = null;
    this.buffer = ""; }
  _transform(chunk, encoding, callback) {
    this.buffer += chunk.toString();
    const lines = this.buffer.split("\n");
    this.buffer = lines.pop();
    for (const line of lines) {
      if (!line.trim()) continue;
      const values = line.split(",").map(v => v.trim());
      if (!this.headers) { this.headers = values; continue; }
      const obj = {};
      this.headers.forEach((header, i) => { obj[header] = values[i] || ""; });
      this.push(JSON.stringify(obj) + "\n");
    }
    callback();
  }
  _flush(callback) {
    if (this.buffer.trim() && this.headers) {
      const values = this.buffer.split(",").map(v => v.trim());
      const obj = {};
      this.headers.forEach((header, i) => { obj[header] = values[i] || ""; });
      this.push(JSON.stringify(obj) + "\n");
    }
    callback();
  }
}
pipeline(fs.createReadStream(process.argv[2]), new CsvToJson(),
  fs.createWriteStream(process.argv[3]), (err) => { if (err) throw err; });
]]))
            local _, nerr, ncode = h.sh(("node %s %s %s"):format(q(js), q(csv),
                q(dir .. "/node.jsonl")))
            assert.equal("", nerr)
            assert.equal(0, ncode)
            assert.equal(fs.readFileSync(dir .. "/node.jsonl"), got)
        end
        -- and a direct expectation on a few lines
        local lines = {}
        for l in got:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.equal(40000 + 51 + 1, #lines)
        assert.equal('{"id":"1","name":"user 1","city":"Oslo","note":"n1"}', lines[1])
        assert.equal('{"id":"2","name":"user 2","city":"Qu\\"ito","note":"n2"}', lines[2])
        assert.equal('{"id":"3","name":"user 3","city":"Hanoi\\\\x","note":"n3"}', lines[3])
        assert.equal('{"id":"40001","name":"last","city":"Perth","note":"no newline"}',
            lines[#lines])
    end)

    it("backpressure-writer.lua writes 1,000,000 lines, waiting for drain", function()
        testing.timeout(30000)
        local path = dir .. "/out.txt"
        local out, err, code = h.luvd({ "examples/backpressure-writer.lua", path })
        assert.equal("", err)
        assert.equal(0, code)
        local drains = tonumber(out:match("Waited for drain (%d+) times"))
        assert.matches("^All data written\n", out)
        assert.is_true(drains > 0)
        assert.equal(1000000, tonumber((h.sh("wc -l < " .. q(path)))))
        local last = h.sh("tail -n 1 " .. q(path))
        assert.equal("Line 999999: " .. string.rep("-", 100) .. "\n", last)
    end)

    it("each example runs through scripts/run", function()
        local path = dir .. "/small.txt"
        assert(fs.writeFileSync(path, "a\nb\nc\n"))
        local out, _, code = h.sh("scripts/run examples/line-counter.lua " .. q(path))
        assert.equal(0, code)
        assert.equal("Total lines: 3\n", out)
    end)
end)

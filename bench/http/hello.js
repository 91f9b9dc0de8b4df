// Keep-alive hello for bench/http/run: prints the port, serves until killed.
const http = require("http");
const s = http.createServer((req, res) => {
  res.setHeader("Content-Type", "text/plain");
  res.end("Hello World\n");
});
s.listen(0, "127.0.0.1", () => console.log(s.address().port));

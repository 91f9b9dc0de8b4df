// Node's twin of app.lua under cluster with WORKERS workers (default 2).
const cluster = require("node:cluster");
const http = require("node:http");
const n = Number(process.env.WORKERS || 2);
if (cluster.isPrimary) {
  for (let i = 0; i < n; i++) cluster.fork();
} else {
  const body = `pid=${process.pid}\n`;
  http.createServer((req, res) => {
    res.setHeader("Content-Length", body.length);
    res.end(body);
  }).listen(Number(process.env.PORT || 8080), "127.0.0.1", () => console.log(`listening ${process.pid}`));
}

// static.cjs - a tiny static file server for the widget test (run by
// tests/e2e/notify_widget.sh): the third-party site that embeds the widget,
// on its own port and so its own origin. Serves the .html files of DIR on
// 127.0.0.1 (GET and HEAD only, no directory listing), prints its URL on the
// first line, and ends on SIGTERM.
//
// Usage: node static.cjs DIR
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node static.cjs DIR");
  process.exit(2);
}
const srv = http.createServer((req, res) => {
  const name = decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/+/, "");
  if ((req.method !== "GET" && req.method !== "HEAD") || !/^[A-Za-z0-9_-]+\.html$/.test(name)) {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
    return;
  }
  fs.readFile(path.join(dir, name), (err, body) => {
    if (err) {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
});
srv.listen(0, "127.0.0.1", () => console.log(`http://127.0.0.1:${srv.address().port}/`));
process.on("SIGTERM", () => process.exit(0));

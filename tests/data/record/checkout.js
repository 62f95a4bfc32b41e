// The checkout service in Node (standard library `http` only), for `pytest-incident record`
// tests: POST /checkout charges the posted amount at api.payments.example and answers the
// charge id, or 402 when the payments API declines. Usage: node checkout.js PORT [PATH]
// (PATH: the payments API path, /v1/charges unless given: the changed service's).
"use strict";
const http = require("http");

const port = Number(process.argv[2]);
const chargePath = process.argv[3] || "/v1/charges";

function charge(amount, done) {
  const body = JSON.stringify({ amount });
  const request = http.request(
    {
      host: "api.payments.example",
      port: 80,
      path: chargePath,
      method: "POST",
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
      timeout: 10000,
    },
    (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => done(null, response.statusCode, JSON.parse(Buffer.concat(chunks))));
    },
  );
  request.on("error", (error) => done(error));
  request.end(body);
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const amount = JSON.parse(Buffer.concat(chunks)).amount;
      charge(amount, (error, status, answer) => {
        if (error) {
          res.writeHead(502, { "Content-Type": "text/plain" });
          res.end(`payments unreachable: ${error.message}`);
        } else if (status === 402) {
          res.writeHead(402, { "Content-Type": "application/json" });
          res.end('{"declined": true}');
        } else {
          res.writeHead(200, { "Content-Type": "application/json" });
          res.end(`{"charge": "${answer.id}"}`);
        }
      });
    });
  })
  .listen(port, "127.0.0.1");

// The Node peer of the benchmark: Auth0's Express middleware (express-oauth2-jwt-bearer)
// in front of http-proxy-middleware, as a team would write it. Same routes and upstream as
// scopegate's benchmark configuration.
//
//   node bench/node/server.js PORT UPSTREAM_URL ISSUER_URL AUDIENCE
import http from "node:http";
import express from "express";
import { auth, requiredScopes } from "express-oauth2-jwt-bearer";
import { createProxyMiddleware } from "http-proxy-middleware";

const [port, upstream, issuer, audience] = process.argv.slice(2);
const proxy = createProxyMiddleware({
  target: upstream,
  changeOrigin: true,
  agent: new http.Agent({ keepAlive: true, maxSockets: 1024 }),
});
const checkJwt = auth({
  issuer,
  jwksUri: new URL(".well-known/jwks.json", issuer).href,
  audience,
  tokenSigningAlg: "RS256",
});

const app = express();
app.disable("x-powered-by");
app.use("/public", proxy);
app.get("/contacts", checkJwt, requiredScopes("read:contacts"), proxy);
app.use((error, request, response, next) => {
  response.status(error.status || 500).set(error.headers || {}).end();
});
http.createServer({ keepAliveTimeout: 75_000 }, app).listen(Number(port), "127.0.0.1", () => {
  console.log("ready");
});

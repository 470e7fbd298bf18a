'use strict';
// Test plumbing, not part of any client: the service SDK (azure-iothub)
// always dials https://<HostName>:443 — its Registry, JobClient and Client
// take no port, and HostName=host:port fails (Node looks up the literal
// "host:port"). A hub under test listens on a random port, so this preload
// (`node -r ./hubport.js app.js`) sends the SDK's connections for
// $HUB_HOST to $HUB_PORT by wrapping https.request, which the SDK looks up
// at each call. The SDK itself, the connection string (HostName=$HUB_HOST)
// and the SAS tokens stay as they are against a hub on 443; the CA comes
// from NODE_EXTRA_CA_CERTS.
//
// env: HUB_HOST (e.g. localhost), HUB_PORT.
const https = require('https');

const host = process.env.HUB_HOST;
const port = Number(process.env.HUB_PORT);
if (!host || !port) {
  console.error('hubport: set HUB_HOST and HUB_PORT');
  process.exit(2);
}

const request = https.request;
https.request = function hubRequest(options, ...rest) {
  if (options && typeof options === 'object' && !(options instanceof URL) && options.host === host && !options.port) {
    options = Object.assign({}, options, { port });
  }
  return request.call(this, options, ...rest);
};

'use strict';
// A leaf device behind an edge that answers direct methods, as an
// application would with the Azure IoT device SDK: it registers the methods
// named in METHODS (comma-separated), writes READY_FILE once it listens,
// answers each call with status 200 and {method, ok:true, echo:<payload>},
// and exits 0 once every method has been called at least once.
//
// env: LEAF_CS (device connection string with GatewayHostName), EDGE_CA,
// METHODS, READY_FILE, TIMEOUT (seconds, default 60).
const fs = require('fs');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { deadline, fail } = require('./common');

deadline('responder', Number(process.env.TIMEOUT || 60));

async function main() {
  const methods = (process.env.METHODS || '').split(',').filter(Boolean);
  const client = Client.fromConnectionString(process.env.LEAF_CS, Mqtt);
  client.on('error', fail('responder: client error'));
  await client.setOptions({ ca: fs.readFileSync(process.env.EDGE_CA, 'utf8') });
  await client.open();
  const pending = new Set(methods);
  const done = new Promise((resolve) => {
    for (const name of methods) {
      client.onDeviceMethod(name, (req, res) => {
        console.log(`responder: method ${req.methodName} payload=${JSON.stringify(req.payload)}`);
        res.send(200, { method: req.methodName, ok: true, echo: req.payload }).then(() => {
          pending.delete(name);
          if (pending.size === 0) {
            resolve();
          }
        }, fail('responder: method response'));
      });
    }
  });
  fs.writeFileSync(process.env.READY_FILE, 'ready\n');
  console.log(`responder: listening for ${methods.join(',')}`);
  await done;
  await client.close();
  console.log('responder: done');
  process.exit(0);
}

main().catch(fail('responder'));

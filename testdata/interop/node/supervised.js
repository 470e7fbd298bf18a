#!/usr/bin/env node
'use strict';
// A long-running IoT Edge module, unmodified Azure IoT SDK code, that the
// edge's supervisor starts (it is the module's image): ModuleClient.fromEnvironment
// reads EdgeHubConnectionString and EdgeModuleCACertificateFile. It reports
// {"started":true}, echoes every desired "greeting" into reported
// properties, and answers each message on input in1 with "echo:<body>" on
// output out1. Exits 0 on SIGTERM.
const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
// Self-contained: the image is this one file, copied into the edge's cache.
function fail(name) {
  return (err) => {
    console.error(`${name}: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  };
}

async function main() {
  const client = await ModuleClient.fromEnvironment(Mqtt);
  client.on('error', fail('supervised: client error'));
  await client.open();
  console.log(`supervised: connected as ${process.env.IOTEDGE_DEVICEID}/${process.env.IOTEDGE_MODULEID}`);
  const twin = await client.getTwin();
  const report = (patch) => new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  });
  twin.on('properties.desired', (desired) => {
    if (desired.greeting !== undefined) {
      console.log(`supervised: desired greeting ${desired.greeting}`);
      report({ greeting: desired.greeting }).catch(fail('supervised: report'));
    }
  });
  client.on('inputMessage', (input, msg) => {
    const body = msg.getBytes().toString();
    console.log(`supervised: input ${input}: ${body}`);
    client.complete(msg, () => {});
    const out = new Message(`echo:${body}`);
    out.messageId = `echo-${msg.messageId || body}`;
    client.sendOutputEvent('out1', out).catch(fail('supervised: send'));
  });
  await report({ started: true });
  console.log('supervised: reported started');
  process.on('SIGTERM', () => {
    console.log('supervised: stopping');
    client.close().then(() => process.exit(0), () => process.exit(0));
  });
}

main().catch(fail('supervised'));

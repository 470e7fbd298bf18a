'use strict';
// A leaf device using the Azure IoT device SDK as an application would:
// Client.fromConnectionString with GatewayHostName=<edge host:port> and the
// edge's CA via setOptions. It sends telemetry, reads its twin, updates
// reported properties, then waits for one cloud-to-device message and one
// direct method call ("reboot") and exits 0.
//
// env: LEAF_CS (device connection string with GatewayHostName), EDGE_CA (CA
// certificate file), TIMEOUT (seconds, default 30).
const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { deadline, fail, props } = require('./common');

deadline('leaf', Number(process.env.TIMEOUT || 30));

async function main() {
  const client = Client.fromConnectionString(process.env.LEAF_CS, Mqtt);
  client.on('error', fail('leaf: client error'));
  await client.setOptions({ ca: fs.readFileSync(process.env.EDGE_CA, 'utf8') });
  await client.open();
  console.log('leaf: connected');

  const c2d = new Promise((resolve) => {
    client.on('message', (msg) => {
      console.log(`leaf: c2d ${msg.data.toString()} props=${props(msg)} messageId=${msg.messageId}`);
      client.complete(msg).then(resolve, fail('leaf: complete'));
    });
  });
  const method = new Promise((resolve) => {
    client.onDeviceMethod('reboot', (req, res) => {
      console.log(`leaf: method ${req.methodName} payload=${JSON.stringify(req.payload)}`);
      res.send(200, { rebooted: true, delay: req.payload && req.payload.delay }).then(resolve, fail('leaf: method response'));
    });
  });

  const m = new Message(JSON.stringify({ t: 21.5 }));
  m.messageId = 'node-leaf-1';
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  m.properties.add('temp', 'high');
  await client.sendEvent(m);
  console.log('leaf: telemetry sent');

  const twin = await client.getTwin();
  console.log(`leaf: twin reported=${JSON.stringify(twin.properties.reported)} desired=${JSON.stringify(twin.properties.desired)}`);
  await new Promise((resolve, reject) => {
    twin.properties.reported.update({ fw: 'node-1.0', sdk: { lang: 'node' } }, (err) => (err ? reject(err) : resolve()));
  });
  console.log('leaf: reported updated');

  await Promise.all([c2d, method]);
  await client.close();
  console.log('leaf: done');
  process.exit(0);
}

main().catch(fail('leaf'));

'use strict';
// An IoT Edge module as the supervisor will start it: ModuleClient.fromEnvironment
// (env EdgeHubConnectionString with GatewayHostName, EdgeModuleCACertificateFile).
// Sends one event on output out1 with property level=high, reads its module
// twin and reports a property, then exits 0.
const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { deadline, fail } = require('./common');

deadline('module a', Number(process.env.TIMEOUT || 30));

async function main() {
  const client = await ModuleClient.fromEnvironment(Mqtt);
  client.on('error', fail('module a: client error'));
  await client.open();
  console.log('module a: connected');

  const m = new Message('hello from a');
  m.messageId = 'node-a-1';
  m.properties.add('level', 'high');
  await client.sendOutputEvent('out1', m);
  console.log('module a: sent on out1');

  const twin = await client.getTwin();
  await new Promise((resolve, reject) => {
    twin.properties.reported.update({ started: true }, (err) => (err ? reject(err) : resolve()));
  });
  console.log('module a: reported updated');

  await client.close();
  process.exit(0);
}

main().catch(fail('module a'));

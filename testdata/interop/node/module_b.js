'use strict';
// An IoT Edge module that waits for one message on any input
// (ModuleClient.fromEnvironment + on('inputMessage')), prints it, completes
// it and exits 0.
const { ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { deadline, fail, props } = require('./common');

deadline('module b', Number(process.env.TIMEOUT || 30));

async function main() {
  const client = await ModuleClient.fromEnvironment(Mqtt);
  client.on('error', fail('module b: client error'));
  await client.open();
  console.log('module b: connected');
  client.on('inputMessage', (input, msg) => {
    console.log(`module b: input ${input} ${msg.data.toString()} props=${props(msg)} messageId=${msg.messageId}`);
    client.complete(msg)
      .then(() => client.close())
      .then(() => process.exit(0), fail('module b: complete'));
  });
}

main().catch(fail('module b'));

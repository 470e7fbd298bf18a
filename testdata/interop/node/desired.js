'use strict';
// A leaf device that follows its desired properties the way the Azure IoT
// SDK does: getTwin, then 'properties.desired' events (the first one is the
// full desired section, the next ones are the patches the edge sends on
// $iothub/twin/PATCH/properties/desired/). It writes READY_FILE once it
// listens and exits 0 when desired.interval equals WANT_INTERVAL.
//
// env: LEAF_CS, EDGE_CA, READY_FILE, WANT_INTERVAL, TIMEOUT.
const fs = require('fs');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { deadline, fail } = require('./common');

deadline('desired', Number(process.env.TIMEOUT || 30));

async function main() {
  const want = Number(process.env.WANT_INTERVAL);
  const client = Client.fromConnectionString(process.env.LEAF_CS, Mqtt);
  client.on('error', fail('desired: client error'));
  await client.setOptions({ ca: fs.readFileSync(process.env.EDGE_CA, 'utf8') });
  await client.open();
  const twin = await client.getTwin();
  const done = new Promise((resolve) => {
    twin.on('properties.desired', (patch) => {
      console.log(`desired: ${JSON.stringify(patch)}`);
      if (patch.interval === want) {
        resolve();
      }
    });
  });
  fs.writeFileSync(process.env.READY_FILE, 'ready\n');
  await done;
  await client.close();
  console.log('desired: done');
  process.exit(0);
}

main().catch(fail('desired'));

'use strict';
// A back end using the official Azure IoT service SDK (azure-iothub) as an
// application would, through its public API only: Registry (devices, bulk
// import, statistics, modules, twins with etags, queries, configurations),
// JobClient (twin-update and device-method jobs) and Client (a direct
// method). Each step prints one line ("service: <step> ok …"); any mismatch
// exits 1 with what was expected and what came back (status and body of a
// failed request included).
//
// It would run as is against a hub on 443. Under test the hub listens on a
// random port: run it as `node -r ./hubport.js service.js` (see hubport.js)
// with NODE_EXTRA_CA_CERTS set to the hub's CA.
//
// env: HUB_CS (owner connection string, HostName=localhost), METHOD_DEVICE
// (a leaf behind an edge that answers the methods "ping" and "reboot",
// responder.js), TIMEOUT (seconds, default 120).
const { Registry, JobClient, Client } = require('azure-iothub');
const { deadline } = require('./common');

deadline('service', Number(process.env.TIMEOUT || 120));

const cs = process.env.HUB_CS;
const methodDevice = process.env.METHOD_DEVICE;
const registry = Registry.fromConnectionString(cs);
const jobs = JobClient.fromConnectionString(cs);
const client = Client.fromConnectionString(cs);
const run = Date.now().toString(36);

let step = 'start';

function log(msg) {
  console.log(`service: ${msg}`);
}

function check(cond, what) {
  if (!cond) {
    throw new Error(`${step}: ${what}`);
  }
}

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  check(g === w, `${what}: got ${g}, want ${w}`);
}

// describe renders an SDK error with the HTTP exchange behind it.
function describe(err) {
  let s = `${err.name}: ${err.message}`;
  if (err.response) {
    const req = err.response.req;
    const line = req ? `${req.method} ${req.path}` : '';
    s += ` [HTTP ${err.response.statusCode} for ${line}; body ${JSON.stringify(err.responseBody)}]`;
  }
  return s;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// poll calls f every 500 ms until it returns a truthy value or seconds pass;
// then it fails with what the last attempt said.
async function poll(seconds, what, f) {
  const end = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) {
        return v;
      }
      last = 'not yet';
    } catch (err) {
      last = describe(err);
    }
    if (Date.now() > end) {
      throw new Error(`${step}: ${what} not within ${seconds}s (last: ${last})`);
    }
    await sleep(500);
  }
}

// expectError runs p and returns its error, failing if it succeeds.
async function expectError(p, what) {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error(`${step}: ${what} succeeded, want an error`);
}

async function deviceIds() {
  const { responseBody } = await registry.list();
  check(Array.isArray(responseBody), `list: want an array, got ${JSON.stringify(responseBody)}`);
  return responseBody.map((d) => d.deviceId);
}

// 1. Devices: create, list, bulk add and remove, statistics.
async function create() {
  step = 'create';
  for (const id of ['e1', 'e2', 'e3']) {
    const { responseBody: d } = await registry.create({ deviceId: id, status: 'enabled', capabilities: { iotEdge: true } });
    eq(d.deviceId, id, 'created deviceId');
    eq(d.capabilities && d.capabilities.iotEdge, true, `${id} capabilities.iotEdge`);
    check(d.authentication && d.authentication.symmetricKey && d.authentication.symmetricKey.primaryKey,
      `${id}: the hub made no primary key for the SDK's empty one: ${JSON.stringify(d.authentication)}`);
  }
  const { responseBody: leaf } = await registry.create({ deviceId: 'leaf1' });
  eq(leaf.deviceId, 'leaf1', 'created deviceId');
  const { responseBody: got } = await registry.get('e1');
  eq([got.deviceId, got.capabilities.iotEdge, got.status], ['e1', true, 'enabled'], 'get e1');
  log('create ok e1,e2,e3 (edge) leaf1');
  // Azure gives every device an etag (updateDevices(…, false) and
  // updateModule send it back in If-Match).
  step = 'device etag';
  check(got.etag, `get e1: no etag in ${JSON.stringify(got)}`);
  log(`device etag ok ${got.etag}`);
}

async function list() {
  step = 'list';
  const ids = await deviceIds();
  for (const id of ['e1', 'e2', 'e3', 'leaf1']) {
    check(ids.includes(id), `list has no ${id}: ${ids}`);
  }
  log(`list ok ${ids.length} devices`);
}

const bulk = ['b1', 'b2', 'b3'].map((id) => ({ deviceId: id, status: 'enabled' }));

async function bulkAdd() {
  step = 'bulk add';
  const { responseBody: added } = await registry.addDevices(bulk);
  eq(added && added.isSuccessful, true, `addDevices isSuccessful (body ${JSON.stringify(added)})`);
  const ids = await deviceIds();
  for (const b of bulk) {
    check(ids.includes(b.deviceId), `after addDevices, list has no ${b.deviceId}: ${ids}`);
  }
  log('bulk add ok b1,b2,b3');
}

async function bulkRemove() {
  step = 'bulk remove';
  const { responseBody: removed } = await registry.removeDevices(bulk, true);
  eq(removed && removed.isSuccessful, true, `removeDevices isSuccessful (body ${JSON.stringify(removed)})`);
  const ids = await deviceIds();
  for (const b of bulk) {
    check(!ids.includes(b.deviceId), `after removeDevices, list still has ${b.deviceId}: ${ids}`);
  }
  log('bulk remove ok');
}

async function statistics() {
  step = 'statistics';
  const ids = await deviceIds();
  const { responseBody: st } = await registry.getRegistryStatistics();
  eq(st.totalDeviceCount, ids.length, `totalDeviceCount (body ${JSON.stringify(st)})`);
  eq(st.enabledDeviceCount + st.disabledDeviceCount, st.totalDeviceCount, 'enabled + disabled');
  log(`statistics ok total=${st.totalDeviceCount} enabled=${st.enabledDeviceCount} disabled=${st.disabledDeviceCount}`);
}

// 2. Modules of a device.
async function modules() {
  step = 'modules';
  const { responseBody: m } = await registry.addModule({ deviceId: 'leaf1', moduleId: 'm1' });
  eq([m.deviceId, m.moduleId], ['leaf1', 'm1'], 'addModule');
  let { responseBody: list } = await registry.getModulesOnDevice('leaf1');
  check(Array.isArray(list) && list.some((x) => x.moduleId === 'm1'), `getModulesOnDevice has no m1: ${JSON.stringify(list)}`);
  const { responseBody: got } = await registry.getModule('leaf1', 'm1');
  eq([got.deviceId, got.moduleId], ['leaf1', 'm1'], 'getModule');
  await registry.removeModule('leaf1', 'm1');
  ({ responseBody: list } = await registry.getModulesOnDevice('leaf1'));
  check(!list.some((x) => x.moduleId === 'm1'), `after removeModule, m1 is still listed: ${JSON.stringify(list)}`);
  const err = await expectError(registry.getModule('leaf1', 'm1'), 'getModule after removeModule');
  eq(err.response && err.response.statusCode, 404, `getModule after removeModule (${describe(err)})`);
  log('modules ok add, list, get, remove');
}

// 3. Twins: Twin.update with its etag, a stale etag (412), '*'.
async function twins() {
  step = 'twins';
  for (const [id, env] of [['e1', 'prod'], ['e2', 'prod'], ['e3', 'dev']]) {
    const { responseBody: twin } = await registry.getTwin(id);
    eq(twin.deviceId, id, 'twin deviceId');
    check(twin.etag && twin.etag !== '*', `getTwin ${id}: no etag in ${JSON.stringify(twin)}`);
    const before = { etag: twin.etag, version: twin.version };
    const { result } = await twin.update({ tags: { env } });
    eq(result.tags.env, env, `${id} tags.env after Twin.update`);
    check(result.etag && result.etag !== before.etag, `${id}: Twin.update kept etag ${before.etag} (now ${result.etag})`);
    await twin.get();
    eq(twin.tags.env, env, `${id} tags.env after Twin.get`);
    const { responseBody: again } = await registry.getTwin(id);
    check(again.version > before.version, `${id}: version ${again.version} not above ${before.version}`);
  }
  log('twins ok tags.env e1=prod e2=prod e3=dev');

  step = 'etag';
  const { responseBody: t1 } = await registry.getTwin('e1');
  const stale = t1.etag;
  await registry.updateTwin('e1', { tags: { rev: 1 } }, stale);
  const err = await expectError(registry.updateTwin('e1', { tags: { rev: 2 } }, stale), 'updateTwin with a stale etag');
  eq(err.response && err.response.statusCode, 412, `updateTwin with a stale etag (${describe(err)})`);
  eq(err.name, 'InvalidEtagError', 'the SDK error for 412');
  const { responseBody: t2 } = await registry.updateTwin('e1', { tags: { rev: 3 } }, '*');
  eq(t2.tags.rev, 3, "tags.rev after updateTwin with '*'");
  const { responseBody: t3 } = await registry.getTwin('e1');
  check(t3.etag !== stale, `etag unchanged after two updates: ${stale}`);
  check(t3.version > t1.version, `version ${t3.version} not above ${t1.version}`);
  eq([t3.tags.env, t3.tags.rev], ['prod', 3], 'e1 tags after the etag checks');
  log(`etag ok stale=412 star=200 version ${t1.version}->${t3.version}`);
}

// 4. Queries: twins by tag, paged one at a time; COUNT; GROUP BY.
async function query() {
  step = 'query';
  const q = registry.createQuery("SELECT * FROM devices WHERE tags.env = 'prod'", 1);
  const found = [];
  let pages = 0;
  while (q.hasMoreResults) {
    check(++pages <= 10, `more than 10 pages for 2 twins (continuation ${q.continuationToken})`);
    const { result } = await q.nextAsTwin();
    check(result.length <= 1, `page ${pages} has ${result.length} twins for pageSize 1`);
    for (const t of result) {
      eq(t.tags.env, 'prod', `${t.deviceId} tags.env`);
      found.push(t.deviceId);
    }
  }
  eq(found.sort(), ['e1', 'e2'], "SELECT * FROM devices WHERE tags.env = 'prod'");
  log(`query ok prod=${found.join(',')} in ${pages} pages`);
}

async function queryCount() {
  step = 'query count';
  const total = (await deviceIds()).length;
  const { result: count } = await registry.createQuery('SELECT COUNT() AS n FROM devices').next();
  eq(count, [{ n: total }], 'SELECT COUNT() AS n FROM devices');
  log(`query count ok n=${total}`);
}

async function queryGroupBy() {
  step = 'query group by';
  const { result: groups } = await registry.createQuery('SELECT tags.env, COUNT() AS n FROM devices GROUP BY tags.env').next();
  check(Array.isArray(groups), `GROUP BY: want an array, got ${JSON.stringify(groups)}`);
  const byEnv = {};
  for (const g of groups) {
    const env = g['tags.env'] !== undefined ? g['tags.env'] : g.env;
    byEnv[env] = g.n;
  }
  eq([byEnv.prod, byEnv.dev], [2, 1], `GROUP BY tags.env (rows ${JSON.stringify(groups)})`);
  log(`query group by ok prod=2 dev=1 (${groups.length} groups)`);
}

// 5. A deployment (configuration) targeting tags.env='prod'.
const edgeAgentDesired = {
  schemaVersion: '1.1',
  runtime: {
    type: 'docker',
    settings: { minDockerVersion: 'v1.25', loggingOptions: '', registryCredentials: {} },
  },
  systemModules: {
    edgeAgent: { type: 'docker', settings: { image: 'mcr.microsoft.com/azureiotedge-agent:1.4', createOptions: '{}' } },
    edgeHub: {
      type: 'docker',
      status: 'running',
      restartPolicy: 'always',
      settings: { image: 'mcr.microsoft.com/azureiotedge-hub:1.4', createOptions: '{}' },
    },
  },
  modules: {},
};
const edgeHubDesired = { schemaVersion: '1.1', routes: {}, storeAndForwardConfiguration: { timeToLiveSecs: 7200 } };

// without drops the twin's own keys ($version, $metadata) from desired.
function without(desired) {
  const out = {};
  for (const k of Object.keys(desired || {})) {
    if (!k.startsWith('$')) {
      out[k] = desired[k];
    }
  }
  return out;
}

function sameJSON(a, b) {
  const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.keys(v).sort().reduce((o, k) => { o[k] = canon(v[k]); return o; }, {})
    : v);
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

async function agentDesired(deviceId) {
  try {
    const { responseBody: t } = await registry.getModuleTwin(deviceId, '$edgeAgent');
    return without(t.properties && t.properties.desired);
  } catch (err) {
    if (err.response && err.response.statusCode === 404) {
      return null;
    }
    throw err;
  }
}

async function configurations() {
  step = 'configuration';
  const id = 'prod-deploy';
  const config = {
    id,
    targetCondition: "tags.env='prod'",
    priority: 10,
    labels: { run },
    content: {
      modulesContent: {
        $edgeAgent: { 'properties.desired': edgeAgentDesired },
        $edgeHub: { 'properties.desired': edgeHubDesired },
      },
    },
    metrics: {
      queries: {
        reported: "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND properties.reported.lastDesiredStatus.code = 200",
      },
    },
  };
  const { responseBody: added } = await registry.addConfiguration(config);
  eq(added && added.id, id, `addConfiguration id (body ${JSON.stringify(added)})`);
  const { responseBody: got } = await registry.getConfiguration(id);
  eq([got.id, got.targetCondition, got.priority], [id, config.targetCondition, 10], 'getConfiguration');
  check(got.etag, `getConfiguration: no etag in ${JSON.stringify(got)}`);
  check(sameJSON(got.content.modulesContent.$edgeAgent['properties.desired'], edgeAgentDesired),
    `getConfiguration content differs: ${JSON.stringify(got.content)}`);
  const { responseBody: all } = await registry.getConfigurations();
  check(Array.isArray(all) && all.some((c) => c.id === id), `getConfigurations has no ${id}: ${JSON.stringify(all)}`);
  log(`configuration ok ${id} added, got, listed`);

  step = 'deployment';
  for (const dev of ['e1', 'e2']) {
    await poll(20, `${dev}'s $edgeAgent desired = the deployment's`, async () => sameJSON(await agentDesired(dev), edgeAgentDesired));
  }
  const e3 = await agentDesired('e3');
  check(!sameJSON(e3, edgeAgentDesired), `e3 (tags.env=dev) got the prod deployment: ${JSON.stringify(e3)}`);
  log('deployment ok e1,e2 have it, e3 does not');

  step = 'configuration remove';
  await registry.removeConfiguration(id);
  const err = await expectError(registry.getConfiguration(id), 'getConfiguration after removeConfiguration');
  eq(err.response && err.response.statusCode, 404, `getConfiguration after removeConfiguration (${describe(err)})`);
  log('configuration remove ok');
}

// waitJob polls getJob until the job is completed (or fails).
async function waitJob(jobId) {
  let last;
  await poll(30, `job ${jobId} completed`, async () => {
    const { jobStatus } = await jobs.getJob(jobId);
    last = jobStatus;
    check(!['failed', 'cancelled'].includes(jobStatus.status), `job ${jobId} ${jobStatus.status}: ${JSON.stringify(jobStatus)}`);
    return jobStatus.status === 'completed';
  }).catch((err) => {
    throw new Error(`${err.message}; last getJob: ${JSON.stringify(last)}`);
  });
  return last;
}

// 6. Jobs: a twin update and a device method over queries.
async function jobsStep() {
  step = 'job twin';
  const twinJob = `tags-${run}`;
  const { jobStatus: scheduled } = await jobs.scheduleTwinUpdate(twinJob, "deviceId IN ['e1','e2']", { etag: '*', tags: { job: 'done' } });
  eq(scheduled.jobId, twinJob, `scheduleTwinUpdate jobId (body ${JSON.stringify(scheduled)})`);
  eq(scheduled.type, 'scheduleUpdateTwin', 'scheduleTwinUpdate type');
  const twinDone = await waitJob(twinJob);
  const ts = twinDone.deviceJobStatistics || {};
  eq([ts.deviceCount, ts.succeededCount, ts.failedCount], [2, 2, 0], `twin job statistics (${JSON.stringify(twinDone)})`);
  for (const id of ['e1', 'e2', 'e3']) {
    const { responseBody: t } = await registry.getTwin(id);
    eq(t.tags.job, id === 'e3' ? undefined : 'done', `${id} tags.job after the job`);
  }
  log(`job twin ok ${twinJob} completed on e1,e2`);

  step = 'job method';
  const methodJob = `ping-${run}`;
  const { jobStatus: mscheduled } = await jobs.scheduleDeviceMethod(methodJob, `deviceId IN ['${methodDevice}']`,
    { methodName: 'ping', payload: { n: 1 }, responseTimeoutInSeconds: 10 });
  eq([mscheduled.jobId, mscheduled.type], [methodJob, 'scheduleDeviceMethod'], `scheduleDeviceMethod (body ${JSON.stringify(mscheduled)})`);
  const methodDone = await waitJob(methodJob);
  const ms = methodDone.deviceJobStatistics || {};
  eq([ms.deviceCount, ms.succeededCount, ms.failedCount], [1, 1, 0], `method job statistics (${JSON.stringify(methodDone)})`);
  log(`job method ok ${methodJob} completed on ${methodDevice}`);
}

// 7. A direct method on the leaf behind the edge.
async function method() {
  step = 'method';
  const { result } = await client.invokeDeviceMethod(methodDevice,
    { methodName: 'reboot', payload: { delay: 5 }, responseTimeoutInSeconds: 10 });
  eq(result.status, 200, `invokeDeviceMethod status (result ${JSON.stringify(result)})`);
  eq(result.payload, { method: 'reboot', ok: true, echo: { delay: 5 } }, 'invokeDeviceMethod payload');
  log(`method ok reboot on ${methodDevice} status=200`);
  // The device answering is connected to its edge: the hub shows it, as
  // its edge reported it, on the device and on its twin.
  const { responseBody: dev } = await registry.get(methodDevice);
  eq(dev.connectionState, 'Connected', 'registry.get connectionState');
  check(dev.lastActivityTime > '2000', `lastActivityTime ${dev.lastActivityTime}`);
  const { responseBody: tw } = await registry.getTwin(methodDevice);
  eq(tw.connectionState, 'Connected', 'getTwin connectionState');
  log(`presence ok ${methodDevice} ${dev.connectionState} since ${dev.connectionStateUpdatedTime}`);
}

// SERVICE_KEEP_GOING=1 (diagnostics): a failed step is reported and the
// next one runs anyway; the exit status is still 1.
async function main() {
  const steps = [create, list, bulkAdd, bulkRemove, statistics, modules, twins, query, queryCount, queryGroupBy,
    configurations, jobsStep, method];
  const keepGoing = process.env.SERVICE_KEEP_GOING === '1';
  let failed = 0;
  for (const f of steps) {
    try {
      await f();
    } catch (err) {
      if (!keepGoing) {
        throw err;
      }
      failed++;
      console.log(`service: FAIL at ${step}: ${err.response ? describe(err) : err.message}`);
    }
  }
  if (failed > 0) {
    console.log(`service: ${failed} of ${steps.length} steps failed`);
    process.exit(1);
  }
  log('done');
  process.exit(0);
}

main().catch((err) => {
  console.error(`service: FAIL at ${step}: ${err.response ? describe(err) : (err.stack || err)}`);
  process.exit(1);
});

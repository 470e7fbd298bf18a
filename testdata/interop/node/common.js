'use strict';
// Helpers shared by the interop clients: a hard deadline so no client can
// hang a scenario, and one-line logs the scenarios match on.

function deadline(name, seconds) {
  const t = setTimeout(() => {
    console.error(`${name}: timed out after ${seconds}s`);
    process.exit(3);
  }, seconds * 1000);
  t.unref();
}

function fail(name) {
  return (err) => {
    console.error(`${name}: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  };
}

// props renders a Message's application properties as k=v,k=v.
function props(msg) {
  const out = [];
  for (let i = 0; i < msg.properties.count(); i++) {
    const p = msg.properties.getItem(i);
    out.push(`${p.key}=${p.value}`);
  }
  return out.join(',');
}

module.exports = { deadline, fail, props };

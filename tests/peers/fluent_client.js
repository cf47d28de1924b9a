// @fluent-org/logger (npm), the Node client of the Fluent forward protocol.
// Usage: node fluent_client.js HOST PORT OPTIONS_JSON
//   OPTIONS_JSON: {"mode": "Message"|"Forward"|"PackedForward"|"CompressedPackedForward",
//                  "count": N, "label": L, "sharedKey": K, "ack": true, "ca": F, "cert": F, "key": F}
// Prints "sent" once every emit resolved (with "ack": once acknowledged),
// "refused" if the server refused the handshake.
const fs = require('fs');
const { FluentClient, EventTime } = require('@fluent-org/logger');

const [host, port, json] = process.argv.slice(2);
const o = JSON.parse(json || '{}');
const socket = { host, port: Number(port), timeout: 30000 };
if (o.ca) {
  socket.tls = {
    ca: fs.readFileSync(o.ca),
    cert: o.cert && fs.readFileSync(o.cert),
    key: o.key && fs.readFileSync(o.key),
    servername: '127.0.0.1',
  };
}
const client = new FluentClient('js', {
  eventMode: o.mode || 'PackedForward',
  socket,
  security: o.sharedKey ? { clientHostname: 'js-client', sharedKey: o.sharedKey } : undefined,
  ack: o.ack ? { ackTimeout: 60000 } : undefined,
  milliseconds: true,
});
client.socketOn('error', (e) => {
  if (String(e && e.name).includes('Auth') || String(e).includes('uthentication')) {
    console.log('refused');
    process.exit(0);
  }
  console.error('socket error', e);
});
(async () => {
  const emits = [];
  for (let i = 0; i < (o.count || 5); i++) {
    emits.push(client.emit(o.label || 'web', { n: i, mode: o.mode || 'PackedForward', nested: { ok: true } }, EventTime.now()));
  }
  await Promise.all(emits);
  console.log('sent');
  await client.disconnect();
  process.exit(0);
})().catch((e) => {
  if (String(e && e.name).includes('Auth') || String(e).includes('uthentication')) {
    console.log('refused');
    process.exit(0);
  }
  console.error('failed', e);
  process.exit(1);
});

// hot-shots (npm), the DogStatsD client Node applications use: tags
// (global and per metric), a gauge change, histogram and distribution,
// buffered into multi-metric packets over UDP.
// Usage: node statsd_client.js HOST PORT udp|tcp
const StatsD = require('hot-shots');

const [host, port, protocol] = process.argv.slice(2);
const c = new StatsD({
  host,
  port: Number(port),
  protocol,
  prefix: 'js.',
  globalTags: { env: 'test' },
  maxBufferSize: protocol === 'udp' ? 1000 : 0,
  bufferFlushInterval: 50,
  errorHandler: (e) => {
    console.error(e);
    process.exit(1);
  },
});
c.increment('hits', 2, ['route:/a']);
c.gauge('temp', 20);
c.gaugeDelta('temp', -3);
c.histogram('size', 512, { shard: '1' });
c.distribution('dur', 3.5);
c.timing('lat', 42);
c.set('users', 'bob');
c.close((err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log('sent');
});

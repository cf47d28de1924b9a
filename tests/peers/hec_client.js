// splunk-logging (npm), Splunk's own Node HEC client: events with their
// metadata, batched into one request. Usage: node hec_client.js URL TOKEN
const SplunkLogger = require('splunk-logging').Logger;

const [url, token] = process.argv.slice(2);
const logger = new SplunkLogger({ token, url, maxBatchCount: 0 });
logger.error = (err, context) => {
  console.error('error', err && err.message, JSON.stringify(context));
  process.exit(1);
};
for (let i = 0; i < 3; i++) {
  logger.send({
    message: { event: 'checkout', order: i },
    severity: 'info',
    metadata: { host: 'node-1', source: 'shop', sourcetype: '_json', index: 'main' },
  });
}
logger.flush((err, resp, body) => {
  if (err || resp.statusCode !== 200) {
    console.error('flush failed', err, resp && resp.statusCode, JSON.stringify(body));
    process.exit(1);
  }
  console.log(JSON.stringify(body));
});

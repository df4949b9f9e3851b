// Runs graphql-http's server audits against a running gateway and prints their
// results as one JSON array on stdout. Usage: node audit.mjs URL
// The API key comes from GATEWAY_AUDIT_KEY: the audits send no credentials of
// their own, and every /graphql request needs a key.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
const key = process.env.GATEWAY_AUDIT_KEY;
if (!url || !key) {
  console.error('usage: GATEWAY_AUDIT_KEY=<key> node audit.mjs <url>');
  process.exit(2);
}

function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetchWithKey })) {
  const result = await audit.fn();
  results.push({ id: result.id, name: result.name, status: result.status, reason: result.reason ?? null });
}
console.log(JSON.stringify(results));

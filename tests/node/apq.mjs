// Apollo Client with its persisted-query link against a running gateway: prints
// what each operation answered and the requests it took, as one JSON object.
// Usage: GATEWAY_KEY=<key> node apq.mjs URL
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const url = process.argv[2];
const key = process.env.GATEWAY_KEY;
if (!url || !key) {
  console.error('usage: GATEWAY_KEY=<key> node apq.mjs <url>');
  process.exit(2);
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

// Each request as the gateway saw it: its method and whether it carried the query text.
const sent = [];
function recordingFetch(input, init = {}) {
  const target = new URL(typeof input === 'string' ? input : input.url);
  const body = init.body ? JSON.parse(init.body) : null;
  sent.push({ method: init.method ?? 'GET', withQuery: Boolean(body?.query ?? target.searchParams.get('query')) });
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

function client(useGETForHashedQueries) {
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries })
    .concat(new HttpLink({ uri: url, fetch: recordingFetch }));
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

const EMAILS = gql`
  query ApolloEmails($last: Int) {
    emails(last: $last) { totalCount pageInfo { hasPreviousPage } edges { node { id subject } } }
  }
`;

async function twice(name, apollo) {
  const runs = [];
  for (let i = 0; i < 2; i++) {
    sent.length = 0;
    const result = await apollo.query({ query: EMAILS, variables: { last: 1 }, fetchPolicy: 'no-cache' });
    runs.push({ data: result.data, requests: [...sent] });
  }
  return [name, runs];
}

const results = Object.fromEntries([
  await twice('post', client(false)),
  await twice('get', client(true)),
]);
console.log(JSON.stringify(results));

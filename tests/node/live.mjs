// A live client as the README shows it: graphql-ws, reconnecting for ever, resuming
// through connectionParams so a drop or a server restart loses nothing.
// Usage: GATEWAY_KEY=<key> node live.mjs ws://host:port/graphql
// Prints one JSON line per change ({cursor, status, email}), per error ({error}).
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const url = process.argv[2];
const key = process.env.GATEWAY_KEY;

const CHANGES = `subscription Changes($filter: EmailStatusChangeFilter) {
  emailStatusChanged(filter: $filter) { cursor status email { id } }
}`;

// The resume state: per operation id, the last cursor received. A new operation
// starts from the cursor of the connection_ack, so it resumes even before its
// first change. graphql-ws keeps an operation's id across reconnects.
const resume = {};
let ackCursor = null;
const seen = new Set();

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  lazy: false,
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: async () => new Promise((resolve) => setTimeout(resolve, 200)),
  connectionParams: () => ({ authorization: `Bearer ${key}`, resume }),
  generateID: () => {
    const id = crypto.randomUUID();
    if (ackCursor !== null) resume[id] = ackCursor;
    return id;
  },
  on: {
    connected: (_socket, payload) => { ackCursor = payload?.cursor ?? null; },
    message: (message) => {
      const cursor = message.type === 'next' ? message.payload?.data?.emailStatusChanged?.cursor : undefined;
      if (cursor) resume[message.id] = cursor;
    },
  },
});

// The ack cursor is known before the first operation's id is made.
await new Promise((resolve) => { const off = client.on('connected', () => { off(); resolve(); }); });

client.subscribe({ query: CHANGES, variables: {} }, {
  next(result) {
    if (result.errors) {  // a `next` that carries errors: the change is not shown, the stream goes on
      console.log(JSON.stringify({ error: result.errors.map((e) => e.message).join('; ') }));
      return;
    }
    const change = result.data.emailStatusChanged;
    if (seen.has(change.cursor)) return;  // a duplicate after a resume: dropped by its cursor
    seen.add(change.cursor);
    console.log(JSON.stringify({ cursor: change.cursor, status: change.status, email: change.email.id }));
  },
  error(error) {  // an `error` frame (bad variables, a bad cursor): this operation is over
    const message = Array.isArray(error) ? error.map((e) => e.message).join('; ') : String(error?.reason ?? error);
    console.log(JSON.stringify({ error: message }));
  },
  complete() {},
});
console.log(JSON.stringify({ ready: true }));

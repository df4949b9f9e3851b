// Apollo Client reading emailStatusChanged, over HTTP (HttpLink speaks multipart
// subscriptions) or over the websocket (GraphQLWsLink around a graphql-ws client).
// Usage: GATEWAY_KEY=<key> node apollo-subscription.mjs http://host:port/graphql [http|ws]
// Prints one JSON line per change ({cursor, status, email}) or error ({error}).
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, transport = 'http'] = process.argv.slice(2);
const authorization = `Bearer ${process.env.GATEWAY_KEY}`;
const link = transport === 'ws'
  ? new GraphQLWsLink(createClient({
    url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { authorization },
  }))
  : new HttpLink({ uri: url, headers: { authorization } });
const client = new ApolloClient({ link, cache: new InMemoryCache() });

client.subscribe({
  query: gql`subscription Changes { emailStatusChanged { cursor status email { id } } }`,
}).subscribe({
  next(result) {
    if (result.error) {
      console.log(JSON.stringify({ error: String(result.error.message ?? result.error) }));
      return;
    }
    const change = result.data.emailStatusChanged;
    console.log(JSON.stringify({ cursor: change.cursor, status: change.status, email: change.email.id }));
  },
  error(error) { console.log(JSON.stringify({ error: String(error?.message ?? error) })); },
});
console.log(JSON.stringify({ ready: true }));

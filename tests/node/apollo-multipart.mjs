// Apollo Client's HttpLink reading emailStatusChanged as a multipart subscription.
// Usage: GATEWAY_KEY=<key> node apollo-multipart.mjs http://host:port/graphql
// Prints one JSON line per change ({cursor, status, email}) or error ({error}).
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';

const client = new ApolloClient({
  link: new HttpLink({ uri: process.argv[2], headers: { authorization: `Bearer ${process.env.GATEWAY_KEY}` } }),
  cache: new InMemoryCache(),
});

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

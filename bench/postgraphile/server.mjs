// PostGraphile v5 over the gateway's own tables, for bench/screens.py.
//
// One Node process: the amber preset, schema `public`, no JWT, watch off, GraphiQL off.
// Usage: node server.mjs <connection string> <port>
//
// document.latest_email_id and invoice.latest_email_id have no foreign key in the
// gateway's schema (e-mails point at documents and invoices too), so a smart tag
// declares them as foreign keys: PostGraphile then offers `emailByLatestEmailId`,
// which is what the Documents and Invoicing screens need for their status. Smart tags
// change nothing in the database.
import { createServer } from "node:http";

import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { jsonPgSmartTags } from "postgraphile/utils";

const [connectionString, portText] = process.argv.slice(2);
if (!connectionString || !portText) {
  console.error("usage: node server.mjs <postgres connection string> <port>");
  process.exit(2);
}
const port = Number(portText);

const LatestEmailForeignKeys = jsonPgSmartTags({
  version: 1,
  config: {
    class: {
      document: { tags: { foreignKey: "(latest_email_id) references email (id)" } },
      invoice: { tags: { foreignKey: "(latest_email_id) references email (id)" } },
    },
  },
});

const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [LatestEmailForeignKeys],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      // The same order of size as the gateway's pool (10, plus overflow). Idle connections
      // stay open, as in the gateway's SQLAlchemy pool: node-postgres closes them after 10 s
      // by default, which would make PostGraphile reconnect after every gateway round.
      poolConfig: { max: 10, idleTimeoutMillis: 0 },
    }),
  ],
  grafserv: {
    port,
    host: "127.0.0.1",
    watch: false,
    graphiql: false,
    websockets: false,
  },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.keepAliveTimeout = 65_000;
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
serv.addTo(server).catch((error) => {
  console.error(error);
  process.exit(1);
});
// Build the schema before answering: the first request must not pay for introspection.
await pgl.getSchema();
server.listen(port, "127.0.0.1", () => {
  console.log(`postgraphile ${process.version} listening on http://127.0.0.1:${port}/graphql`);
});

const stop = async () => {
  server.close();
  await pgl.release();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

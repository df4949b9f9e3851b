// Starts GraphiQL on the gateway's own page. Loaded as a file, not inline, so the
// page's Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  var url = window.location.origin + window.location.pathname;
  var fetcher = GraphiQL.createFetcher({
    url: url,
    subscriptionUrl: url.replace(/^http/, "ws"),
  });
  var query = [
    "# The E-mails screen. Put your API key in the Headers pane below:",
    '#   {"Authorization": "Bearer gw_..."}',
    "query Emails($first: Int) {",
    "  emails(first: $first) {",
    "    totalCount",
    "    edges { node { id subject recipient emailStatus } }",
    "  }",
    "}",
    "",
  ].join("\n");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: query,
      defaultVariables: '{"first": 10}',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: "headers",
      inputValueDeprecation: true,
    }),
  );
})();

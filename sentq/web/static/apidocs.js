// Starts Swagger UI on /docs (sentq/web/apidocs.py): a file, not an inline script, so the page's CSP stays strict.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});

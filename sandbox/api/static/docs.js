// Starts Swagger UI on this API's OpenAPI document (sandbox/api/docs_page.py).
// A file of its own, not an inline script: the page's Content-Security-Policy
// allows scripts from the platform only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});

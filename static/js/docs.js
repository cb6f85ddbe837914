// /api/docs: Swagger UI (vendored in /static/vendor/swagger-ui) over /api/openapi.json.
// A classic script: the vendored bundle defines window.SwaggerUIBundle.
(function () {
  "use strict";
  var notice = document.getElementById("notice");
  if (typeof window.SwaggerUIBundle !== "function") {
    notice.textContent = "The docs viewer did not load; the raw description is at /api/openapi.json.";
    notice.hidden = false;
    return;
  }
  window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false,
    defaultModelsExpandDepth: 0,
    docExpansion: "list",
  });
})();

"""Function URLs served over HTTP: AWS's payload format 2.0 in front of the invoke engine.

A request reaches `endpoint.FunctionUrlEndpoint` through `lamina.api.asgi.LaminaApp`, by host
(`<url-id>.lambda-url.<region>.localhost:PORT`) or by path (`/lambda-url/<url-id>/...`). The
modules follow the request: `addresses` (which URL), `directory` (its config and policy),
`cors` (preflight and response headers), `access` (auth type), `events` (request → event),
`responses` (function output → HTTP), `streaming` (RESPONSE_STREAM relay). `url_form` decides,
once at start-up, which of the two forms the control plane hands out as `FunctionUrl`.
"""

// An HTTP API behind a function URL (payload format 2.0).
//
// GET answers with a greeting for the `name` query parameter; POST echoes the JSON body.
// Anything else gets 405. The response is the format-2.0 shape a function URL turns into HTTP.

const respond = (statusCode, document) => ({
  statusCode,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(document),
});

export const handler = async (event) => {
  const { method, path, sourceIp } = event.requestContext.http;
  console.log(`${method} ${path} from ${sourceIp}`);
  if (method === "GET") {
    const name = (event.queryStringParameters || {}).name || "world";
    return respond(200, { message: `Hello, ${name}!`, path });
  }
  if (method === "POST") {
    let body = event.body || "";
    if (event.isBase64Encoded) body = Buffer.from(body, "base64").toString("utf8");
    let received;
    try {
      received = body ? JSON.parse(body) : null;
    } catch {
      return respond(400, { message: "The body is not JSON." });
    }
    return respond(200, { path, received });
  }
  return respond(405, { message: `${method} is not allowed here.` });
};

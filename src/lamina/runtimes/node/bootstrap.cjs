// Lamina's Node.js runtime: a fast client of the Lambda Runtime API, standard library only.
//
// It runs on Node 18 to 22 inside an execution environment and behaves as AWS's Node runtime
// does: handler resolution ("path/module.fn", CommonJS and ES modules), async and callback
// handlers with callbackWaitsForEmptyEventLoop, the context object, console output in AWS's
// format, error payloads ({errorType, errorMessage, trace}) and response streaming through
// the `awslambda.streamifyResponse` global.
//
// CommonJS on purpose: an ES module entry point loads Node's ES module loader before the
// first line runs, which cost a cold start 12-15 ms (of ~45) once V8 flags are given, since
// those flags make V8 reject the code cache of Node's built-in modules. ES module handlers are
// still loaded, through import().

'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { Writable } = require('node:stream');
const util = require('node:util');

// As under an ES module entry point (AWS's runtime is one): no CommonJS main module, so a
// handler's `require.main` is undefined.
process.mainModule = undefined;

const RUNTIME_PATH = '/2018-06-01/runtime';
const HEADER_REQUEST_ID = 'lambda-runtime-aws-request-id';
const HEADER_DEADLINE = 'lambda-runtime-deadline-ms';
const HEADER_FUNCTION_ARN = 'lambda-runtime-invoked-function-arn';
const HEADER_TRACE_ID = 'lambda-runtime-trace-id';
const HEADER_CLIENT_CONTEXT = 'lambda-runtime-client-context';
const HEADER_COGNITO_IDENTITY = 'lambda-runtime-cognito-identity';
const HEADER_TENANT_ID = 'lambda-runtime-aws-tenant-id';
const HEADER_ERROR_TYPE = 'Lambda-Runtime-Function-Error-Type';
const HEADER_ERROR_BODY = 'Lambda-Runtime-Function-Error-Body';
const HEADER_RESPONSE_MODE = 'Lambda-Runtime-Function-Response-Mode';
// The markers AWS's runtime puts on a handler wrapped by awslambda.streamifyResponse.
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HIGH_WATER_MARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const HTTP_INTEGRATION_TYPE = 'application/vnd.awslambda.http-integration-response';

// ---------------------------------------------------------------------------- errors

class RuntimeError extends Error {
  constructor(type, message, stack) {
    super(message);
    this.name = `Runtime.${type}`;
    if (stack) this.stack = stack;
  }
}

/** The body AWS's Node runtime posts for an error: note `trace`, not `stackTrace`. */
function errorPayload(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one ' +
        'or more of its message, name, and stack',
    };
  }
}

function looksLikeError(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.name === 'string' &&
    typeof value.message === 'string' &&
    typeof value.stack === 'string'
  );
}

/** The error as AWS logs it: a tab, then JSON with the stack split into lines. */
function formattedError(error) {
  const asError = error instanceof Error ? error : new Error(error);
  const expand = (_key, value) => {
    if (!(value instanceof Error)) return value;
    const expanded = {
      errorType: value.name,
      errorMessage: value.message,
      code: value.code,
      ...value,
    };
    if (typeof value.stack === 'string') expanded.stack = value.stack.split('\n');
    return expanded;
  };
  try {
    return '\t' + JSON.stringify(asError, expand);
  } catch {
    return '\t' + JSON.stringify(errorPayload(asError));
  }
}

// ----------------------------------------------------------------------------- logs

const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
let currentRequestId;
// Set by `patchConsole`, from the function's variables (a runtime started ahead has them
// only once assigned).
let jsonLogs = false;

function textLine(level, args) {
  // One record per call: newlines become carriage returns, as AWS's runtime writes them.
  const message = util.format(...args).replace(/\n/g, '\r');
  return `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}\n`;
}

function expandError(_key, value) {
  if (!(value instanceof Error)) return value;
  return {
    errorType: value.constructor?.name ?? 'UnknownError',
    errorMessage: value.message,
    stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    ...value,
  };
}

function jsonLine(level, args) {
  const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  let line;
  if (args.length === 1) {
    // A lone value stays structured: objects as JSON, errors expanded.
    record.message = args[0];
    try {
      line = JSON.stringify(record, expandError);
    } catch {
      record.message = util.format(args[0]);
      line = JSON.stringify(record);
    }
  } else {
    record.message = util.format(...args);
    const error = args.find((arg) => arg instanceof Error);
    if (error) {
      record.errorType = error.constructor?.name ?? 'UnknownError';
      record.errorMessage = error.message;
      record.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
    }
    line = JSON.stringify(record);
  }
  return line.replace(/\n/g, '\r') + '\n';
}

function patchConsole() {
  jsonLogs = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
  const format = jsonLogs ? jsonLine : textLine;
  const wanted = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  // Lambda's ApplicationLogLevel defaults to INFO once the format is JSON.
  const threshold = LEVELS[wanted] || (jsonLogs ? LEVELS.INFO : LEVELS.TRACE);
  const make = (level) =>
    LEVELS[level] >= threshold
      ? (...args) => void process.stdout.write(format(level, args))
      : () => {};
  console.trace = make('TRACE');
  console.debug = make('DEBUG');
  console.info = make('INFO');
  console.log = console.info;
  console.warn = make('WARN');
  console.error = make('ERROR');
  console.fatal = make('FATAL');
}

function logError(label, error) {
  if (jsonLogs) console.error(error instanceof Error ? error : new Error(error));
  else console.error(label, formattedError(error));
}

// ------------------------------------------------------------------- runtime API client

const CRLF_CRLF = Buffer.from('\r\n\r\n');
// A header value AWS's Runtime API accepts as it is; anything else is left out (the error
// body names the type too, and the Runtime API reads it from there).
const PLAIN_HEADER_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * The Runtime API over one kept-alive socket, with HTTP written and read by hand.
 *
 * Requests go out in order and their replies come back in order (HTTP/1.1 pipelining). An
 * invocation's answer is not sent on its own: it is held and written together with the next
 * GET /next, in one write, so answering an event and asking for the next one costs one round
 * trip, as in Lamina's Python runtime (the Runtime API then sends its 202 with the event).
 * The socket is unref'd while no reply is awaited, so a waiting runtime does not keep the
 * event loop busy while a handler runs (callbackWaitsForEmptyEventLoop).
 */
class RuntimeClient {
  constructor(address) {
    const separator = address.lastIndexOf(':');
    this.host = address.slice(0, separator);
    this.port = Number(address.slice(separator + 1));
    this.hostHeader = `Host: ${address}\r\n`;
    this.socket = null;
    // What arrived of the replies (the head of the first one parsed once, into `reply`).
    this.chunks = [];
    this.size = 0;
    this.reply = null;
    // Replies still to come, oldest first: {resolve, reject}.
    this.waiting = [];
    // An answer to an event, sent with the next request (see `next`).
    this.held = '';
  }

  connect() {
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    socket.on('data', (data) => this.received(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.socket === socket) this.socket = null;
      this.chunks = [];
      this.size = 0;
      this.reply = null;
      const waiting = this.waiting;
      this.waiting = [];
      for (const { reject } of waiting) reject(new Error('the Runtime API closed the connection'));
    });
    this.socket = socket;
    return socket;
  }

  /** Write `data` (a string or a list of strings and buffers) and await `replies` replies. */
  send(data, replies = 1) {
    const socket = this.socket ?? this.connect();
    const promises = [];
    for (let count = 0; count < replies; count += 1) {
      promises.push(new Promise((resolve, reject) => this.waiting.push({ resolve, reject })));
    }
    socket.ref();
    if (typeof data === 'string') {
      socket.write(data);
    } else {
      socket.cork();
      for (const part of data) socket.write(part);
      socket.uncork();
    }
    return promises[promises.length - 1];
  }

  received(data) {
    this.chunks.push(data);
    this.size += data.length;
    while (this.waiting.length > 0) {
      const reply = this.parse();
      if (reply === null) break;
      this.waiting.shift().resolve(reply);
    }
    if (this.waiting.length === 0 && this.socket !== null) this.socket.unref();
  }

  /** What has arrived, as one buffer (joined only when a head or a whole body is there). */
  joined() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0];
  }

  /** One complete reply from the front of what arrived, or null while it is incomplete. */
  parse() {
    if (this.size === 0) return null;
    if (this.reply === null) {
      const buffer = this.joined();
      const end = buffer.indexOf(CRLF_CRLF);
      if (end < 0) return null;
      const lines = buffer.toString('latin1', 0, end).split('\r\n');
      const headers = {};
      for (let index = 1; index < lines.length; index += 1) {
        const line = lines[index];
        const colon = line.indexOf(':');
        if (colon > 0) {
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
      }
      // Lamina's Runtime API always sends Content-Length.
      this.reply = {
        status: Number(lines[0].split(' ', 2)[1]),
        headers,
        start: end + 4,
        length: Number(headers['content-length']) || 0,
      };
    }
    const { status, headers, start, length } = this.reply;
    // A large event arrives in many reads: they are joined once, when it is complete.
    if (this.size < start + length) return null;
    const buffer = this.joined();
    this.reply = null;
    this.size -= start + length;
    this.chunks = this.size > 0 ? [buffer.subarray(start + length)] : [];
    return { status, headers, body: buffer.subarray(start, start + length) };
  }

  head(method, urlPath, headers) {
    let text = `${method} ${urlPath} HTTP/1.1\r\n${this.hostHeader}`;
    for (const name in headers) text += `${name}: ${headers[name]}\r\n`;
    return `${text}\r\n`;
  }

  async next() {
    const held = this.held;
    this.held = '';
    const request = this.head('GET', `${RUNTIME_PATH}/invocation/next`, {});
    // The held answer's reply (202) comes first; only the event's matters here.
    const response = await this.send(held + request, held ? 2 : 1);
    if (response.status !== 200) {
      throw new Error(`Runtime API answered ${response.status} to /invocation/next`);
    }
    return response;
  }

  /** Answer an event; the POST goes out with the next GET /next. */
  respond(requestId, body) {
    this.hold(`${RUNTIME_PATH}/invocation/${encodeURIComponent(requestId)}/response`, body);
  }

  /** Report an invocation's error; like an answer, it goes out with the next GET /next. */
  failInvocation(requestId, payload) {
    const urlPath = `${RUNTIME_PATH}/invocation/${encodeURIComponent(requestId)}/error`;
    this.hold(urlPath, JSON.stringify(payload), errorTypeHeader(payload));
  }

  /** Report a failed init, at once: the runtime exits next. */
  failInit(payload) {
    const body = JSON.stringify(payload);
    const headers = {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      ...errorTypeHeader(payload),
    };
    return this.send(this.head('POST', `${RUNTIME_PATH}/init/error`, headers) + body);
  }

  hold(urlPath, body, extra) {
    const headers = {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      ...extra,
    };
    this.held = this.head('POST', urlPath, headers) + body;
  }

  /** Write more of a request already begun (a streamed answer's chunks). */
  sendRaw(parts, callback) {
    const socket = this.socket;
    if (socket === null) return;
    socket.cork();
    const last = parts.length - 1;
    for (let index = 0; index < last; index += 1) socket.write(parts[index]);
    socket.write(parts[last], callback);
    socket.uncork();
  }

  /** Open a streamed answer (chunked); its reply settles the returned promise. */
  openStream(requestId, contentType) {
    const head = this.head(
      'POST',
      `${RUNTIME_PATH}/invocation/${encodeURIComponent(requestId)}/response`,
      {
        [HEADER_RESPONSE_MODE]: 'streaming',
        'Content-Type': PLAIN_HEADER_VALUE.test(contentType)
          ? contentType
          : 'application/octet-stream',
        'Transfer-Encoding': 'chunked',
        Trailer: `${HEADER_ERROR_TYPE}, ${HEADER_ERROR_BODY}`,
      },
    );
    return this.send(head);
  }
}

function errorTypeHeader(payload) {
  const type = payload.errorType === undefined ? '' : String(payload.errorType);
  return type && PLAIN_HEADER_VALUE.test(type) ? { [HEADER_ERROR_TYPE]: type } : {};
}

// --------------------------------------------------------------------- handler loading

const awslambda = {
  streamifyResponse(handler, options) {
    handler[STREAMING] = 'response';
    if (typeof options?.highWaterMark === 'number') {
      handler[HIGH_WATER_MARK] = Math.trunc(options.highWaterMark);
    }
    return handler;
  },
  HttpResponseStream: class HttpResponseStream {
    /** Send status and headers first (API Gateway / function URL integration format). */
    static from(responseStream, prelude) {
      responseStream.setContentType(HTTP_INTEGRATION_TYPE);
      const metadata = JSON.stringify(prelude);
      responseStream._onBeforeFirstWrite = (write) => {
        write(metadata);
        write(new Uint8Array(8));
      };
      return responseStream;
    }
  },
};

function isModuleTypePackage(folder) {
  // The nearest package.json decides whether .js files are ES modules, as in Node itself.
  for (let current = folder; ; current = path.dirname(current)) {
    if (current.endsWith('/node_modules')) return false;
    const manifest = path.join(current, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8'))?.type === 'module';
      } catch (error) {
        console.warn(`${manifest} cannot be read; ignoring it to detect ES modules.`, error);
        return false;
      }
    }
    if (current === path.dirname(current)) return false;
  }
}

async function importFile(file) {
  // Loaded only for ES module handlers.
  const { pathToFileURL } = require('node:url');
  return import(pathToFileURL(file).href);
}

async function loadModule(taskRoot, moduleRoot, name) {
  const base = path.resolve(taskRoot, moduleRoot, name);
  if (fs.existsSync(base)) return require(base);
  const esm = isModuleTypePackage(path.dirname(base));
  if (fs.existsSync(`${base}.js`)) return esm ? importFile(`${base}.js`) : require(`${base}.js`);
  if (fs.existsSync(`${base}.mjs`)) return importFile(`${base}.mjs`);
  if (fs.existsSync(`${base}.cjs`)) return require(`${base}.cjs`);
  // A package name (node_modules, NODE_PATH) as a last resort, as AWS's runtime allows.
  return require(require.resolve(name, { paths: [taskRoot, path.resolve(taskRoot, moduleRoot)] }));
}

async function loadHandler(taskRoot, spec) {
  if (spec.includes('..')) {
    throw new RuntimeError(
      'MalformedHandlerName',
      `'${spec}' is not a valid handler name. Use absolute paths when specifying root ` +
        'directories in handler names.',
    );
  }
  const file = path.basename(spec);
  const moduleRoot = spec.slice(0, spec.length - file.length);
  const match = /^([^.]*)\.(.*)$/.exec(file);
  if (!match) throw new RuntimeError('MalformedHandlerName', 'Bad handler');
  const [, name, property] = match;
  let loaded;
  try {
    loaded = await loadModule(taskRoot, moduleRoot, name);
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new RuntimeError('UserCodeSyntaxError', String(error), error.stack);
    }
    // Only CommonJS's code: an ES module importing a missing package fails as a plain Error
    // ("Cannot find package 'x' imported from ..."), as on AWS.
    if (error?.code === 'MODULE_NOT_FOUND') {
      throw new RuntimeError('ImportModuleError', String(error));
    }
    throw error;
  }
  const handler = property.split('.').reduce((object, key) => object && object[key], loaded);
  if (!handler) throw new RuntimeError('HandlerNotFound', `${spec} is undefined or not exported`);
  if (typeof handler !== 'function') {
    throw new RuntimeError('HandlerNotFound', `${spec} is not a function`);
  }
  return handler;
}

function addLayerPaths() {
  // AWS puts /opt/nodejs/nodeNN/node_modules first on NODE_PATH; add it when a layer has it.
  const opt = process.env.LAMINA_OPT_DIR;
  if (!opt) return;
  const versioned = path.join(opt, 'nodejs', `node${process.versions.node.split('.')[0]}`);
  const modules = path.join(versioned, 'node_modules');
  const Module = require('node:module');
  if (fs.existsSync(modules) && typeof Module._initPaths === 'function') {
    process.env.NODE_PATH = [modules, process.env.NODE_PATH].filter(Boolean).join(':');
    Module._initPaths();
  }
}

// ------------------------------------------------------------------------ invocations

function parseJson(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function serialise(result) {
  try {
    return JSON.stringify(result === undefined ? null : result);
  } catch {
    throw new RuntimeError('JSONStringifyError', 'Unable to stringify response body');
  }
}

/** Runs `listener` once, the next time the event loop has nothing left to do. */
let onEmptyLoop = null;
process.on('beforeExit', () => {
  const listener = onEmptyLoop;
  onEmptyLoop = null;
  if (listener) listener();
});

class Runtime {
  constructor(client, handler) {
    this.client = client;
    this.handler = handler;
    this.streaming = handler[STREAMING] === 'response';
    this.highWaterMark = handler[HIGH_WATER_MARK];
    this.isAsync = handler.constructor?.name === 'AsyncFunction';
    this.invocation = null;
    const env = process.env;
    this.environment = {
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    };
  }

  start() {
    this.scheduleNext();
  }

  scheduleNext() {
    setImmediate(() =>
      this.handleNext().catch((error) => {
        // The Runtime API is gone (the environment is being torn down) or answered badly.
        process.stderr.write(`Lamina runtime: ${error?.stack || error}\n`);
        process.exit(1);
      }),
    );
  }

  async handleNext() {
    const { headers, body } = await this.client.next();
    const requestId = headers[HEADER_REQUEST_ID];
    currentRequestId = requestId;
    const traceId = headers[HEADER_TRACE_ID];
    if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
    else delete process.env._X_AMZN_TRACE_ID;
    const invocation = new Invocation(this, requestId, headers);
    this.invocation = invocation;
    onEmptyLoop = null;
    let event;
    try {
      event = JSON.parse(body.length ? body.toString('utf8') : 'null');
    } catch (error) {
      invocation.fail(error);
      return;
    }
    if (this.streaming) {
      await this.runStreaming(invocation, event);
      return;
    }
    // Neither a promise nor the callback: the invocation ends when the event loop empties,
    // with null for a plain function and an error for an async one that never settled.
    onEmptyLoop = () => {
      if (this.isAsync) {
        const error = new RuntimeError('NodeJsExit', 'Runtime exited without providing a reason');
        invocation.fail(error);
      } else {
        invocation.complete(null);
      }
    };
    try {
      const result = this.handler(event, invocation.context, invocation.callback);
      if (result && typeof result.then === 'function') {
        result.then(invocation.settle.succeed, invocation.settle.fail);
      }
    } catch (error) {
      invocation.fail(error);
    }
  }

  async runStreaming(invocation, event) {
    const stream = new ResponseStream(this.client, invocation.requestId, this.highWaterMark);
    invocation.stream = stream;
    try {
      const result = this.handler(event, stream, invocation.context);
      if (!result || typeof result.then !== 'function') {
        invocation.fail(new Error('Streaming does not support non-async handlers.'));
        return;
      }
      if ((await result) !== undefined) console.warn('Streaming handlers ignore return values.');
      if (!stream.writableEnded) {
        invocation.fail(new Error('Response stream is not finished.'));
        return;
      }
      await stream.done;
      invocation.finishStreamed();
    } catch (error) {
      invocation.fail(error);
    }
  }

  crashed(error) {
    // Reported as the current invocation's error. AWS then restarts the runtime; Lamina keeps
    // it, so the environment stays warm (a crash in the handler ends only that invocation).
    const invocation = this.invocation;
    if (invocation && !invocation.finished) invocation.fail(error, { logged: true });
  }
}

/** One invocation: its context, its callback and how it reports its outcome (once). */
class Invocation {
  constructor(runtime, requestId, headers) {
    this.runtime = runtime;
    this.requestId = requestId;
    this.finished = false;
    this.stream = null;
    this.waitsForEmptyLoop = true;
    const deadline = Number(headers[HEADER_DEADLINE]) || 0;
    const invocation = this;
    // The handler's first answer counts, whichever way it gives it (callback, context
    // methods or its promise); later ones are ignored, as on AWS.
    let answered = false;
    const once =
      (answer) =>
      (...args) => {
        if (answered) return;
        answered = true;
        answer(...args);
      };
    const succeed = once((result) => invocation.complete(result));
    const fail = once((error) => invocation.fail(error ?? 'handled'));
    const done = once((error, result) =>
      error === undefined || error === null ? invocation.complete(result) : invocation.fail(error),
    );
    this.context = {
      ...runtime.environment,
      awsRequestId: requestId,
      invokedFunctionArn: headers[HEADER_FUNCTION_ARN],
      clientContext: parseJson(headers[HEADER_CLIENT_CONTEXT]),
      identity: parseJson(headers[HEADER_COGNITO_IDENTITY]),
      tenantId: headers[HEADER_TENANT_ID],
      getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
      get callbackWaitsForEmptyEventLoop() {
        return invocation.waitsForEmptyLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        invocation.waitsForEmptyLoop = value;
      },
      succeed,
      fail,
      done,
    };
    this.settle = { succeed, fail };
    this.callback = once((error, result) => {
      if (error !== undefined && error !== null) {
        invocation.fail(error);
      } else if (!invocation.waitsForEmptyLoop) {
        invocation.complete(result);
      } else {
        // AWS answers only once everything the handler started (timers, sockets) is done.
        onEmptyLoop = () => setImmediate(() => invocation.complete(result));
      }
    });
  }

  get current() {
    return this.runtime.invocation === this && !this.finished;
  }

  complete(result) {
    if (!this.current) return;
    let body;
    try {
      body = serialise(result);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.runtime.client.respond(this.requestId, body);
    this.finish();
  }

  fail(error, { logged = false } = {}) {
    if (!this.current) return;
    if (!logged) logError('Invoke Error', error);
    const payload = errorPayload(error);
    if (this.stream && this.stream.started) {
      this.finished = true;
      onEmptyLoop = null;
      this.stream.abort(payload).then(() => this.runtime.scheduleNext());
      return;
    }
    this.runtime.client.failInvocation(this.requestId, payload);
    this.finish();
  }

  finishStreamed() {
    if (!this.current) return;
    this.finished = true;
    onEmptyLoop = null;
    if (this.waitsForEmptyLoop) onEmptyLoop = () => this.runtime.scheduleNext();
    else this.runtime.scheduleNext();
  }

  /** The answer is held by the client; it goes out with the next GET /next. */
  finish() {
    this.finished = true;
    onEmptyLoop = null;
    this.runtime.scheduleNext();
  }
}

// --------------------------------------------------------------------------- streaming

function toChunk(chunk) {
  return typeof chunk === 'string' || chunk instanceof Uint8Array ? chunk : JSON.stringify(chunk);
}

/** The writable stream a streaming handler writes its response to (a chunked HTTP POST). */
class ResponseStream extends Writable {
  constructor(client, requestId, highWaterMark) {
    super(highWaterMark === undefined ? {} : { highWaterMark });
    this.client = client;
    this.requestId = requestId;
    this.contentType = 'application/octet-stream';
    this.started = false;
    this.ended = false;
    this.failed = false;
    // HttpResponseStream.from sets this to write its prelude before the first byte.
    this._onBeforeFirstWrite = null;
    // Settled once the Runtime API has answered the POST (after its last chunk).
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  setContentType(value) {
    if (this.started) {
      throw new RuntimeError('InvalidStreamingOperation', 'Cannot set content-type, too late.');
    }
    this.contentType = value;
  }

  write(chunk, encoding, callback) {
    return super.write(toChunk(chunk), encoding, callback);
  }

  end(chunk, encoding, callback) {
    if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
      return super.end(toChunk(chunk), encoding, callback);
    }
    return super.end(chunk, encoding, callback);
  }

  _write(chunk, _encoding, callback) {
    this.open();
    this.writeChunk(chunk, callback);
  }

  _final(callback) {
    if (!this.failed) {
      this.open();
      this.close('');
    }
    callback();
  }

  /** Begin the POST (its head, then any prelude); idempotent. */
  open() {
    if (this.started) return;
    this.started = true;
    this.client.openStream(this.requestId, this.contentType).then(
      () => this.settle(),
      (error) => {
        process.stderr.write(`Lamina runtime: ${error?.stack || error}\n`);
        process.exit(1);
      },
    );
    if (typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((chunk) => this.writeChunk(chunk));
    }
  }

  writeChunk(chunk, callback) {
    // After an error ended the response (see `abort`), what the handler still writes, or
    // had queued, is dropped: the connection carries the next request by then.
    if (this.ended) {
      if (callback) process.nextTick(callback);
      return;
    }
    const size = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    // An empty chunk would end the chunked body.
    if (size === 0) {
      if (callback) process.nextTick(callback);
      return;
    }
    this.client.sendRaw([`${size.toString(16)}\r\n`, chunk, '\r\n'], callback);
  }

  close(trailers) {
    if (this.ended) return;
    this.ended = true;
    this.client.sendRaw([`0\r\n${trailers}\r\n`]);
  }

  /** End the response with an error: it travels in the trailers, as AWS's runtime sends it. */
  abort(payload) {
    this.failed = true;
    this.open();
    const type = String(payload.errorType).replace(/[^\t\x20-\x7e]/g, '') || 'Unknown';
    const body = Buffer.from(JSON.stringify(payload)).toString('base64');
    this.close(`${HEADER_ERROR_TYPE}: ${type}\r\n${HEADER_ERROR_BODY}: ${body}\r\n`);
    return this.done;
  }
}

// ----------------------------------------------------------------------------- main

/**
 * A runtime started before its function was known (Lamina's `prestarted`) waits here, with
 * the bootstrap loaded, until its assignment arrives: the function's variables, which become
 * its whole environment. Its code is mounted on /var/task by then, over the empty directory
 * it started in. A pipe closed without an assignment ends it.
 */
async function awaitAssignment() {
  const descriptor = process.env.LAMINA_ASSIGNMENT_FD;
  if (descriptor === undefined) return;
  // Only a head start: a runtime that could not warm up still serves its function. (Not
  // with NODE_DEBUG, whose lines about it would reach the function's logs.)
  if (!process.env.NODE_DEBUG) await warmUp().catch(() => {});
  // Lamina hands out only runtimes that said they wait.
  const waiting = Number(process.env.LAMINA_WAITING_FD);
  fs.writeSync(waiting, 'waiting');
  fs.closeSync(waiting);
  const fd = Number(descriptor);
  const chunks = [];
  const buffer = Buffer.allocUnsafe(64 * 1024);
  // The assignment ends with a newline: the pipe's end may come later (a copy of its write
  // end can linger a moment in a process the server is starting).
  for (let read; (read = fs.readSync(fd, buffer)) > 0; ) {
    chunks.push(Buffer.from(buffer.subarray(0, read)));
    if (buffer[read - 1] === 0x0a) break;
  }
  fs.closeSync(fd);
  if (!chunks.length) process.exit(0);
  takeEnvironment(JSON.parse(Buffer.concat(chunks).toString('utf8')).environment);
  process.chdir(process.env.LAMBDA_TASK_ROOT || '/var/task');
}

function takeEnvironment(environment) {
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, environment);
  // NODE_PATH was read at start-up; the function's own may differ.
  const Module = require('node:module');
  if (typeof Module._initPaths === 'function') Module._initPaths();
}

/**
 * Runs once, while waiting, what a cold start runs next (V8 compiles each function the first
 * time it runs): taking an environment, loading a handler (a no-op of Lamina's), and a
 * request and its reply over a Runtime API client, against a listener of its own on the
 * loopback, closed again.
 */
async function warmUp() {
  takeEnvironment(JSON.parse(JSON.stringify(process.env)));
  await loadHandler(__dirname, 'warm-up.handler');
  const listener = net.createServer((socket) =>
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}')),
  );
  await new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(0, '127.0.0.1', resolve);
  });
  const client = new RuntimeClient(`127.0.0.1:${listener.address().port}`);
  try {
    await client.next();
  } finally {
    client.socket?.destroy();
    await new Promise((resolve) => listener.close(resolve));
  }
}

async function main() {
  await awaitAssignment();
  patchConsole();
  globalThis.awslambda = awslambda;
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API);
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let runtime = null;
  const initFailed = async (error) => {
    await client.failInit(errorPayload(error)).catch(() => {});
    process.exit(129);
  };
  const crashed = (label, error) => {
    logError(label, error);
    if (runtime) runtime.crashed(error);
    else initFailed(error);
  };
  process.on('uncaughtException', (error) => crashed('Uncaught Exception', error));
  process.on('unhandledRejection', (reason) => {
    const error = new RuntimeError('UnhandledPromiseRejection', String(reason));
    error.reason = reason;
    crashed('Unhandled Promise Rejection', error);
  });
  addLayerPaths();
  let handler;
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (error) {
    logError('Uncaught Exception', error);
    await initFailed(error);
  }
  runtime = new Runtime(client, handler);
  runtime.start();
}

main().catch((error) => {
  process.stderr.write(`Lamina runtime: ${error?.stack || error}\n`);
  process.exit(1);
});

// The process one local Node.js function runs in, like a Lambda execution environment.
//
// Started by functions.py (`node .../node_worker.mjs`) on the Node.js the function's Runtime
// names, in its code folder, with its environment. It speaks worker.py's protocol: requests and
// responses are length-prefixed (4-byte big-endian) JSON frames on stdin/stdout, one invocation
// at a time. What the handler logs during an invocation (console.*, process.stdout/stderr) goes
// back with that invocation's response, in Lambda's `<time>\t<request id>\t<LEVEL>\t<message>`
// form. The handler module is loaded once (warm) on the first invocation: CommonJS through
// `require`, ES modules (`.mjs`, or `.js` under `"type": "module"`) through `import()`.
//
// Modules: NODE_PATH (set by functions.py) lists the function's build, its layers and the AWS
// SDK folder; `require` reads it, and a resolve hook (node_worker_hooks.mjs) gives `import` the
// same folders after the importing file's own node_modules, as Lambda does for ES modules.
//
// `_TIDINGS_HOST_REDIRECTS` ({"hostname": port}): TLS connections to (hostname, 443) go to
// (127.0.0.1, port), keeping the hostname for SNI and certificate verification (the local
// management endpoint's certificate is signed by the CA in NODE_EXTRA_CA_CERTS).
// Node.js built-ins only: nothing here may shadow or preload what the function imports.

import fs from "node:fs";
import module from "node:module";
import path from "node:path";
import tls from "node:tls";
import util from "node:util";
import { pathToFileURL } from "node:url";

const PROTOCOL_OUT = 1; // fd 1 carries frames only; the handler's writes are captured below
const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
const runtimeMajor = Number((process.env.AWS_EXECUTION_ENV || "").match(/nodejs(\d+)\.x/)?.[1] || 0);

// ------------------------------------------------------------------ host redirects
export function redirectedOptions(options, redirects) {
  const host = String(options.host || options.hostname || "localhost").toLowerCase().replace(/\.$/, "");
  const port = Number(options.port || 443);
  if (port !== 443 || !Object.hasOwn(redirects, host)) {
    return options;
  }
  return { ...options, host: "127.0.0.1", port: Number(redirects[host]), servername: options.servername || host };
}

function installHostRedirects() {
  const text = process.env._TIDINGS_HOST_REDIRECTS;
  if (!text) return;
  let redirects;
  try {
    redirects = Object.fromEntries(Object.entries(JSON.parse(text)).map(([name, port]) => [name.toLowerCase(), port]));
  } catch {
    return;
  }
  const connect = tls.connect;
  // tls.connect(options[, cb]) | (port[, host][, options][, cb]): https.Agent (https.request, the
  // AWS SDK's NodeHttpHandler) calls the first form through the module object, so replacing the
  // export covers them; syncBuiltinESMExports updates `import { connect } from "node:tls"`.
  tls.connect = function redirectingConnect(...args) {
    const callback = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
    let options;
    if (args[0] !== null && typeof args[0] === "object") {
      options = { ...args[0] };
    } else {
      options = { port: args[0] };
      if (typeof args[1] === "string") options.host = args[1];
      const extra = args.find((value, index) => index > 0 && value !== null && typeof value === "object");
      if (extra) options = { ...extra, ...options };
    }
    const target = redirectedOptions(options, redirects);
    return callback ? connect.call(this, target, callback) : connect.call(this, target);
  };
  module.syncBuiltinESMExports();
}

// ------------------------------------------------------------------ output capture
let logs = [];
let currentRequestId = "";

function capture(text) {
  logs.push(typeof text === "string" ? text : Buffer.from(text).toString("utf8"));
}

function installCapture() {
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = (chunk, encoding, callback) => {
      capture(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(typeof encoding === "string" ? encoding : "utf8"));
      const done = typeof encoding === "function" ? encoding : callback;
      if (done) process.nextTick(done);
      return true;
    };
  }
  const levels = { log: "INFO", info: "INFO", warn: "WARN", error: "ERROR", debug: "DEBUG", trace: "TRACE" };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      let message = util.format(...args);
      if (method === "trace") message += "\n" + new Error().stack.split("\n").slice(2).join("\n");
      capture(`${new Date().toISOString()}\t${currentRequestId || "undefined"}\t${level}\t${message}\n`);
    };
  }
}

// ------------------------------------------------------------------ loading the handler
class RuntimeError extends Error {
  constructor(name, message, cause) {
    super(message);
    this.name = name;
    if (cause && cause.stack) this.stack = cause.stack;
  }
}

function moduleType(file) {
  if (file.endsWith(".mjs")) return "module";
  if (file.endsWith(".cjs")) return "commonjs";
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, "utf8")).type === "module" ? "module" : "commonjs";
      } catch {
        return "commonjs";
      }
    }
    if (dir === path.dirname(dir) || dir === path.dirname(taskRoot)) return "commonjs";
  }
}

async function loadHandler() {
  const handlerSetting = process.env._HANDLER || "";
  const slash = handlerSetting.lastIndexOf("/");
  const dot = handlerSetting.indexOf(".", slash + 1);
  if (dot < 0) {
    throw new RuntimeError("Runtime.MalformedHandlerName", `Bad handler ${handlerSetting}`);
  }
  const modulePath = handlerSetting.slice(0, dot);
  const functionPath = handlerSetting.slice(dot + 1);
  const base = path.resolve(taskRoot, modulePath);
  const file = [".js", ".mjs", ".cjs"].map((suffix) => base + suffix).find((name) => fs.existsSync(name));
  let loaded;
  try {
    if (file && moduleType(file) === "module") {
      loaded = await import(pathToFileURL(file).href);
    } else {
      loaded = module.createRequire(path.join(taskRoot, "index.js"))(file || base);
    }
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new RuntimeError("Runtime.UserCodeSyntaxError", `${error.name}: ${error.message}`, error);
    }
    const missing = error && (error.code === "MODULE_NOT_FOUND" || error.code === "ERR_MODULE_NOT_FOUND");
    if (missing) {
      const typescript = !file && [".ts", ".mts", ".cts"].map((suffix) => base + suffix).find((name) => fs.existsSync(name));
      const hint = typescript
        ? ` (${path.basename(typescript)} is TypeScript: \`sam build\` compiles it with esbuild, which the local stack does not run; build it to JavaScript first)`
        : "";
      throw new RuntimeError("Runtime.ImportModuleError", `Error: ${error.message}${hint}`, error);
    }
    throw error;
  }
  let handler = loaded;
  for (const part of functionPath.split(".")) {
    handler = handler == null ? undefined : handler[part];
  }
  if (handler === undefined && loaded && loaded.default && typeof loaded.default === "object") {
    handler = functionPath.split(".").reduce((value, part) => (value == null ? undefined : value[part]), loaded.default);
  }
  if (handler === undefined) {
    throw new RuntimeError("Runtime.HandlerNotFound", `${modulePath}.${functionPath} is undefined or not exported`);
  }
  if (typeof handler !== "function") {
    throw new RuntimeError("Runtime.HandlerNotFound", `${modulePath}.${functionPath} is not a function`);
  }
  if (runtimeMajor >= 24 && handler.length >= 3) {
    throw new RuntimeError(
      "Runtime.CallbackHandlerDeprecated",
      `${modulePath}.${functionPath} takes a callback (event, context, callback): nodejs${runtimeMajor}.x ` +
        "runs only async handlers (event, context); return a value or a promise instead",
    );
  }
  return handler;
}

// ------------------------------------------------------------------ invoking
function makeContext(request, settle) {
  const deadline = Number(request.deadline_ms);
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME || "",
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION || "$LATEST",
    invokedFunctionArn: request.function_arn || "",
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || "128",
    awsRequestId: request.request_id,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME || "",
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME || "",
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    // the legacy completion methods Lambda's runtime still offers
    succeed: (result) => settle(null, result),
    fail: (error) => settle(error ?? "handled"),
    done: (error, result) => settle(error, result),
  };
}

function errorResponse(error) {
  if (error instanceof Error) {
    const errorType = error.name && error.name !== "Error" ? error.name : error.constructor?.name || "Error";
    const stack = typeof error.stack === "string" ? error.stack.split("\n").map((line) => line + "\n") : [];
    return { ok: false, errorType, errorMessage: error.message, stackTrace: stack };
  }
  return { ok: false, errorType: typeof error, errorMessage: String(error), stackTrace: [] };
}

let handler;
let pendingFailure; // an unhandled rejection or uncaught exception during the invocation
let crashed = false; // after one, the environment is not reused (Lambda restarts its runtime)

async function invoke(request) {
  currentRequestId = request.request_id;
  const started = performance.now();
  const cold = handler === undefined;
  let response;
  try {
    if (handler === undefined) handler = await loadHandler();
    const result = await new Promise((resolve, reject) => {
      let settled = false;
      const settle = (error, value) => {
        if (settled) return;
        settled = true;
        if (error !== null && error !== undefined) reject(error);
        else resolve(value);
      };
      pendingFailure = (error) => settle(error);
      const context = makeContext(request, settle);
      let returned;
      try {
        returned = handler(request.event, context, settle);
      } catch (error) {
        settle(error);
        return;
      }
      if (returned && typeof returned.then === "function") {
        returned.then((value) => settle(null, value), (error) => settle(error ?? new Error("rejected")));
      } else if (handler.length < 3) {
        settle(null, returned); // a synchronous non-callback handler returned its result
      }
    });
    let body;
    try {
      body = JSON.parse(JSON.stringify(result === undefined ? null : result));
    } catch (error) {
      throw new RuntimeError("Runtime.MarshalError", `Unable to stringify response body: ${error.message}`, error);
    }
    response = { ok: true, result: body };
  } catch (error) {
    response = errorResponse(error);
    capture(
      `${new Date().toISOString()}\t${currentRequestId}\tERROR\tInvoke Error \t${JSON.stringify({
        errorType: response.errorType,
        errorMessage: response.errorMessage,
        stack: response.stackTrace.map((line) => line.trimEnd()),
      })}\n`,
    );
  }
  pendingFailure = undefined;
  response.logs = logs.join("");
  logs = [];
  response.duration_ms = performance.now() - started;
  response.cold = cold;
  if (crashed) response.retire = true; // the runner ends this worker instead of reusing it
  return response;
}

// An init frame ({"init": true}): load the handler ahead of any invocation (Lambda's proactive
// initialization, see functions.py). What loading printed stays for the first invocation's logs;
// a failure answers as that invocation would have (the runner then discards this worker).
async function initialize() {
  currentRequestId = "";
  const started = performance.now();
  let response;
  try {
    if (handler === undefined) handler = await loadHandler();
    response = { ok: true };
  } catch (error) {
    response = errorResponse(error);
    response.logs = logs.join("");
    logs = [];
  }
  response.init_ms = performance.now() - started;
  if (crashed) response.retire = true;
  return response;
}

function writeFrame(message) {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  const frame = Buffer.concat([header, body]);
  for (let offset = 0; offset < frame.length; ) {
    try {
      offset += fs.writeSync(PROTOCOL_OUT, frame, offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

async function serve() {
  let buffered = Buffer.alloc(0);
  let busy = Promise.resolve();
  process.stdin.on("data", (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4) {
      const length = buffered.readUInt32BE(0);
      if (buffered.length < 4 + length) break;
      const request = JSON.parse(buffered.subarray(4, 4 + length).toString("utf8"));
      buffered = buffered.subarray(4 + length);
      busy = busy.then(async () => {
        writeFrame(await (request.init ? initialize() : invoke(request)));
        if (crashed) process.exit(1);
      });
    }
  });
  process.stdin.on("end", () => busy.then(() => process.exit(0)));
}

function registerResolveHook() {
  // the code folder itself needs no hook: its files resolve from their own node_modules
  const paths = (process.env.NODE_PATH || "")
    .split(path.delimiter)
    .filter((folder) => folder && path.resolve(folder) !== path.resolve(taskRoot));
  if (typeof module.register !== "function" || paths.length === 0) return; // Node < 18.19
  module.register(new URL("./node_worker_hooks.mjs", import.meta.url), { data: { paths } });
}

// As Lambda's runtime: an unhandled rejection fails the invocation as
// Runtime.UnhandledPromiseRejection, an uncaught exception with its own type; either ends the
// environment, so the next invocation starts cold.
function crash(error) {
  crashed = true;
  if (pendingFailure) {
    pendingFailure(error);
  } else {
    capture(`${new Date().toISOString()}\t${currentRequestId}\tERROR\tUncaught Exception \t${error?.stack ?? error}\n`);
    process.exit(1);
  }
}
process.on("unhandledRejection", (reason) => {
  crash(new RuntimeError("Runtime.UnhandledPromiseRejection", String(reason?.stack ? `${reason.name}: ${reason.message}` : reason)));
});
process.on("uncaughtException", (error) => crash(error));

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  installCapture();
  installHostRedirects();
  registerResolveHook();
  serve();
}

// A corral plugin in Node.js (v18 or newer), with built-in modules only.
//
// It speaks the JSON codec of docs/protocol.md directly: two connections to
// CORRAL_PLUGIN_SOCKET (the plugin connection, on which corral calls us, and
// the bus connection, opened before `Load` is answered), 4-byte big-endian
// length frames, a hello with the per-spawn secret, then tarpc requests.
//
// Actions: `ping` -> {"pong": true, "pid": <pid>}; `echo` -> its payload;
// anything else -> error `unknown_action`. It answers heartbeats, stops on
// `Shutdown`, and exits when its connection to corral closes.

"use strict";

const net = require("node:net");

const PROTOCOL_VERSION = 1;
const DEFAULT_MAX_FRAME = 8 * 1024 * 1024;
const ZERO_TRACE = {
  trace_id: new Array(16).fill(0),
  span_id: 0,
  sampling_decision: "Unsampled",
};

function log(line) {
  process.stderr.write(`corral plugin: ${line}\n`);
}

function fail(line) {
  log(line);
  process.exit(1);
}

function env(name) {
  const value = process.env[name];
  if (value === undefined) {
    fail(
      `environment variable ${name} is not set: this program is a corral plugin; ` +
        "run it from a fleet config with `corral up`",
    );
  }
  return value;
}

const name = env("CORRAL_PLUGIN_NAME");
const socketPath = env("CORRAL_PLUGIN_SOCKET");
const secret = env("CORRAL_PLUGIN_SECRET");
const codec = env("CORRAL_PLUGIN_CODEC");
if (codec !== "json") {
  fail(`this plugin speaks the json codec, not ${codec}; set codec = "json"`);
}
const version = process.env.CORRAL_PROTOCOL_VERSION;
if (version !== undefined && Number(version) !== PROTOCOL_VERSION) {
  fail(`corral speaks protocol version ${version}; this plugin speaks version ${PROTOCOL_VERSION}`);
}
const maxFrame = Number(process.env.CORRAL_MAX_FRAME || DEFAULT_MAX_FRAME);
// Child processes of this plugin have no business with the secret.
delete process.env.CORRAL_PLUGIN_SECRET;

// One connection: frames in (as parsed JSON, through `next()`), frames out.
class Connection {
  constructor(what) {
    this.what = what;
    this.buffer = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.closed = false;
    this.socket = net.createConnection(socketPath);
    this.socket.on("data", (chunk) => this.onData(chunk));
    this.socket.on("error", (err) => {
      log(`${what} connection failed: ${err.message}`);
      this.close();
    });
    this.socket.on("close", () => this.close());
  }

  onData(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length > maxFrame) {
        log(`${this.what} connection: a frame of ${length} bytes is over the ${maxFrame} byte maximum`);
        this.socket.destroy();
        this.close();
        return;
      }
      if (this.buffer.length < 4 + length) {
        return;
      }
      const body = this.buffer.subarray(4, 4 + length).toString("utf8");
      this.buffer = this.buffer.subarray(4 + length);
      let frame;
      try {
        frame = JSON.parse(body);
      } catch (err) {
        log(`${this.what} connection: a frame is not JSON: ${err.message}`);
        this.socket.destroy();
        this.close();
        return;
      }
      this.push(frame);
    }
  }

  push(frame) {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(frame);
    } else {
      this.frames.push(frame);
    }
  }

  close() {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      waiter(null);
    }
  }

  // The next frame, or null once the connection is closed.
  next() {
    if (this.frames.length > 0) {
      return Promise.resolve(this.frames.shift());
    }
    if (this.closed) {
      return Promise.resolve(null);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(message) {
    const body = Buffer.from(JSON.stringify(message), "utf8");
    if (body.length > maxFrame) {
      throw new Error(`a frame of ${body.length} bytes is over the ${maxFrame} byte maximum`);
    }
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    // One write per frame: Node queues writes in order, so frames never interleave.
    this.socket.write(Buffer.concat([head, body]));
  }

  async hello(role) {
    this.send({ protocol_version: PROTOCOL_VERSION, role: { [role]: { name, secret } } });
    const reply = await this.next();
    if (reply && reply.Welcome) {
      if (reply.Welcome.protocol_version !== PROTOCOL_VERSION) {
        fail(`corral speaks protocol version ${reply.Welcome.protocol_version}; this plugin speaks ${PROTOCOL_VERSION}`);
      }
      return;
    }
    const why = reply && reply.Refused ? reply.Refused.reason : "the connection closed";
    fail(`${this.what} handshake refused: ${why}`);
  }
}

class PluginError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const actions = {
  ping: () => ({ pong: true, pid: process.pid }),
  echo: (payload) => payload,
};

function handle(action, payload) {
  const fn = Object.prototype.hasOwnProperty.call(actions, action) ? actions[action] : undefined;
  if (!fn) {
    throw new PluginError("unknown_action", `no action named \`${action}\``);
  }
  return fn(payload);
}

// Runs fn and wraps its outcome as a Result: {"Ok": value} or {"Err": ErrorReply}.
function result(fn) {
  try {
    const value = fn();
    return { Ok: value === undefined ? null : value };
  } catch (err) {
    if (err instanceof PluginError) {
      return { Err: { code: err.code, message: err.message } };
    }
    return { Err: { code: "internal", message: `${err.name}: ${err.message}` } };
  }
}

async function main() {
  const conn = new Connection("plugin");
  await conn.hello("Plugin");
  // The bus connection must be welcomed before `Load` is answered. This
  // plugin never publishes or subscribes, but keeps it open as an SDK would.
  const bus = new Connection("bus");
  await bus.hello("Bus");

  const respond = (id, method, value) =>
    conn.send({ request_id: id, message: { Ok: { [method]: value } } });

  for (;;) {
    const frame = await conn.next();
    if (frame === null) {
      break;
    }
    const request = frame.Request;
    if (!request) {
      continue; // a Cancel: every action here answers at once, so nothing to stop
    }
    const id = request.id;
    const [method] = Object.keys(request.message);
    const args = request.message[method];
    switch (method) {
      case "Ping":
        respond(id, "Ping", args.seq);
        break;
      case "Load":
      case "Reload":
        // args.config is the plugin's config table; this plugin takes none.
        respond(id, method, { Ok: null });
        break;
      case "Handle": {
        let reply = result(() => handle(args.action, args.payload));
        try {
          respond(id, "Handle", reply);
        } catch (err) {
          reply = { Err: { code: "internal", message: `reply not sent: ${err.message}` } };
          respond(id, "Handle", reply);
        }
        break;
      }
      case "Deliver":
        // No subscriptions of its own; answer (after "handling") all the same.
        respond(id, "Deliver", null);
        break;
      case "Shutdown":
        respond(id, "Shutdown", null);
        // corral closes the connection next, which ends the loop.
        break;
      default:
        log(`unknown method ${method}`);
        conn.send({ request_id: id, message: { Err: { kind: 16, detail: `this plugin does not implement \`${method}\`` } } });
    }
  }
  process.exit(0);
}

main().catch((err) => fail(`failed: ${err.stack || err}`));

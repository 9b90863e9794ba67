// A JSON-RPC 2.0 WebSocket client for browsers: the counterpart of channels_rpc/client.py.
//
//   import { RpcClient, RpcError } from "/static/channels_rpc/client.js";
//   const rpc = await new RpcClient(`ws://${location.host}/ws/rpc/`).connect();
//   await rpc.call("add", [1, 2]);                               // 3
//   rpc.notify("log", { message: "hi" });
//   await rpc.batch([["add", [1, 2]], ["nope"]]);                // [3, RpcError]
//   const off = rpc.on("topic.message", (params) => console.log(params));
//   for await (const note of rpc.notifications()) { ... }        // every notification
//
// An error answer rejects with RpcError (code, message, data). Aborting a call's `signal`, or
// its `timeout` (milliseconds) passing, sends `rpc.cancel` and rejects at once; the server's
// -32800 answer, which follows, is dispatched as a "cancelled" event. When the connection drops,
// calls already sent reject with ConnectionLost and the client reconnects with backoff (unless
// `reconnect: false`); calls made meanwhile wait for the new connection. Events: "open" (on
// every connection, the place to re-subscribe), "close", "statechange" (see `state`), "cancelled".

export const REQUEST_CANCELLED = -32800;

export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
}

// The call may or may not have run: its answer, if any, was lost with the connection.
export class ConnectionLost extends Error {
  constructor(message = "the connection dropped") {
    super(message);
    this.name = "ConnectionLost";
  }
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => {}); // a rejection nobody waits for is not worth reporting
  return { promise, resolve, reject };
}

function request(method, params, id) {
  const message = { jsonrpc: "2.0", method };
  if (params !== undefined && params !== null) message.params = params;
  if (id !== undefined) message.id = id;
  return message;
}

function guarded(what, fn, ...args) {
  try {
    fn(...args);
  } catch (error) {
    console.error(`channels_rpc: ${what} failed`, error); // one bad handler must not stop the rest
  }
}

export class RpcClient extends EventTarget {
  #ws = null;
  #ready = deferred(); // resolved while a connection is open (state "open")
  #calls = new Map(); // id -> {resolve, reject, onProgress, sent}
  #handlers = new Map(); // method, or "*" for every one -> Set of handlers
  #nextId = 1;
  #delay;
  #retryTimer;
  #closing = false;

  constructor(
    url,
    { reconnect = true, backoff = [200, 10000], timeout = null, protocols = ["jsonrpc"] } = {},
  ) {
    super();
    Object.assign(this, { url, reconnect, backoff, timeout, protocols });
    this.#delay = backoff[0];
    this.state = "idle"; // then "connecting", "open", "reconnecting", "closed"
  }

  /** Open the connection. Rejects if this first attempt fails: there is no retry until one
   * connection succeeded, so that a wrong URL shows at once. */
  connect() {
    this.#closing = false;
    if (this.#ws !== null) return this.#ready.promise.then(() => this);
    if (this.state === "closed") this.#ready = deferred();
    const first = deferred();
    this.#open(first);
    return first.promise;
  }

  close() {
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    const wasOpen = this.state === "open";
    this.#ws?.close(1000);
    this.#ws = null;
    this.#stop(new ConnectionLost("the client was closed"));
    if (wasOpen) this.#emit("close", { code: 1000, reason: "", reconnecting: false });
  }

  #open(first = null) {
    const ws = new WebSocket(this.url, this.protocols);
    let opened = false;
    this.#ws = ws;
    this.#setState(first ? "connecting" : "reconnecting");
    ws.onopen = () => {
      opened = true;
      this.#delay = this.backoff[0];
      this.#setState("open");
      this.#ready.resolve();
      first?.resolve(this);
      this.#emit("open");
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => {
      if (this.#ws !== ws) return; // close() dealt with it
      const retry = this.reconnect && !this.#closing && (opened || !first);
      this.#failSent(new ConnectionLost());
      if (retry) {
        if (opened) this.#ready = deferred();
        this.#setState("reconnecting");
        // Jitter, so that a restarted front-end is not met by every page at the same instant.
        const wait = this.#delay * (0.5 + Math.random());
        this.#delay = Math.min(this.#delay * 2, this.backoff[1]);
        this.#retryTimer = setTimeout(() => this.#open(), wait);
      } else {
        this.#ws = null;
        const error = new ConnectionLost(opened ? undefined : `could not connect to ${this.url}`);
        this.#stop(error);
        if (!opened) first?.reject(error);
      }
      const { code, reason } = event;
      if (opened) this.#emit("close", { code, reason, reconnecting: retry });
    };
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state) {
    this.state = state;
    this.#emit("statechange", state);
  }

  #stop(error) {
    const ready = this.#ready;
    this.#ready = deferred();
    this.#ready.reject(error);
    ready.reject(error);
    for (const call of [...this.#calls.values()]) call.reject(error);
    this.#setState("closed");
  }

  #failSent(error) {
    // Calls not yet sent stay queued for the next connection: they cannot have run.
    for (const call of [...this.#calls.values()]) if (call.sent) call.reject(error);
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.error("channels_rpc: ignoring a frame that is not JSON", data);
      return;
    }
    for (const item of Array.isArray(message) ? message : [message]) {
      if (typeof item?.method === "string") this.#notified(item);
      else this.#answered(item);
    }
  }

  #notified(item) {
    const call = item.method === "rpc.progress" && this.#calls.get(item.params?.id);
    if (call?.onProgress) guarded("onProgress", call.onProgress, item.params);
    for (const key of [item.method, "*"]) {
      for (const handler of this.#handlers.get(key) ?? []) {
        guarded(`a handler of ${item.method}`, handler, item.params, item);
      }
    }
  }

  #answered(item) {
    const error = item?.error && new RpcError(item.error.code, item.error.message, item.error.data);
    const call = this.#calls.get(item?.id);
    if (call && error) call.reject(error);
    else if (call) call.resolve(item.result);
    else if (error?.code === REQUEST_CANCELLED) {
      // The promise settled when its caller gave up; this is the server confirming it.
      this.#emit("cancelled", { id: item.id, error });
    } else if (error && item.id === null) console.warn("channels_rpc: the server said", error);
  }

  /** Resolves with the result; rejects with RpcError, ConnectionLost, the abort reason or a
   * TimeoutError. `onProgress(params)` gets the call's rpc.progress notifications. */
  call(method, params, { signal, timeout = this.timeout, onProgress } = {}) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      let timer;
      const call = { onProgress, sent: false };
      const settle = (fn) => (value) => {
        if (this.#calls.get(id) !== call) return;
        this.#calls.delete(id);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        fn(value);
      };
      call.resolve = settle(resolve);
      call.reject = settle(reject);
      const giveUp = (reason) => {
        const sent = call.sent;
        call.reject(reason);
        // Otherwise the method runs on, holding a worker slot, for an answer nobody reads.
        if (sent) this.notify("rpc.cancel", { id }).catch(() => {});
      };
      const onAbort = () =>
        giveUp(signal.reason ?? new DOMException("the call was aborted", "AbortError"));
      this.#calls.set(id, call);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeout != null) {
        const error = new DOMException(`${method}: no answer within ${timeout} ms`, "TimeoutError");
        timer = setTimeout(() => giveUp(error), timeout);
      }
      const claim = () => this.#calls.get(id) === call && (call.sent = true);
      this.#send(request(method, params, id), claim).catch(call.reject);
    });
  }

  /** Send a notification (no answer comes back); resolves once it is on its way. */
  async notify(method, params) {
    await this.#send(request(method, params));
  }

  /** Several calls in one frame: results in order, an RpcError in place of each error. */
  batch(calls) {
    if (calls.length === 0) return Promise.resolve([]); // the server refuses an empty batch
    const frame = [];
    const answers = calls.map(([method, params]) => {
      const id = this.#nextId++;
      frame.push(request(method, params, id));
      const answer = new Promise((resolve, reject) => {
        const settle = (fn) => (value) => this.#calls.delete(id) && fn(value);
        this.#calls.set(id, { resolve: settle(resolve), reject: settle(reject), sent: false });
      });
      return answer.catch((error) => {
        if (error instanceof RpcError) return error;
        throw error;
      });
    });
    const pending = () => frame.map((item) => this.#calls.get(item.id)).filter(Boolean);
    const claim = () => pending().every((call) => (call.sent = true));
    this.#send(frame, claim).catch((error) => pending().forEach((call) => call.reject(error)));
    return Promise.all(answers);
  }

  // `claim()` runs just before sending: false drops the message (its caller gave up meanwhile).
  async #send(message, claim = () => true) {
    while (this.state !== "open") await this.#ready.promise;
    if (claim()) this.#ws.send(JSON.stringify(message));
  }

  /** Call `handler(params, message)` for every notification `method` ("*": all of them);
   * returns the function that stops it. */
  on(method, handler) {
    if (!this.#handlers.has(method)) this.#handlers.set(method, new Set());
    this.#handlers.get(method).add(handler);
    return () => this.#handlers.get(method)?.delete(handler);
  }

  /** Every notification as `{method, params}`, collected from this call on (not from the first
   * iteration): `for await (const note of rpc.notifications({ signal }))`. */
  notifications({ signal } = {}) {
    const queue = [];
    let wake = () => {};
    let done = false;
    const off = this.on("*", (_params, message) => (queue.push(message), wake()));
    const stop = () => ((done = true), off(), wake());
    signal?.addEventListener("abort", stop, { once: true });
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        while (queue.length === 0 && !done) await new Promise((resolve) => (wake = resolve));
        return queue.length ? { value: queue.shift(), done: false } : { value: undefined, done };
      },
      async return() {
        stop();
        return { value: undefined, done: true };
      },
    };
  }
}

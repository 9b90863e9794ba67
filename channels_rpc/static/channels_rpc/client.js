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
// -32800 answer, which follows, is dispatched as a "cancelled" event.
//
// When the connection drops, the client reconnects with backoff (unless `reconnect: false`; at
// once after a close 4012, a front-end restarting); calls made meanwhile wait for the new
// connection. Each connection first opens a session (docs/reference/sessions.md; `sessions: false` to do
// without), and a new connection resumes it, on whichever front-end it reaches: calls already
// sent stay pending and complete, notifications pushed meanwhile arrive, each once and in order,
// and the groups are kept; a call the resumed session does not have (its socket went before the
// server knew of it) rejects with an RpcError -32015. A server without sessions (the in-memory
// layer) answers -32601 and
// the client goes on without them: calls already sent then reject with ConnectionLost when the
// connection drops. `sessionId` is the session held (null: none).
//
// Events: "open" (on every connection, detail {resumed, session}: the place to re-subscribe,
// unless resumed), "close" (detail {code, reason, reconnecting, session}), "statechange" (see
// `state`), "cancelled", "resume" (detail: the server's answer, {session, window, running}) and
// "sessionlost" (detail {reason}: the calls of the session rejected with an RpcError -32015, a
// new session opens).

export const REQUEST_CANCELLED = -32800;
export const SESSION_NOT_FOUND = -32015;
const METHOD_NOT_FOUND = -32601;
// A client's close 1000 ends its session at once (and cancels its calls); any other keeps it.
const CLOSE_NORMAL = 1000;
// A front-end that stops closes its sockets so: reconnect (to another one) and resume.
const CLOSE_RESTARTING = 4012;
// The session was resumed on another connection (another tab or client holding its id): it is
// theirs now, and this client starts a new one rather than take it back.
const CLOSE_TAKEN_OVER = 4013;
// Milliseconds between two rpc.ack while frames arrive.
const ACK_INTERVAL = 1000;

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

// The error of a call lost with its session: -32015, `data.reason` why.
function lostError(reason, what = `the session was lost (${reason})`) {
  const message = `${what}: the call may or may not have run`;
  return new RpcError(SESSION_NOT_FOUND, message, { reason });
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
  #calls = new Map(); // id -> {resolve, reject, onProgress, sent, internal}
  #handlers = new Map(); // method, or "*" for every one -> Set of handlers
  #nextId = 1; // never reset: a session's ids must not repeat across its connections
  #delay;
  #retryTimer;
  #closing = false;
  #session = null; // {id, window} of the session held
  #sessionless = false; // the server has no sessions: not asked again
  #seen = 0; // the highest seq received in the session
  #acked = 0;
  #ackedAt = -Infinity;
  #ackTimer;

  constructor(
    url,
    {
      reconnect = true,
      backoff = [200, 10000],
      timeout = null,
      protocols = ["jsonrpc"],
      sessions = true,
    } = {},
  ) {
    super();
    Object.assign(this, { url, reconnect, backoff, timeout, protocols, sessions });
    this.#delay = backoff[0];
    this.state = "idle"; // then "connecting", "open", "reconnecting", "closed"
  }

  /** The id of the session held, or null. */
  get sessionId() {
    return this.#session?.id ?? null;
  }

  /** How long (seconds) the server keeps the session after its connection drops, or null. */
  get sessionWindow() {
    return this.#session?.window ?? null;
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

  /** Close with 1000: the server ends the session at once, and cancels its calls. */
  close() {
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    const wasOpen = this.state === "open";
    this.#ws?.close(CLOSE_NORMAL);
    this.#ws = null;
    this.#stop(new ConnectionLost("the client was closed"));
    if (wasOpen) {
      this.#emit("close", { code: CLOSE_NORMAL, reason: "", reconnecting: false, session: null });
    }
  }

  #open(first = null) {
    const ws = new WebSocket(this.url, this.protocols);
    let opened = false; // and the session opened or resumed: calls may go
    this.#ws = ws;
    this.#setState(first ? "connecting" : "reconnecting");
    ws.onopen = () => {
      const ready = (resumed) => {
        if (this.#ws !== ws || ws.readyState !== WebSocket.OPEN) return;
        opened = true;
        this.#delay = this.backoff[0];
        this.#setState("open");
        this.#ready.resolve();
        first?.resolve(this);
        this.#emit("open", { resumed, session: this.sessionId });
        if (this.#seen > this.#acked) this.#scheduleAck(); // frames the resume delivered
      };
      // A rejection means the socket went meanwhile: its onclose deals with that.
      this.#handshake(ws).then(ready, () => {});
    };
    ws.onmessage = (event) => this.#ws === ws && this.#receive(event.data);
    ws.onclose = (event) => {
      if (this.#ws !== ws) return; // close() dealt with it
      const retry = this.reconnect && !this.#closing && (opened || !first);
      if (event.code === CLOSE_TAKEN_OVER && this.#session !== null) this.#lose("taken over");
      this.#dropped(retry);
      if (retry) {
        if (opened) this.#ready = deferred();
        this.#setState("reconnecting");
        this.#retryTimer = setTimeout(() => this.#open(), this.#wait(event.code));
      } else {
        this.#ws = null;
        const error = new ConnectionLost(opened ? undefined : `could not connect to ${this.url}`);
        this.#stop(error);
        if (!opened) first?.reject(error);
      }
      const { code, reason } = event;
      const session = this.sessionId;
      if (opened) this.#emit("close", { code, reason, reconnecting: retry, session });
    };
  }

  #wait(code) {
    // A front-end that stops hands its sessions over: another one can take them now.
    if (code === CLOSE_RESTARTING) return 0;
    // Jitter, so that a restarted front-end is not met by every page at the same instant.
    const wait = this.#delay * (0.5 + Math.random());
    this.#delay = Math.min(this.#delay * 2, this.backoff[1]);
    return wait;
  }

  // The socket went. Calls not yet sent stay queued for the next connection: they cannot have
  // run. Calls sent stay pending if the session is to be resumed (their answers come then);
  // else they fail: they may or may not have run.
  #dropped(retry) {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const keep = retry && this.#session !== null;
    const error = new ConnectionLost();
    for (const call of [...this.#calls.values()]) {
      if (call.internal || (call.sent && !keep)) call.reject(error);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Sessions: what a connection does before any call, resume the session held or open one

  /** Resolves with true if the session was resumed; rejects if the socket went meanwhile. */
  async #handshake(ws) {
    if (!this.sessions || this.#sessionless) return false;
    if (this.#session !== null && (await this.#resume(ws))) return true;
    if (!this.#sessionless) await this.#startSession(ws);
    return false;
  }

  async #startSession(ws) {
    this.#seen = this.#acked = 0; // a session numbers its frames from 1
    try {
      const { session, window } = await this.#internal(ws, "rpc.session");
      this.#session = { id: session, window };
    } catch (error) {
      if (!(error instanceof RpcError)) throw error;
      // The in-memory layer has none: the client works as it did before sessions.
      if (error.code === METHOD_NOT_FOUND) this.#sessionless = true;
      else console.warn("channels_rpc: going on without a session", error);
    }
  }

  async #resume(ws) {
    let result;
    try {
      const params = { session: this.#session.id, seq: this.#seen };
      result = await this.#internal(ws, "rpc.resume", params);
    } catch (error) {
      if (!(error instanceof RpcError)) throw error;
      if (error.code === METHOD_NOT_FOUND) this.#sessionless = true;
      this.#lose(error.data?.reason ?? error.message);
      return false;
    }
    // The frames kept for the session came first, each handled in turn: a call still waiting
    // now, and not running, was lost (its socket went before the server knew of it: as it was
    // sent, or with a front-end that died).
    const running = new Set(result.running);
    const unheard = lostError("not received", "the resumed session did not have the call");
    for (const [id, call] of [...this.#calls]) {
      if (call.sent && !call.internal && !running.has(id)) call.reject(unheard);
    }
    this.#session.window = result.window ?? this.#session.window;
    this.#emit("resume", result);
    return true;
  }

  // The server does not know the session (its window ended, its buffer overflowed, Redis lost
  // it, ...): its calls are lost with it, and may or may not have run.
  #lose(reason) {
    this.#session = null;
    const error = lostError(reason);
    for (const call of [...this.#calls.values()]) {
      if (call.sent && !call.internal) call.reject(error);
    }
    this.#emit("sessionlost", { reason });
  }

  // A call of the client's own, written on `ws` at once (the user's wait for state "open").
  #internal(ws, method, params) {
    const id = this.#nextId++;
    const { promise, resolve, reject } = deferred();
    const settle = (fn) => (value) => this.#calls.delete(id) && fn(value);
    const call = { resolve: settle(resolve), reject: settle(reject), sent: true, internal: true };
    this.#calls.set(id, call);
    ws.send(JSON.stringify(request(method, params, id)));
    return promise;
  }

  // False for a frame received already: a resume may bring again what was on its way. The
  // elements of a batch's array each carry a seq, the same one: `before` is the frame's start.
  #fresh(item, before) {
    const seq = item?.seq;
    if (typeof seq !== "number") return true; // no session, or the resume's own answer
    if (seq <= before) return false;
    this.#seen = Math.max(this.#seen, seq);
    this.#scheduleAck();
    return true;
  }

  // Tell the server what arrived, so that it forgets it: at most once per ACK_INTERVAL.
  #scheduleAck() {
    if (this.#ackTimer !== undefined) return;
    const wait = Math.max(0, this.#ackedAt + ACK_INTERVAL - performance.now());
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = undefined;
      // Never before the resume, which must be the first call of a connection ("open" calls
      // this again).
      if (this.state !== "open" || this.#seen <= this.#acked) return;
      this.#ackedAt = performance.now();
      this.#acked = this.#seen;
      this.#ws.send(JSON.stringify(request("rpc.ack", { seq: this.#seen })));
    }, wait);
  }

  // ------------------------------------------------------------------------------------------

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state) {
    this.state = state;
    this.#emit("statechange", state);
  }

  #stop(error) {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#session = null;
    const ready = this.#ready;
    this.#ready = deferred();
    this.#ready.reject(error);
    ready.reject(error);
    for (const call of [...this.#calls.values()]) call.reject(error);
    this.#setState("closed");
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.error("channels_rpc: ignoring a frame that is not JSON", data);
      return;
    }
    const before = this.#seen;
    for (const item of Array.isArray(message) ? message : [message]) {
      if (!this.#fresh(item, before)) continue;
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

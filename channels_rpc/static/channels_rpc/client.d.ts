// Type declarations for client.js, the JSON-RPC 2.0 WebSocket client (see the comment at the
// top of client.js for how it behaves). TypeScript picks this file up when it resolves an
// import of "./client.js" next to it. `manage.py rpcschema --typescript api.ts` generates a typed
// API over RpcClient: docs/guides/typescript.md.

/** The code of the answer to a cancelled call (after `rpc.cancel`). */
export declare const REQUEST_CANCELLED: -32800;
/** The code of a call lost with its session: it may or may not have run. */
export declare const SESSION_NOT_FOUND: -32015;

/** A JSON-RPC error answer: what a call rejects with when the server answered with an error. */
export declare class RpcError<Data = unknown> extends Error {
  constructor(code: number, message: string, data?: Data);
  /** The JSON-RPC error code (-32602: invalid params, -32800: cancelled, ...). */
  code: number;
  /** The error's `data`, if the server sent any. */
  data: Data | undefined;
}

/** The connection dropped or the client was closed: the call may or may not have run. */
export declare class ConnectionLost extends Error {
  constructor(message?: string);
}

/** A call's params: an array (by position) or an object (by name). */
export type Params = readonly unknown[] | object;

/** The params of an `rpc.progress` notification (`ctx.progress()` on the server). */
export interface ProgressParams {
  /** The id of the call it is about. */
  id: string | number | null;
  progress: number;
  total?: number;
  message?: string;
}

export interface CallOptions {
  /** Aborting it sends `rpc.cancel` and rejects the call with the abort reason. */
  signal?: AbortSignal;
  /** Milliseconds before the call is given up (a TimeoutError) and cancelled; null: none. */
  timeout?: number | null;
  /** Gets the call's `rpc.progress` notifications, before its answer. */
  onProgress?: (params: ProgressParams) => void;
}

export interface RpcClientOptions {
  /** Reconnect with backoff when the connection drops (default true). */
  reconnect?: boolean;
  /** [first, longest] wait in milliseconds between two connection attempts. */
  backoff?: readonly [number, number];
  /** The default timeout of calls, in milliseconds (default null: none). */
  timeout?: number | null;
  /** The WebSocket subprotocols offered (default ["jsonrpc"]). */
  protocols?: string | string[];
  /** Open (and resume) a session on each connection (default true). */
  sessions?: boolean;
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A notification as received: what a handler's second argument and `notifications()` give. */
export interface NotificationMessage<P = unknown> {
  jsonrpc: "2.0";
  method: string;
  params?: P;
  /** Its place in the session's frames (with a session only). */
  seq?: number;
}

/** The function `on()` returns: stops the handler. */
export type Unsubscribe = () => void;

/** A call of a batch: [method, params?]. */
export type BatchCall = readonly [method: string, params?: Params | null];

/** The server's answer to `rpc.resume`. */
export interface ResumeDetail {
  session: string;
  window: number;
  /** The ids of the session's calls still running. */
  running: Array<string | number>;
}

/** The `detail` of each event an RpcClient dispatches. */
export interface RpcClientEventDetails {
  open: { resumed: boolean; session: string | null };
  close: { code: number; reason: string; reconnecting: boolean; session: string | null };
  statechange: ClientState;
  cancelled: { id: string | number; error: RpcError };
  resume: ResumeDetail;
  sessionlost: { reason: string };
}

export type RpcClientEventMap = {
  [K in keyof RpcClientEventDetails]: CustomEvent<RpcClientEventDetails[K]>;
};

export declare class RpcClient extends EventTarget {
  constructor(url: string | URL, options?: RpcClientOptions);
  url: string | URL;
  reconnect: boolean;
  backoff: readonly [number, number];
  timeout: number | null;
  protocols: string | string[];
  sessions: boolean;
  /** "idle", then "connecting", "open", "reconnecting", "closed". */
  state: ClientState;
  /** The id of the session held, or null. */
  readonly sessionId: string | null;
  /** How long (seconds) the server keeps the session after its connection drops, or null. */
  readonly sessionWindow: number | null;

  /** Open the connection; resolves with the client. Rejects if this first attempt fails. */
  connect(): Promise<this>;
  /** Close with 1000: the server ends the session at once, and cancels its calls. */
  close(): void;
  /** Resolves with the result; rejects with RpcError, ConnectionLost, the abort reason or a
   * TimeoutError. */
  call<Result = unknown>(
    method: string,
    params?: Params | null,
    options?: CallOptions,
  ): Promise<Result>;
  /** Send a notification (no answer comes back); resolves once it is on its way. */
  notify(method: string, params?: Params | null): Promise<void>;
  /** Several calls in one frame: results in order, an RpcError in place of each error. */
  batch(calls: readonly BatchCall[]): Promise<unknown[]>;
  /** Call `handler(params, message)` for every notification `method` ("*": all of them). */
  on<P = unknown>(
    method: string,
    handler: (params: P, message: NotificationMessage<P>) => void,
  ): Unsubscribe;
  /** Every notification, collected from this call on: `for await (const note of ...)`. */
  notifications(options?: { signal?: AbortSignal }): AsyncIterableIterator<NotificationMessage>;

  addEventListener<K extends keyof RpcClientEventMap>(
    type: K,
    listener: (this: RpcClient, event: RpcClientEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof RpcClientEventMap>(
    type: K,
    listener: (this: RpcClient, event: RpcClientEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

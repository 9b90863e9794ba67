// Uses every part of client.d.ts as client.js's own header comment does: compiled with
// `tsc --strict --noEmit` (tests/integration/test_typescript_client.py), never run.

import {
  ConnectionLost,
  REQUEST_CANCELLED,
  RpcClient,
  RpcError,
  SESSION_NOT_FOUND,
  type CallOptions,
  type ClientState,
  type NotificationMessage,
  type Unsubscribe,
} from "./client.js";

export async function usage(): Promise<void> {
  const rpc = await new RpcClient("ws://localhost/ws/rpc/", {
    reconnect: true,
    backoff: [200, 10000],
    timeout: null,
    protocols: ["jsonrpc"],
    sessions: true,
  }).connect();
  const state: ClientState = rpc.state;
  const session: string | null = rpc.sessionId;
  const window: number | null = rpc.sessionWindow;
  const three = await rpc.call<number>("add", [1, 2]);
  const options: CallOptions = {
    signal: AbortSignal.timeout(1000),
    timeout: 500,
    onProgress: ({ id, progress, total, message }) => [id, progress, total, message],
  };
  const anything: unknown = await rpc.call("reports.build", { steps: 3 }, options);
  await rpc.notify("log", { message: "hi" });
  await rpc.notify("ping");
  for (const answer of await rpc.batch([["add", [1, 2]], ["nope"]])) {
    if (answer instanceof RpcError) void answer.code;
  }
  const off: Unsubscribe = rpc.on<{ topic: string }>("topic.message", (params, message) => {
    const method: string = message.method;
    void [params.topic, method, message.seq];
  });
  off();
  rpc.on("*", (params: unknown, message: NotificationMessage) => void [params, message.params]);
  const controller = new AbortController();
  for await (const note of rpc.notifications({ signal: controller.signal })) void note.method;
  rpc.addEventListener("open", (event) => void [event.detail.resumed, event.detail.session]);
  rpc.addEventListener("close", ({ detail }) => void [detail.code, detail.reason, detail.reconnecting]);
  rpc.addEventListener("statechange", (event) => void (event.detail === "open"));
  rpc.addEventListener("cancelled", ({ detail }) => void (detail.error.code === REQUEST_CANCELLED));
  rpc.addEventListener("resume", ({ detail }) => void [detail.session, detail.window, detail.running]);
  rpc.addEventListener("sessionlost", ({ detail }) => void detail.reason.length);
  rpc.addEventListener("custom", (event: Event) => void event.type);
  rpc.close();
  const lost = new RpcError<{ reason: string }>(SESSION_NOT_FOUND, "lost", { reason: "gone" });
  const reason: string | undefined = lost.data?.reason;
  const dropped: Error = new ConnectionLost();
  void [state, session, window, three + 1, anything, reason, dropped];

  // @ts-expect-error: params are an array or an object
  void rpc.call("add", "1, 2");
  // @ts-expect-error: no such field in the "open" event
  rpc.addEventListener("open", (event) => event.detail.nope);
  // @ts-expect-error: the state is one of five
  const wrong: "gone" = rpc.state;
  void wrong;
}

// Drives the reference project through the client `manage.py rpcschema --typescript` generated
// (tests/integration/test_typescript_client.py): `node main.js WS_URL` prints what it got as one
// JSON line. The functions never called are checked by tsc only: each @ts-expect-error must
// meet an error, so the generated types are known to refuse what the server would.

import { RpcClient, RpcError, type ProgressParams } from "./client.js";
import { createApi, type AddParams, type Api, type Report } from "./api.js";
import type { TopicMessageNotification } from "./api.js";

declare const process: { argv: string[] };

function typeChecks(api: Api): void {
  // @ts-expect-error: steps is a number
  void api.reports.build({ steps: "3" });
  // @ts-expect-error: format is "text" or "html"
  void api.reports.build({ format: "pdf" });
  // @ts-expect-error: b is required
  void api.add({ a: 1 });
  // @ts-expect-error: a Point has a y
  void api.geometry.distance({ a: { x: 0 }, b: { x: 3, y: 4 } });
  // @ts-expect-error: there is no such method
  void api.nope();
  // @ts-expect-error: no such push
  api.on("topic.nope", () => {});
  api.on("topic.message", (params) => {
    const topic: string = params.topic;
    // @ts-expect-error: worker_pid may be missing
    const pid: number = params.worker_pid;
    void [topic, pid];
  });
  api.on("rpc.progress", (params) => params.progress.toFixed());
}
void typeChecks;

const client = await new RpcClient(process.argv[2], { reconnect: false }).connect();
const api = createApi(client);
try {
  const sum: number = await api.add({ a: 2, b: 3 });

  const progress: ProgressParams[] = [];
  const report: Report = await api.reports.build(
    { steps: 3, format: "html" },
    { onProgress: (params) => progress.push(params) },
  );

  const distance: number = await api.geometry.distance({ a: { x: 0, y: 0 }, b: { x: 3, y: 4 } });

  const pushed = new Promise<TopicMessageNotification>((resolve) => {
    const off = api.on("topic.message", (params) => (off(), resolve(params)));
  });
  await api.subscribe({ topic: "typescript" });
  await api.publish({ topic: "typescript", message: { hello: "world" } });
  const push = await pushed;

  const logged = new Promise<unknown>((resolve) => {
    const off = api.on("logged", (params) => (off(), resolve(params)));
  });
  await api.log({ message: "from TypeScript" });

  let error: { code: number; data: unknown } | null = null;
  try {
    await api.add({ a: 1 } as AddParams); // b is missing: the server refuses it
  } catch (caught) {
    if (!(caught instanceof RpcError)) throw caught;
    error = { code: caught.code, data: caught.data };
  }

  const results = {
    sum,
    report,
    progress: progress.map(({ progress, total, message }) => [progress, total, message]),
    distance,
    push: { topic: push.topic, message: push.message },
    logged: await logged,
    error,
  };
  console.log(JSON.stringify(results));
} finally {
  client.close();
}

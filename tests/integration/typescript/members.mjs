// Lists what client.d.ts declares (exported values, each class's members, read with the
// TypeScript compiler's API) and what client.js has at run time, as one JSON line:
// node members.mjs TYPESCRIPT_JS CLIENT_D_TS CLIENT_JS

import { pathToFileURL } from "node:url";

const [typescript, declarations, implementation] = process.argv.slice(2);
const { default: ts } = await import(pathToFileURL(typescript).href);
const client = await import(pathToFileURL(implementation).href);

const program = ts.createProgram([declarations], { noEmit: true });
const checker = program.getTypeChecker();
const source = program.getSourceFile(declarations);
const exported = checker.getExportsOfModule(checker.getSymbolAtLocation(source));
const declared = { values: [], members: {} };
for (const symbol of exported) {
  if (symbol.flags & ts.SymbolFlags.Value) declared.values.push(symbol.name);
  if (symbol.flags & ts.SymbolFlags.Class) {
    const names = symbol.declarations[0].members
      .filter((member) => member.name && !ts.isConstructorDeclaration(member))
      .map((member) => member.name.getText(source));
    declared.members[symbol.name] = [...new Set(names)].sort();
  }
}
declared.values.sort();

// Instances show the fields a constructor sets; prototypes the methods and accessors.
const instances = {
  RpcClient: new client.RpcClient("ws://127.0.0.1:9/"),
  RpcError: new client.RpcError(1, "message", null),
  ConnectionLost: new client.ConnectionLost(),
};
const runtime = { values: Object.keys(client).sort(), members: {} };
for (const [name, instance] of Object.entries(instances)) {
  const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(instance));
  const names = [...methods, ...Object.keys(instance)];
  // "name" is Error's own, declared by lib.es5.d.ts.
  runtime.members[name] = [...new Set(names)].filter((n) => n !== "constructor" && n !== "name").sort();
}
console.log(JSON.stringify({ declared, runtime }));

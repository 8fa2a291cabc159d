// A warm floor child: requires one handler, then answers one JSON line per JSON line.
// Usage: node child.js CODE_DIR MODULE
const path = require("path");
const readline = require("readline");

const { handler } = require(path.join(process.argv[2], process.argv[3]));
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", async (line) => {
  const result = await handler(JSON.parse(line), {});
  process.stdout.write(JSON.stringify(result) + "\n");
});

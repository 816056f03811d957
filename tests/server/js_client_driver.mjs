// Drives clients/phoenix-client.mjs against a server for the Python test beside it: one
// JSON line per thing that happens, then exit after the given seconds.
import { PhoenixClient } from "../../clients/phoenix-client.mjs";

const [url, seconds] = process.argv.slice(2);
let tokens = 0;
const say = (o) => console.log(JSON.stringify(o));
const client = new PhoenixClient({
  url,
  channels: ["agents", "metrics"],
  getToken: async () => {
    tokens += 1; // the page's viewer token: this test runs on loopback
    const r = await fetch(`${url}/api/token`, { method: "POST" });
    return (await r.json()).token;
  },
  onEvent: (f) => say({ kind: "event", id: f.id, channel: f.channel }),
  onSnapshot: (s) => say({ kind: "snapshot", agents: (s.agents || []).length }),
  onState: (what, detail) => say({ kind: "state", what, detail, tokens }),
});
await client.start();
setTimeout(() => {
  client.stop();
  setTimeout(() => process.exit(0), 200);
}, Number(seconds) * 1000);

// A Phoenix WebSocket API client that survives what the server does to it: the
// reconnect, token, resume and snapshot rules of docs/clients.md in one small class.
// Plain ES module: runs in browsers and in Node 20+ (`node --experimental-websocket`;
// Node 22+ needs no flag). Tested against the server by tests/clients/test_js_client.py.

const BACKOFF_FIRST = 1000; // ms, doubling to BACKOFF_CAP, plus up to 25% jitter
const BACKOFF_CAP = 30000;

export class PhoenixClient {
  /**
   * @param {object} o
   * @param {string} o.url          the server, e.g. "http://127.0.0.1:8080"
   * @param {() => Promise<string>} o.getToken  a fresh JWT each time it is called
   * @param {string[]} o.channels   channels to subscribe to
   * @param {object} [o.filters]    subscribe filters
   * @param {(frame: object) => void} o.onEvent      every event, once, in order
   * @param {(snapshots: object) => void} [o.onSnapshot]  state to (re)load from
   * @param {(what: string, detail?: any) => void} [o.onState]  for logs and tests
   */
  constructor(o) {
    Object.assign(this, { filters: null, onSnapshot: () => {}, onState: () => {} }, o);
    this.last = {}; // channel -> last event id received: what `since` resumes from
    this.seen = new Set(); // the ids received lately, oldest first
    this.token = null;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
  }

  async start() {
    await this.loadSnapshot(); // state first, then events from where it was taken
    await this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }

  // The HTTP snapshot and its last_event_id: subscribe with `since` from it and no
  // event is missed or counted twice.
  async loadSnapshot() {
    this.token = this.token || (await this.getToken());
    const snapshots = {};
    let lastId = null;
    for (const name of ["experiments", "agents", "deployments", "alerts"]) {
      const channel = name;
      if (!this.channels.includes(channel)) continue;
      const r = await fetch(`${this.url}/api/v1/${name}`, {
        headers: { Authorization: `Bearer ${this.token}` },
      });
      if (r.status === 401) {
        this.token = await this.getToken();
        return this.loadSnapshot();
      }
      const body = await r.json();
      snapshots[name] = body[name];
      lastId = body.last_event_id;
    }
    if (lastId === null) {
      const r = await fetch(`${this.url}/api/sim`, {
        headers: { Authorization: `Bearer ${this.token}` },
      });
      lastId = (await r.json()).last_event_id;
    }
    this.last = {};
    if (lastId) for (const c of this.channels) this.last[c] = lastId;
    this.onSnapshot(snapshots);
    this.onState("snapshot", lastId);
  }

  async connect() {
    if (this.stopped) return;
    this.token = this.token || (await this.getToken());
    const ws = new WebSocket(
      `${this.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(this.token)}`,
    );
    this.ws = ws;
    ws.onopen = () => {
      const since = {};
      for (const c of this.channels) if (this.last[c]) since[c] = this.last[c];
      const msg = { type: "subscribe", id: "sub", channels: this.channels };
      if (this.filters) msg.filters = this.filters;
      if (Object.keys(since).length) msg.since = since;
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (m) => this.receive(JSON.parse(m.data));
    ws.onclose = (e) => this.closed(e.code);
  }

  receive(frame) {
    if (frame.type === "event") {
      if (this.seen.has(frame.id)) return; // a duplicate (the `duplicate` fault)
      this.seen.add(frame.id);
      if (this.seen.size > 1000) this.seen.delete(this.seen.values().next().value);
      this.last[frame.channel] = frame.id;
      this.onEvent(frame);
    } else if (frame.type === "response" && frame.id === "sub") {
      this.attempt = 0; // subscribed: the connection is good
      if (frame.recovered === false) {
        // The history no longer reaches back: reload the state, then resume from it.
        this.onState("not recovered");
        this.reload = true;
        this.ws.close(1000);
      } else {
        this.onState("subscribed", frame.recovered);
      }
    } else if (frame.type === "error" && frame.error.code === "UNAUTHORIZED") {
      this.token = null; // a refused or expired token: never reuse it
      this.onState("unauthorized", frame.error.details.reason);
    }
  }

  async closed(code) {
    if (this.stopped) return;
    this.onState("closed", code);
    // 4001: a fresh token is needed (the same one would be refused for ever).
    if (code === 4001) this.token = null;
    // 1001 / 1012: the server went away or restarted: its history may be gone too.
    if (code === 1001 || code === 1012 || this.reload) {
      this.reload = false;
      await this.waitBackoff();
      try {
        await this.loadSnapshot();
      } catch (e) {
        this.onState("snapshot failed", String(e));
        return this.closed(code); // the server is still down: back off again
      }
      return this.connect();
    }
    await this.waitBackoff();
    return this.connect();
  }

  waitBackoff() {
    const base = Math.min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base * (1 + Math.random() * 0.25);
    this.onState("backoff", Math.round(delay));
    return new Promise((resolve) => setTimeout(resolve, delay));
  }
}

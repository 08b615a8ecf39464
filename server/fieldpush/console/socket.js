// The console's link to the dispatch channel over the public WebSocket protocol
// (subprotocol fieldpush.v1.json; the token goes in hello, never in the URL).
// Resumes from the last dispatch offset after every reconnect; de-duplicates by id.

const FINAL = new Set([4001, 4003]); // the token is refused: signing in again is needed

export class DispatchSocket {
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers; // {welcome, event, closed, refused}
    this.offset = null;
    this.seen = new Set();
    this.delay = 500;
    this.stopped = false;
    this.welcomed = false;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`, ["fieldpush.v1.json"]);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "hello", token: this.token, device: "console", subs: { dispatch: this.offset },
      }));
    };
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = (close) => this.closed(close.code, close.reason);
  }

  receive(message) {
    if (message.type === "welcome") {
      const dispatch = message.subs && message.subs.dispatch;
      if (!dispatch || dispatch.error) {
        this.stop();
        this.handlers.refused(`this token may not watch the dispatch channel (${message.role})`);
        return;
      }
      this.welcomed = true;
      this.delay = 500;
      if (this.offset === null || dispatch.recovered) this.offset = this.offset ?? dispatch.offset;
      else this.offset = dispatch.offset;
      this.handlers.welcome(message);
    } else if (message.type === "event") {
      this.deliver(message);
    } else if (message.type === "events") {
      for (const event of message.events) this.deliver(event);
    } else if (message.type === "goaway") {
      this.handlers.closed("the node is draining");
    }
  }

  deliver(event) {
    if (event.channel === "dispatch" && event.offset) this.offset = event.offset;
    if (this.seen.has(event.id)) return;
    this.seen.add(event.id);
    this.handlers.event(event);
  }

  closed(code, reason) {
    if (this.stopped) return;
    if (FINAL.has(code)) {
      this.stop();
      this.handlers.refused(code === 4001
        ? "the token was refused (4001 unauthorized): check it and sign in again"
        : `access revoked (4003${reason ? ": " + reason : ""})`);
      return;
    }
    const wait = Math.round(this.delay * (0.5 + Math.random() / 2));
    this.handlers.closed(`connection closed by the server (code ${code}); reconnecting in ${wait} ms`);
    this.delay = Math.min(this.delay * 2, 5000);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}

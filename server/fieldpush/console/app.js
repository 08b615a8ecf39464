// The dispatcher console: sign in, send, watch receipts, escalations, presence.
// Public HTTP API and WebSocket protocol only; every text from the wire is set
// with textContent (never parsed as HTML).

import { DispatchSocket } from "./socket.js";
import { LatencyChart } from "./chart.js";

const KEY = "fieldpush.console.token";
const $ = (id) => document.getElementById(id);
const events = new Map(); // event id -> {text, publishedAt, recipients: Map(user -> receipt)}
let socket = null;
let chart = null;
const teams = new Set();

function status(text, offline = false) {
  $("status").textContent = text;
  $("status").classList.toggle("offline", offline);
}

async function api(method, path, body) {
  const reply = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = reply.status === 204 ? null : await reply.json();
  if (!reply.ok) throw new Error(data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${reply.status}`);
  return data;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function stateOf(receipt) {
  if (receipt.acked_at) return "acked";
  if (receipt.delivered_at) return "delivered";
  return "pending";
}

function render() {
  const body = $("sent").tBodies[0];
  body.replaceChildren();
  const pending = $("pending");
  pending.replaceChildren();
  let count = 0;
  for (const [id, sent] of [...events].reverse()) {
    const recipients = sent.recipients.size ? [...sent.recipients.values()] : [{ user: sent.target, device: null }];
    for (const receipt of recipients) {
      const row = body.insertRow();
      row.dataset.event = id;
      row.dataset.user = receipt.user;
      cell(row, id.slice(-8));
      cell(row, sent.text, "text");
      cell(row, receipt.user);
      cell(row, receipt.device || "");
      const state = sent.tracked ? stateOf(receipt) : "sent";
      cell(row, state, `state state-${state}`);
    }
    const open = [...sent.recipients.values()].filter((r) => !r.acked_at).map((r) => r.user);
    if (sent.tracked && open.length) {
      count += 1;
      const item = document.createElement("li");
      item.dataset.event = id;
      item.textContent = `${sent.text} (${id.slice(-8)}): not acked by ${open.join(", ")}`;
      pending.append(item);
    }
  }
  $("pending-count").textContent = String(count);
}

function receipt(data) {
  const sent = events.get(data.event);
  if (!sent) return;
  for (const r of data.receipts) {
    const before = sent.recipients.get(r.user);
    if (r.delivered_at && !(before && before.delivered_at) && sent.publishedAt) chart.add(r.delivered_at - sent.publishedAt);
    sent.recipients.set(r.user, r);
  }
  render();
}

function escalation(event) {
  const item = document.createElement("li");
  const sent = events.get(event.data.event);
  const what = sent ? sent.text : event.data.kind;
  item.dataset.event = event.data.event;
  item.textContent = `${new Date(event.ts).toLocaleTimeString()}: ${what} (${String(event.data.event).slice(-8)}) not acked by ${event.data.users.join(", ") || "anyone"}`;
  $("escalations").prepend(item);
}

async function send(form) {
  $("send-error").textContent = "";
  const priority = $("priority").value;
  const target = `${$("target-kind").value}:${$("target").value.trim()}`;
  const body = { channels: [target], kind: $("kind").value, priority, data: { text: $("text").value } };
  const deadline = $("deadline").value;
  if (priority === "critical" && deadline) body.ack_deadline_s = Number(deadline);
  try {
    const reply = await api("POST", "/v1/publish", body);
    const sent = { text: body.data.text, target, tracked: priority === "critical", publishedAt: null, recipients: new Map() };
    events.set(reply.id, sent);
    if (sent.tracked) {
      const receipts = await api("GET", `/v1/events/${encodeURIComponent(reply.id)}/receipts`);
      sent.publishedAt = receipts.published_at;
      for (const r of receipts.recipients) if (!sent.recipients.has(r.user)) sent.recipients.set(r.user, r);
    }
    render();
    $("text").value = "";
    status(`Sent ${reply.id.slice(-8)} to ${target}`);
  } catch (error) {
    $("send-error").textContent = `Not sent: ${error.message}`;
  }
  form.querySelector("input[required]").focus();
}

async function presence() {
  const box = $("presence");
  const lists = [];
  for (const team of [...teams].sort()) {
    const heading = document.createElement("h3");
    heading.textContent = `team:${team}`;
    const list = document.createElement("ul");
    list.dataset.team = team;
    try {
      const reply = await api("GET", `/v1/presence?channel=${encodeURIComponent("team:" + team)}`);
      for (const user of reply.users) {
        const item = document.createElement("li");
        item.textContent = `${user.user}: ${user.devices.map((d) => d.device).join(", ")}`;
        list.append(item);
      }
      if (!reply.users.length) list.textContent = "nobody online";
    } catch (error) {
      list.textContent = `presence unavailable: ${error.message}`;
    }
    lists.push(heading, list);
  }
  box.replaceChildren(...lists);
}

function signedIn(welcome) {
  $("signin-panel").hidden = true;
  $("workspace").hidden = false;
  $("signout").hidden = false;
  status(`Connected as ${welcome.user} (${welcome.role}) on ${welcome.node}`);
  presence();
}

function refused(reason) {
  sessionStorage.removeItem(KEY);
  socket = null;
  $("workspace").hidden = true;
  $("signout").hidden = true;
  $("signin-panel").hidden = false;
  $("signin-error").textContent = `Sign-in failed: ${reason}`;
  status("Signed out", true);
  $("token").focus();
}

function start(token) {
  sessionStorage.setItem(KEY, token);
  $("signin-error").textContent = "";
  status("Connecting…");
  socket = new DispatchSocket(token, {
    welcome: signedIn,
    refused,
    closed: (why) => status(`Disconnected: ${why}`, true),
    event: (event) => {
      if (event.kind === "receipt") receipt(event.data);
      else if (event.kind === "escalation") escalation(event);
    },
  });
}

document.addEventListener("DOMContentLoaded", () => {
  chart = new LatencyChart($("latency"), $("latency-summary"));
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    start(token);
  });
  $("send").addEventListener("submit", (e) => { e.preventDefault(); send(e.target); });
  $("watch").addEventListener("submit", (e) => {
    e.preventDefault();
    teams.add($("team").value.trim());
    $("team").value = "";
    presence();
  });
  $("signout").addEventListener("click", () => {
    if (socket) socket.stop();
    refused("signed out");
    $("signin-error").textContent = "";
  });
  setInterval(() => { if (socket && teams.size) presence(); }, 3000);
  const saved = sessionStorage.getItem(KEY);
  if (saved) start(saved); else $("token").focus();
});

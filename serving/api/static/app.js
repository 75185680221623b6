// The streamrec web page: pick a user, see the top-K, send events, watch pushed lists arrive (Server-Sent Events).
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const KEY_STORAGE = "streamrec.apiKey";
const ANONYMOUS = "__anonymous__";
const NEW_USER = "__new__";
const ACTIONS = [
  ["view", "View"],
  ["click", "Click"],
  ["add_to_cart", "Add to cart"],
  ["purchase", "Purchase"],
  ["dislike", "Dislike"],
];
const MAX_DELAYS = 30;
const READY_EVERY_MS = 10000;

const state = {
  config: null,
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  items: new Map(), // item id -> details from /v1/items
  images: new Map(), // item id -> object URL (or null: no image)
  pending: new Map(), // event id -> {sentAt, itemId, type}
  delays: [],
  list: [], // the items shown: [{item_id, score, rank}]
  stream: null, // {controller, user}
  streamState: "off",
  retryMs: 2000,
  session: "web-" + uuid4().slice(0, 8),
  requestNo: 0,
  renderNo: 0,
};

const $ = (id) => document.getElementById(id);

function uuid4() {
  // crypto.randomUUID needs a secure context; getRandomValues works everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------- messages

function showMessage(id, text, level = "error") {
  let box = document.querySelector(`#messages [data-id="${id}"]`);
  if (!text) {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = document.createElement("p");
    box.dataset.id = id;
    $("messages").appendChild(box);
  }
  box.className = `message ${level}`;
  box.textContent = text;
}

function setHealth(name, status, detail) {
  const dot = $(`health-${name}`);
  if (!dot) return;
  dot.dataset.state = status;
  dot.parentElement.title = detail || status;
  dot.setAttribute("aria-label", `${name}: ${detail || status}`);
}

// ---------------------------------------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.reason ? `${body.field}: ${body.reason}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.config && state.config.auth_required) headers[state.config.key_header] = state.key;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    setHealth("api", "down", "unreachable");
    showMessage("api", `The API does not answer (${err.message}). Is 'streamrec api' running?`);
    throw err;
  }
  setHealth("api", "ok", "answering");
  showMessage("api", "");
  if (response.status === 401) {
    askForKey("The API refused the key: " + ((await response.json().catch(() => ({}))).reason || "unauthorized"));
    throw new ApiError(401, null);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body);
  }
  return response;
}

// ---------------------------------------------------------------------------------------------- API key

function askForKey(error) {
  const dialog = $("key-dialog");
  $("key-error").hidden = !error;
  $("key-error").textContent = error || "";
  $("key-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (ev) => {
  const value = $("key-input").value.trim();
  if (!value) {
    ev.preventDefault();
    return;
  }
  state.key = value;
  sessionStorage.setItem(KEY_STORAGE, value);
  start();
});

$("change-key").addEventListener("click", () => askForKey(""));

// ---------------------------------------------------------------------------------------------- controls

function currentUser() {
  const choice = $("user").value;
  if (choice === ANONYMOUS) return null;
  if (choice === NEW_USER) return $("new-user").value.trim() || null;
  return choice;
}

function fillControls(users) {
  const select = $("user");
  const previous = select.value;
  select.replaceChildren();
  for (const user of users) select.add(new Option(`user ${user}`, user));
  select.add(new Option("anonymous", ANONYMOUS));
  select.add(new Option("new id…", NEW_USER));
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  const device = $("device");
  if (!device.options.length) {
    for (const d of state.config.devices) device.add(new Option(d, d));
    device.value = "desktop";
  }
  const k = $("k");
  k.max = String(state.config.max_k);
  if (!k.dataset.set) {
    k.value = String(state.config.default_k);
    k.dataset.set = "1";
  }
}

$("user").addEventListener("change", () => {
  const isNew = $("user").value === NEW_USER;
  $("new-user-field").hidden = !isNew;
  if (isNew) {
    if (!$("new-user").value) $("new-user").value = "web-" + uuid4().slice(0, 8);
    $("new-user").focus();
  }
  refresh();
});

$("random-user").addEventListener("click", () => {
  $("new-user").value = "web-" + uuid4().slice(0, 8);
  refresh();
});

$("new-user").addEventListener("change", refresh);
$("device").addEventListener("change", refresh);
$("when").addEventListener("change", refresh);
$("controls").addEventListener("submit", (ev) => {
  ev.preventDefault();
  refresh();
});

// ---------------------------------------------------------------------------------------------- recommendations

async function refresh() {
  const user = currentUser();
  if ($("user").value === NEW_USER && !user) {
    showMessage("input", "Type a user id, or pick another user.");
    return;
  }
  showMessage("input", "");
  const params = new URLSearchParams({ k: $("k").value || String(state.config.default_k), timings: "true" });
  params.set("device", $("device").value);
  if (user) params.set("user_id", user);
  const when = $("when").value;
  if (when) params.set("timestamp", String(new Date(when).getTime()));
  const requestNo = ++state.requestNo;
  const started = performance.now();
  let body;
  try {
    body = await (await api(`/v1/recommendations?${params}`)).json();
  } catch (err) {
    if (err instanceof ApiError && err.body) showMessage("request", `Request refused: ${err.message}`);
    return;
  }
  if (requestNo !== state.requestNo) return; // a newer request is on its way
  showMessage("request", "");
  const roundTrip = performance.now() - started;
  await render(body.items, {
    user,
    modelVersion: body.model_version,
    source: body.source,
    flags: body.flags,
    how: `asked ${new Date().toLocaleTimeString()}`,
    fallbackReason: body.fallback_reason,
  });
  renderTimings(body.timings_ms || {}, roundTrip);
  openStream(user);
}

async function describe(ids) {
  const missing = ids.filter((id) => !state.items.has(id));
  if (!missing.length) return;
  try {
    const body = await (await api(`/v1/items?ids=${encodeURIComponent(missing.join(","))}`)).json();
    for (const info of body.items) state.items.set(info.item_id, info);
  } catch (err) {
    return; // cards then show the ids only
  }
  for (const id of missing) if (!state.items.has(id)) state.items.set(id, { item_id: id });
}

async function imageFor(id) {
  if (state.images.has(id)) return state.images.get(id);
  const info = state.items.get(id);
  let url = null;
  if (info && info.has_image) {
    try {
      const blob = await (await api(`/v1/items/image?item_id=${encodeURIComponent(id)}`)).blob();
      url = URL.createObjectURL(blob);
    } catch (err) {
      url = null;
    }
  }
  state.images.set(id, url);
  return url;
}

function formatPrice(price) {
  return typeof price === "number" ? price.toLocaleString(undefined, { style: "currency", currency: "USD" }) : "";
}

async function render(items, meta) {
  const renderNo = ++state.renderNo;
  await describe(items.map((i) => i.item_id));
  await Promise.all(items.map((i) => imageFor(i.item_id)));
  if (renderNo !== state.renderNo) return; // a newer list arrived meanwhile
  state.list = items;
  const cards = $("cards");
  const template = $("card-template");
  const anonymous = meta.user === null;
  const nodes = [];
  for (const item of items) {
    const info = state.items.get(item.item_id) || { item_id: item.item_id };
    const node = template.content.firstElementChild.cloneNode(true);
    const title = info.title || `item ${item.item_id}`;
    node.dataset.itemId = item.item_id;
    node.querySelector(".rank").textContent = String(item.rank);
    node.querySelector(".title").textContent = title;
    const facts = [info.category, formatPrice(info.price), `id ${item.item_id}`].filter(Boolean);
    node.querySelector(".facts").textContent = facts.join(" · ");
    node.querySelector(".score").textContent = `rank ${item.rank} · score ${item.score.toFixed(3)}`;
    const media = node.querySelector(".media");
    media.dataset.letter = (info.category || title).slice(0, 1).toUpperCase();
    const url = state.images.get(item.item_id);
    if (url) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = "";
      media.prepend(img);
    }
    const group = node.querySelector(".buttons");
    group.setAttribute("aria-label", `Events for ${title}`);
    for (const [type, label] of ACTIONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.action = type;
      button.className = type === "dislike" ? "action danger" : "action";
      button.setAttribute("aria-label", `${label}: ${title}`);
      if (anonymous) {
        button.disabled = true;
        button.title = "Events need a user id: pick a user";
      }
      button.addEventListener("click", () => sendEvent(item.item_id, type, node));
      group.appendChild(button);
    }
    nodes.push(node);
  }
  cards.replaceChildren(...nodes);
  $("empty").hidden = items.length > 0;
  $("anonymous-note").hidden = !anonymous;
  const who = meta.user === null ? "anonymous" : `user ${meta.user}`;
  $("list-title").textContent = `Top ${items.length} for ${who}`;
  $("list-meta").textContent =
    `model ${meta.modelVersion || "none"} · ${meta.source} · ${meta.how}` +
    (meta.flags && meta.flags.length ? ` · flags: ${meta.flags.join(", ")}` : "");
  const fallback = meta.source === "fallback" || (meta.flags || []).includes("popularity_fallback");
  $("fallback").hidden = !fallback;
  $("fallback").textContent = fallback
    ? `Fallback answer: Triton could not answer${meta.fallbackReason ? ` (${meta.fallbackReason})` : ""}; ` +
      "these are popular items, not personalised ones."
    : "";
  if (meta.source === "fallback") setHealth("triton", "down", meta.fallbackReason || "fallback answers");
}

function renderTimings(timings, roundTrip) {
  const rows = Object.entries(timings);
  rows.push(["round trip (browser)", roundTrip]);
  const max = Math.max(...rows.map(([, ms]) => ms), 0.001);
  const body = $("timings").querySelector("tbody");
  body.replaceChildren(
    ...rows.map(([stage, ms]) => {
      const tr = document.createElement("tr");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, (100 * ms) / max)}%`;
      tr.append(cell("th", stage, "row"), cell("td", ms.toFixed(2)), cell("td", bar));
      return tr;
    }),
  );
}

function cell(tag, content, scope) {
  const el = document.createElement(tag);
  if (scope) el.scope = scope;
  if (content instanceof Node) el.appendChild(content);
  else el.textContent = content;
  return el;
}

// ---------------------------------------------------------------------------------------------- events

async function sendEvent(itemId, type, card) {
  const user = currentUser();
  if (!user) return;
  const eventId = uuid4();
  const body = {
    event_id: eventId,
    user_id: user,
    item_id: itemId,
    event_type: type,
    timestamp: new Date().toISOString(),
    context: { device: $("device").value, session_id: state.session },
  };
  const note = card.querySelector(".note");
  note.textContent = `${type} sent…`;
  const sentAt = performance.now();
  try {
    await api("/v1/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    note.textContent = `${type} not sent: ${err.message}`;
    return;
  }
  state.pending.set(eventId, { sentAt, itemId, type, user });
  card.classList.add("sent");
  note.textContent =
    state.streamState === "ok" ? `${type} sent; waiting for the new list…` : `${type} sent; asking again shortly…`;
  logEvent(`${type} ${itemId}`, eventId);
  if (state.streamState !== "ok") setTimeout(refresh, 1500); // no live stream: ask again instead
}

function logEvent(text, eventId) {
  const li = document.createElement("li");
  li.dataset.eventId = eventId;
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const log = $("event-log");
  log.prepend(li);
  while (log.children.length > 8) log.lastElementChild.remove();
}

// ---------------------------------------------------------------------------------------------- live stream

function setStreamState(status, text) {
  state.streamState = status;
  $("live-status").textContent = text;
  $("live-status").dataset.state = status;
}

function closeStream() {
  if (state.stream) {
    state.stream.controller.abort();
    clearTimeout(state.stream.retry);
    state.stream = null;
  }
}

function openStream(user) {
  if (state.stream && state.stream.user === user && !state.stream.ended) return;
  closeStream();
  if (user === null) {
    setStreamState("off", "Anonymous: nothing is pushed for anonymous users.");
    return;
  }
  if (!state.config.live) {
    setStreamState("off", "This API has no live stream; lists are asked for again after each event.");
    setHealth("kafka", "unknown", "no live stream");
    return;
  }
  const stream = { user, controller: new AbortController(), failures: 0, ended: false, retry: null };
  state.stream = stream;
  connect(stream);
}

async function connect(stream) {
  stream.ended = false;
  setStreamState("connecting", `Connecting the live stream for user ${stream.user}…`);
  const headers = {};
  if (state.config.auth_required) headers[state.config.key_header] = state.key;
  let reason = "the stream ended";
  try {
    const response = await fetch(`/v1/recommendations/stream?user_id=${encodeURIComponent(stream.user)}`, {
      headers,
      signal: stream.controller.signal,
    });
    if (response.status === 401) {
      askForKey("The API refused the key.");
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      reason = body.reason || `HTTP ${response.status}`;
    } else {
      stream.failures = 0;
      await readEvents(response.body.getReader(), stream);
    }
  } catch (err) {
    if (stream.controller.signal.aborted) return;
    reason = `the API does not answer (${err.message})`;
    setHealth("api", "down", "unreachable");
  }
  if (stream.controller.signal.aborted || state.stream !== stream) return;
  stream.ended = true;
  stream.failures += 1;
  const wait = Math.min(30000, state.retryMs * 2 ** Math.min(stream.failures - 1, 4));
  setHealth("kafka", "unknown", "live stream not connected");
  setStreamState("reconnecting", `Live stream lost: ${reason}. Reconnecting in ${Math.round(wait / 1000)} s…`);
  stream.retry = setTimeout(() => {
    if (state.stream === stream) connect(stream);
  }, wait);
}

async function readEvents(reader, stream) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      handleBlock(block, stream);
    }
  }
}

function handleBlock(block, stream) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) state.retryMs = Number(value);
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  if (event === "status") onStatus(payload, stream);
  else if (event === "recommendations") onPushed(payload, stream);
  else if (event === "error") setStreamState("error", `Live stream refused: ${payload.reason}`);
}

function onStatus(status, stream) {
  const kafka = status.kafka;
  if (kafka === "ok") {
    setHealth("kafka", "ok", "live stream connected");
    setStreamState("ok", `Live: lists pushed for user ${stream.user} appear here.`);
    showMessage("kafka", "");
  } else if (kafka.startsWith("unavailable")) {
    setHealth("kafka", "down", kafka);
    setStreamState("degraded", `Kafka is unavailable (${kafka.replace(/^unavailable: /, "")}); live updates paused.`);
    showMessage("kafka", `Kafka is unavailable: ${kafka.replace(/^unavailable: /, "")}. Events may not arrive.`);
  } else {
    setHealth("kafka", "unknown", kafka);
    setStreamState("connecting", `Live stream: ${kafka}…`);
  }
}

async function onPushed(message, stream) {
  if (message.user_id !== stream.user || currentUser() !== stream.user) return;
  const arrived = performance.now();
  let delay = null;
  const trigger = message.trigger_event_id;
  if (trigger && state.pending.has(trigger)) {
    delay = arrived - state.pending.get(trigger).sentAt;
    for (const [id, p] of state.pending) if (p.user === stream.user && p.sentAt <= state.pending.get(trigger).sentAt) {
      if (id !== trigger) state.pending.delete(id);
    }
    state.pending.delete(trigger);
    recordDelay(delay);
    const entry = document.querySelector(`#event-log [data-event-id="${trigger}"]`);
    if (entry) entry.textContent += ` → new list in ${Math.round(delay)} ms`;
  }
  await render(message.items, {
    user: stream.user,
    modelVersion: message.model_version,
    source: "pushed",
    flags: message.flags,
    how: `arrived ${new Date().toLocaleTimeString()}` + (delay !== null ? `, ${Math.round(delay)} ms after the event` : ""),
  });
  $("cards").dataset.pushed = String(Number($("cards").dataset.pushed || "0") + 1);
}

function recordDelay(ms) {
  state.delays.push(ms);
  if (state.delays.length > MAX_DELAYS) state.delays.shift();
  $("last-delay").textContent = `${Math.round(ms)} ms`;
  drawChart();
}

function drawChart() {
  const svg = $("delay-chart");
  const title = svg.querySelector("title");
  const delays = state.delays;
  const max = Math.max(...delays, 1);
  const width = 300 / MAX_DELAYS;
  const shapes = delays.map((ms, i) => {
    const h = Math.max(2, (100 * ms) / max);
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("x", String(i * width + 1));
    rect.setAttribute("y", String(105 - h));
    rect.setAttribute("width", String(width - 2));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "bar");
    return rect;
  });
  svg.replaceChildren(title, ...shapes);
  const sorted = [...delays].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  $("delay-summary").textContent =
    `${delays.length} measured · median ${Math.round(median)} ms · max ${Math.round(max)} ms (bars: oldest left)`;
}

// ---------------------------------------------------------------------------------------------- readiness

async function pollReadiness() {
  try {
    const response = await fetch("/readyz");
    setHealth("api", "ok", "answering");
    showMessage("api", "");
    const body = await response.json();
    const down = [];
    for (const [name, check] of Object.entries(body.checks || {})) {
      setHealth(name, check === "ok" ? "ok" : "down", check);
      if (check !== "ok") down.push(`${name[0].toUpperCase()}${name.slice(1)} ${check}`);
    }
    showMessage(
      "ready",
      down.length ? `${down.join("; ")}. Answers may be degraded (flagged on the list).` : "",
      "warning",
    );
  } catch (err) {
    setHealth("api", "down", "unreachable");
    showMessage("api", `The API does not answer (${err.message}). Is 'streamrec api' running?`);
  }
}

// ---------------------------------------------------------------------------------------------- start

async function start() {
  if (!state.config) {
    try {
      state.config = await (await fetch("/ui/config.json")).json();
    } catch (err) {
      setHealth("api", "down", "unreachable");
      showMessage("api", `The API does not answer (${err.message}). Reload when it runs.`);
      setTimeout(start, 5000);
      return;
    }
    state.retryMs = state.config.reconnect_ms;
  }
  if (state.config.auth_required && !state.key) {
    askForKey("");
    return;
  }
  let users = [];
  try {
    const known = await (await api("/v1/users/known")).json();
    users = known.users;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
  }
  fillControls(users);
  document.body.dataset.ready = "1";
  refresh();
}

pollReadiness();
setInterval(pollReadiness, READY_EVERY_MS);
start();

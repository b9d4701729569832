// wschat's browser client: the wschat.v1 protocol (docs/protocol.md) over one WebSocket.
//
// Every peer-supplied string (message text, names, rooms, error details) is inserted with
// textContent, never as HTML. Reconnects use exponential backoff with jitter and resume with
// ?since=<last id seen in the room>&resume=<the welcome's token>; a replayed id that was
// already shown is dropped, so a reconnect loses nothing and shows nothing twice. The token
// is kept in sessionStorage, so a reload of the tab resumes the same session: nobody sees it
// leave and join again.
//
// What the user types goes through one outbox (at most 100 lines, like `wschat join`): lines
// typed while offline wait there, shown as "queued", and go out on reconnect, paced under the
// server's rate limit. Each `say` carries a `cid` and stays in the outbox until its echo
// comes back, so after a drop it is sent again only if the replay does not already hold it.
"use strict";

(() => {
  const SUBPROTOCOL = "wschat.v1";
  const MISSED = "some messages were missed (no longer stored, or too many to replay)";
  // A server started with --secret wants a signed token (wschat token NAME). Browsers cannot
  // set an Authorization header, so the page offers it as a second subprotocol entry; it is
  // read from the page's fragment (/#token=...), which the browser never sends in a request.
  const SIGNED = new URLSearchParams(location.hash.slice(1)).get("token");
  const BACKOFF_FIRST_S = 0.5;
  const BACKOFF_MAX_S = 10;
  const MAX_TEXT_CHARS = 4000; // the server's limit on say and dm text (docs/protocol.md)
  const COUNTER_FROM_CHARS = 3500; // show the character counter from here on
  const OUTBOX_LINES = 100; // as many lines as `wschat join` queues
  // Stay under the server's default rate limit (20/s, burst 40), as `wschat join` does.
  const SEND_RATE_PER_S = 15;
  const SEND_BURST = 30;
  const STORE_KEY = "wschat.session"; // sessionStorage: {name, room, token} of this tab
  const NICK_COLOURS = 8; // .nick-0 ... .nick-7 in style.css
  // Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
  const FATAL = new Map([
    [1000, "disconnected"],
    [1003, "the server refused our data"],
    [1008, "the server refused the request"],
    [4003, "invalid name or room"],
    [4009, "that name is taken"],
    [4010, "this name connected again elsewhere"],
    [4011, "your token expired: get a new one (wschat token NAME) and open the page with #token=NEW"],
  ]);
  const COMMANDS = [
    ["/help", "show this help"],
    ["/who", "list the members of this room"],
    ["/join ROOM", "move to another room"],
    ["/rooms", "list the rooms with members (the 100 busiest)"],
    ["/msg NAME TEXT", "send a direct message"],
    ["/me ACTION", "send an emote (/me waves)"],
    ["/quit", "leave the chat"],
    ["//text", "send a line that starts with /"],
  ];
  const KNOWN = ["/help", "/who", "/join", "/rooms", "/msg", "/me", "/quit", "/nick"];

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $("state"),
    announce: $("announce"),
    login: $("login"),
    name: $("name"),
    room: $("room"),
    loginError: $("login-error"),
    chat: $("chat"),
    roomTitle: $("room-title"),
    messages: $("messages"),
    empty: $("empty"),
    jump: $("jump"),
    members: $("members"),
    membersToggle: $("members-toggle"),
    membersClose: $("members-close"),
    composer: $("composer"),
    input: $("input"),
    counter: $("counter"),
    leave: $("leave"),
  };

  const session = {
    name: "",
    room: "",
    shownRoom: null, // the room whose messages the list shows
    token: null, // the resume token from the last welcome
    lastId: new Map(), // room -> newest message id shown
    epochs: new Map(), // room -> the epoch of lastId (a reset sequence has a new one)
    members: new Set(),
    ws: null,
    welcomed: false, // the current socket has had its welcome
    replayLeft: 0, // replayed messages still to come after the welcome
    attempt: 0,
    timer: null,
    wanted: false, // the user wants to be connected
  };

  // Lines the user sent, oldest first: {cmd, li, sent}. A say leaves when its echo (same cid)
  // comes back; other commands leave once sent (nothing comes back to match them with).
  const outbox = { lines: [], tokens: SEND_BURST, refilled: performance.now(), timer: null };
  const cids = (() => {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    const prefix = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    let n = 0;
    return () => `${prefix}-${(n += 1)}`;
  })();

  const view = { unread: 0, lastDay: "", tooLong: false };

  // --- this tab's session, kept across reloads ---------------------------------------------

  // Queued lines are kept too: a reload while offline loses none of them.
  function saveSession() {
    if (!session.wanted) return;
    const queued = outbox.lines.map((entry) => entry.cmd);
    try {
      sessionStorage.setItem(STORE_KEY, JSON.stringify({ name: session.name, room: session.room, token: session.token, queued }));
    } catch {
      // storage refused (private mode, quota): a reload starts a new session
    }
  }

  function loadSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
      return saved && typeof saved.name === "string" && typeof saved.room === "string" ? saved : null;
    } catch {
      return null;
    }
  }

  function forgetSession() {
    try {
      sessionStorage.removeItem(STORE_KEY);
    } catch {
      // nothing was stored
    }
  }

  // --- connection state ------------------------------------------------------------------

  // The badge shows every change (the countdown too); screen readers hear only a new state.
  function setState(state, text, spoken = text) {
    if (ui.state.dataset.state !== state) ui.announce.textContent = spoken;
    ui.state.dataset.state = state;
    ui.state.textContent = text;
  }

  function connected() {
    const ws = session.ws;
    return ws !== null && ws.readyState === WebSocket.OPEN && session.welcomed;
  }

  function connect() {
    clearTimeout(session.timer);
    session.timer = null;
    session.welcomed = false;
    const params = new URLSearchParams({ room: session.room });
    if (session.lastId.has(session.room)) params.set("since", String(session.lastId.get(session.room)));
    if (session.token) params.set("resume", session.token);
    if (params.has("since") && session.epochs.has(session.room)) {
      params.set("epoch", session.epochs.get(session.room));
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/${encodeURIComponent(session.name)}?${params}`;
    if (session.attempt) setState("reconnecting", "reconnecting…");
    else setState("connecting", "connecting…");
    const ws = new WebSocket(url, SIGNED ? [SUBPROTOCOL, "wschat.token." + SIGNED] : SUBPROTOCOL);
    session.ws = ws;
    ws.onmessage = (event) => {
      if (ws !== session.ws) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      handle(data);
    };
    ws.onclose = (event) => {
      if (ws !== session.ws) return;
      session.ws = null;
      session.welcomed = false;
      closed(event.code, event.reason);
    };
  }

  function closed(code, reason) {
    requeue();
    if (!session.wanted) {
      setState("offline", "offline");
      return;
    }
    const fatal = FATAL.get(code);
    if (fatal !== undefined) {
      session.wanted = false;
      const text = `offline: ${fatal}${reason ? ` (${reason})` : ""}`;
      setState("offline", text);
      if (code !== 4010) forgetSession(); // 4010: this tab's token now belongs to another
      discardOutbox();
      if (code === 4003 || code === 4009) showLogin(reason || fatal);
      else system(text, "error");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    // Full jitter: a server drain or restart must not bring every tab back in the same instant.
    const ceiling = Math.min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** session.attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    session.attempt += 1;
    const due = Date.now() + delay * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setState("reconnecting", `reconnecting in ${left} s`, "connection lost: reconnecting");
      if (Date.now() >= due) {
        connect();
      } else {
        session.timer = setTimeout(tick, Math.min(1000, due - Date.now()));
      }
    };
    tick();
  }

  // --- events from the server --------------------------------------------------------------

  function handle(event) {
    switch (event.type) {
      case "welcome":
        return welcome(event);
      case "message":
        return message(event);
      case "dm":
        return dm(event);
      case "joined":
        if (event.room === session.room) {
          session.members.add(event.name);
          renderMembers();
          system(`${event.name} joined`);
        }
        return;
      case "left":
        if (event.room === session.room) {
          session.members.delete(event.name);
          renderMembers();
          system(`${event.name} left`);
        }
        return;
      case "members":
        if (event.room === session.room) {
          session.members = new Set(event.names);
          renderMembers();
          system(`members of #${event.room} (${event.names.length}): ${event.names.join(", ")}`);
        }
        return;
      case "rooms": {
        const listed = event.rooms.map((r) => `#${r.room} (${r.members})`).join(", ");
        const more = event.more > 0 ? ` and ${event.more} more` : "";
        system(`rooms with members (${event.rooms.length}): ${listed}${more}`);
        return;
      }
      case "epoch": // the room's ids were reset: the new ones follow base
        session.epochs.set(event.room, event.epoch);
        session.lastId.set(event.room, event.base);
        if (event.room === session.room) system(MISSED);
        return;
      case "error":
        system(`error: ${event.detail}`, "error");
        return;
      default:
        return; // later versions may add types: ignore them
    }
  }

  function welcome(event) {
    session.attempt = 0;
    session.welcomed = true;
    session.name = event.name;
    session.room = event.room;
    session.token = event.token;
    session.replayLeft = Number(event.replay) || 0;
    session.members = new Set(event.members);
    saveSession();
    const last = session.lastId.get(event.room);
    const epoch = session.epochs.get(event.room);
    if (last !== undefined && (event.latest < last || (epoch && event.epoch !== epoch))) {
      session.lastId.set(event.room, 0); // the server's history was reset: ids start over
    }
    if (event.epoch) session.epochs.set(event.room, event.epoch);
    if (session.shownRoom !== event.room) {
      // A new room's list starts empty: show its whole replay, even ids seen on an earlier visit.
      session.lastId.delete(event.room);
      clearList();
      session.shownRoom = event.room;
      ui.roomTitle.textContent = `#${event.room}`;
    }
    if (event.gap) system(MISSED);
    renderMembers();
    setState("connected", `connected as ${event.name} in #${event.room}`);
    updateTitle();
    if (session.replayLeft === 0) pump();
  }

  function message(event) {
    if (event.room !== session.room) return;
    if (event.from === session.name) settle(event.cid);
    const replayed = session.replayLeft > 0;
    if (replayed) session.replayLeft -= 1;
    const last = session.lastId.get(event.room) ?? 0;
    if (event.id > last) {
      session.lastId.set(event.room, event.id);
      const li = line(event.ts, event.action ? "message action" : "message");
      li.dataset.id = String(event.id);
      if (event.action) {
        li.append(span("text", `* ${event.from} ${event.text}`));
      } else {
        li.append(nick(event.from), span("sep", ": "), span("text", event.text));
      }
      append(li, { mine: event.from === session.name, counts: !replayed });
    }
    if (replayed && session.replayLeft === 0) pump(); // the replay settled what it could
  }

  function dm(event) {
    const li = line(event.ts, "dm");
    li.append(span("from", `${event.from} → ${event.to}`), span("sep", ": "), span("text", event.text));
    append(li, { mine: event.from === session.name, counts: true });
  }

  function system(text, kind = "system") {
    const li = line(Date.now() / 1000, kind === "system" ? "system" : `system ${kind}`);
    li.append(span("text", text));
    append(li, { mine: kind === "error", counts: false });
  }

  // --- rendering: text only, never HTML ----------------------------------------------------

  function two(n) {
    return String(n).padStart(2, "0");
  }

  function line(ts, className) {
    const li = document.createElement("li");
    li.className = className;
    li.dataset.ts = String(ts);
    const when = new Date(ts * 1000);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = `${two(when.getHours())}:${two(when.getMinutes())}:${two(when.getSeconds())}`;
    // The space is a real character, so a copied line reads "time name: text".
    li.append(time, " ");
    return li;
  }

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function nick(name) {
    let hash = 0;
    for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return span(`from nick-${hash % NICK_COLOURS}`, name);
  }

  function dayOf(ts) {
    const d = new Date(ts * 1000);
    return d.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  function atBottom() {
    const box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jump.hidden = true;
  }

  // Lines go above the queued ones, which stay at the bottom until they are sent.
  function append(li, { mine, counts }) {
    const box = ui.messages;
    const wasAtBottom = atBottom();
    const before = box.querySelector("li.pending");
    const day = dayOf(Number(li.dataset.ts));
    if (day !== view.lastDay) {
      view.lastDay = day;
      const sep = document.createElement("li");
      sep.className = "day";
      sep.setAttribute("role", "separator");
      sep.textContent = day;
      box.insertBefore(sep, before);
    }
    box.insertBefore(li, before);
    if (counts && !mine && document.hidden) {
      view.unread += 1;
      updateTitle();
    }
    if (wasAtBottom || mine) scrollToBottom();
    else ui.jump.hidden = false;
    updateEmpty();
  }

  // A new room's list: its own lines go, direct messages and queued lines stay.
  function clearList() {
    const kept = [...ui.messages.querySelectorAll("li.dm")];
    const queued = [...ui.messages.querySelectorAll("li.pending")];
    ui.messages.replaceChildren(...queued);
    view.lastDay = "";
    for (const li of kept) append(li, { mine: false, counts: false });
    updateEmpty();
  }

  function updateEmpty() {
    ui.empty.hidden = ui.messages.querySelector("li.message") !== null;
    ui.empty.textContent = `No messages in #${session.room} yet. Say hello!`;
  }

  function updateTitle() {
    const room = session.room ? `#${session.room} – wschat` : "wschat";
    document.title = view.unread ? `(${view.unread}) ${room}` : room;
  }

  function renderMembers() {
    const items = [...session.members].sort().map((name) => {
      const li = document.createElement("li");
      if (name === session.name) li.className = "me";
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.title = `Send ${name} a direct message`;
      button.onclick = () => {
        ui.input.value = `/msg ${name} `;
        setDrawer(false);
        ui.input.focus();
      };
      li.append(button);
      return li;
    });
    ui.members.replaceChildren(...items);
  }

  function setDrawer(open) {
    document.body.classList.toggle("drawer-open", open);
    ui.membersToggle.setAttribute("aria-expanded", String(open));
  }

  // --- the outbox: queued while offline, paced, settled by the echo ------------------------

  function enqueue(cmd) {
    if (outbox.lines.length >= OUTBOX_LINES) {
      system(`${OUTBOX_LINES} lines are waiting to be sent: this one was not queued, wait for the connection`, "error");
      return false;
    }
    if (cmd.type === "say") cmd.cid = cids();
    const entry = { cmd, li: null, sent: false };
    outbox.lines.push(entry);
    saveSession();
    if (!connected()) showPending(entry);
    pump();
    return true;
  }

  // The lines a reloaded tab had queued: shown as queued again, sent after the welcome.
  function restore(queued) {
    for (const cmd of Array.isArray(queued) ? queued.slice(0, OUTBOX_LINES) : []) {
      if (!cmd || !["say", "dm", "join", "who"].includes(cmd.type)) continue;
      const entry = { cmd, li: null, sent: false };
      outbox.lines.push(entry);
      showPending(entry);
    }
  }

  function showPending(entry) {
    if (entry.li) return;
    const { cmd } = entry;
    const li = line(Date.now() / 1000, "pending");
    const what = { say: cmd.action ? `* ${session.name} ${cmd.text}` : cmd.text, dm: `→ ${cmd.to}: ${cmd.text}`, join: `/join ${cmd.room}`, who: "/who", rooms: "/rooms" }[cmd.type];
    if (cmd.type === "say" && !cmd.action) li.append(nick(session.name), span("sep", ": "));
    li.append(span("text", what), span("note", " (queued: sent when the connection is back)"));
    entry.li = li;
    ui.messages.append(li); // queued lines stay below everything else
    scrollToBottom();
  }

  function pump() {
    clearTimeout(outbox.timer);
    outbox.timer = null;
    if (!connected() || session.replayLeft > 0) return;
    const now = performance.now();
    outbox.tokens = Math.min(SEND_BURST, outbox.tokens + ((now - outbox.refilled) / 1000) * SEND_RATE_PER_S);
    outbox.refilled = now;
    for (const entry of [...outbox.lines]) {
      if (entry.sent) continue;
      if (outbox.tokens < 1) {
        outbox.timer = setTimeout(pump, 1000 / SEND_RATE_PER_S);
        return;
      }
      outbox.tokens -= 1;
      session.ws.send(JSON.stringify(entry.cmd));
      entry.sent = true;
      if (entry.cmd.type !== "say") drop(entry);
      else if (entry.li) entry.li.querySelector(".note").textContent = " (sending…)";
    }
  }

  function drop(entry) {
    outbox.lines.splice(outbox.lines.indexOf(entry), 1);
    if (entry.li) entry.li.remove();
    saveSession();
  }

  // The echo of `cid` came back: that line is stored, and every line sent before it was
  // answered already (stored, or refused with an error event), since the server handles a
  // connection's commands in order.
  function settle(cid) {
    const at = outbox.lines.findIndex((entry) => entry.cmd.cid === cid);
    if (at < 0) return;
    for (const entry of outbox.lines.slice(0, at + 1)) {
      if (entry.sent || entry.cmd.cid === cid) drop(entry);
    }
  }

  // The session is over: say how many lines will never be sent.
  function discardOutbox() {
    const unsent = outbox.lines.length;
    for (const entry of [...outbox.lines]) drop(entry);
    if (unsent) system(`${unsent} queued line(s) were not sent`, "error");
  }

  // The socket closed: whatever was sent and not echoed waits for the replay, or goes again.
  function requeue() {
    clearTimeout(outbox.timer);
    outbox.timer = null;
    for (const entry of outbox.lines) {
      entry.sent = false;
      showPending(entry);
      entry.li.querySelector(".note").textContent = " (queued: sent when the connection is back)";
    }
  }

  // --- what the user types -----------------------------------------------------------------

  const chars = (text) => [...text].length; // code points, as the server counts them

  function checked(cmd) {
    const n = chars(cmd.text);
    if (n > MAX_TEXT_CHARS) {
      return { error: `too long: ${n} characters, a message may have ${MAX_TEXT_CHARS}; nothing was sent (shorten it or send it in parts)` };
    }
    return { send: cmd };
  }

  function distance(a, b) {
    const row = Array.from({ length: b.length + 1 }, (_, i) => i);
    for (let i = 1; i <= a.length; i += 1) {
      let diagonal = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j += 1) {
        const above = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
        diagonal = above;
      }
    }
    return row[b.length];
  }

  // Returns {send: command}, {local: "help"|"quit"}, {error: text} or null (a blank line).
  // The same commands as `wschat join` (wschat/client/commands.py); nothing unknown is sent.
  function parse(raw) {
    if (!raw.trim()) return null;
    if (raw.startsWith("//")) return checked({ type: "say", text: raw.slice(1) });
    if (!raw.startsWith("/")) return checked({ type: "say", text: raw });
    const space = raw.search(/\s/);
    const head = space < 0 ? raw : raw.slice(0, space);
    const rest = space < 0 ? "" : raw.slice(space).trim();
    let m;
    switch (head.toLowerCase()) {
      case "/help":
      case "/?":
        return { local: "help" };
      case "/quit":
      case "/exit":
      case "/q":
        return { local: "quit" };
      case "/who":
        return { send: { type: "who" } };
      case "/rooms":
        return { send: { type: "rooms" } };
      case "/join":
        if (!rest || /\s/.test(rest)) return { error: "usage: /join ROOM" };
        return { send: { type: "join", room: rest.replace(/^#/, "") } };
      case "/msg":
        if (!(m = /^(\S+)\s+([\s\S]+)$/.exec(rest))) return { error: "usage: /msg NAME TEXT" };
        return checked({ type: "dm", to: m[1], text: m[2] });
      case "/me":
        if (!rest) return { error: "usage: /me ACTION" };
        return checked({ type: "say", text: rest, action: true });
      case "/nick":
        return { error: "a name cannot change during a session: /quit, then join with the new name" };
      default: {
        const near = KNOWN.filter((known) => distance(head.toLowerCase(), known) <= 2);
        const hint = near.length ? ` (did you mean ${near[0]}?)` : "";
        return { error: `unknown command ${head}${hint}: nothing was sent; try /help (//text sends a line starting with /)` };
      }
    }
  }

  function help() {
    system("commands:");
    for (const [cmd, what] of COMMANDS) system(`${cmd} – ${what}`);
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const parsed = parse(ui.input.value);
    if (parsed === null) return;
    if (parsed.error) {
      system(parsed.error, "error"); // the line stays in the box, to fix and send again
      return;
    }
    if (parsed.local === "help") help();
    else if (parsed.local === "quit") leave();
    else if (!enqueue(parsed.send)) return;
    ui.input.value = "";
    updateCounter();
    scrollToBottom();
  });

  // Over-long input is never cut: the counter turns red and the user is told once per paste.
  function updateCounter() {
    const n = chars(ui.input.value);
    const over = n > MAX_TEXT_CHARS;
    ui.counter.textContent = n >= COUNTER_FROM_CHARS ? `${n}/${MAX_TEXT_CHARS}` : "";
    ui.counter.classList.toggle("over", over);
    ui.input.setAttribute("aria-invalid", String(over));
    if (over && !view.tooLong) {
      system(`this is ${n} characters, more than a message may have (${MAX_TEXT_CHARS}): shorten it or send it in parts`, "error");
    }
    view.tooLong = over;
  }

  ui.input.addEventListener("input", updateCounter);

  ui.messages.addEventListener("scroll", () => {
    if (atBottom()) ui.jump.hidden = true;
  });
  ui.jump.addEventListener("click", () => {
    scrollToBottom();
    ui.input.focus();
  });

  ui.membersToggle.addEventListener("click", () => {
    setDrawer(!document.body.classList.contains("drawer-open"));
  });
  ui.membersClose.addEventListener("click", () => {
    setDrawer(false);
    ui.membersToggle.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) {
      setDrawer(false);
      ui.membersToggle.focus();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && view.unread) {
      view.unread = 0;
      updateTitle();
    }
  });

  function showLogin(error) {
    ui.login.hidden = false;
    ui.chat.hidden = true;
    ui.membersToggle.hidden = true;
    ui.loginError.textContent = error || "";
    ui.name.focus();
  }

  function start(name, room, token = null) {
    if (session.ws) {
      // A second Join replaces the first connection instead of leaving a ghost behind it.
      const old = session.ws;
      session.ws = null;
      old.close(1000, "bye");
    }
    clearTimeout(session.timer);
    session.name = name;
    session.room = room;
    session.token = token;
    session.attempt = 0;
    session.wanted = true;
    ui.loginError.textContent = "";
    ui.login.hidden = true;
    ui.chat.hidden = false;
    ui.membersToggle.hidden = false;
    updateEmpty();
    connect();
    ui.input.focus();
  }

  function leave() {
    session.wanted = false;
    clearTimeout(session.timer);
    forgetSession();
    discardOutbox();
    if (session.ws) session.ws.close(1000, "bye");
    else setState("offline", "offline");
    showLogin("");
  }

  // The server checks names and rooms (close 4003); a slash or a space cannot even reach it,
  // since the name is a path segment, so say so here instead of retrying a refused handshake.
  const UNSENDABLE = /[\s/]/;

  function tryStart(name, room) {
    if (!name || UNSENDABLE.test(name) || UNSENDABLE.test(room)) {
      showLogin("a name and a room may not contain spaces or slashes");
      return;
    }
    start(name, room);
  }

  ui.login.addEventListener("submit", (event) => {
    event.preventDefault();
    tryStart(ui.name.value.trim(), ui.room.value.trim() || "lobby");
  });

  ui.leave.addEventListener("click", leave);

  // A reload resumes this tab's session (same name, room and token: no leave/join for the
  // others); /?name=alice&room=ops joins at once (handy for bookmarks and for the tests).
  const query = new URLSearchParams(location.search);
  const saved = loadSession();
  if (query.get("room")) ui.room.value = query.get("room");
  if (saved && (!query.get("name") || query.get("name") === saved.name)) {
    ui.name.value = saved.name;
    ui.room.value = saved.room;
    start(saved.name, saved.room, saved.token);
    restore(saved.queued);
  } else if (query.get("name")) {
    ui.name.value = query.get("name");
    tryStart(ui.name.value.trim(), ui.room.value.trim() || "lobby");
  } else {
    showLogin("");
  }
})();

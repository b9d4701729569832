// wschat's browser client: the wschat.v1 protocol (docs/protocol.md) over one WebSocket.
//
// Every peer-supplied string (message text, names, rooms, error details) is inserted with
// textContent, never as HTML. Reconnects use exponential backoff with jitter and resume with
// ?since=<last id seen in the room>&resume=<the welcome's token>; a replayed id that was
// already shown is dropped, so a reconnect loses nothing and shows nothing twice.
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

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $("state"),
    login: $("login"),
    name: $("name"),
    room: $("room"),
    loginError: $("login-error"),
    chat: $("chat"),
    roomTitle: $("room-title"),
    messages: $("messages"),
    members: $("members"),
    composer: $("composer"),
    input: $("input"),
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
    attempt: 0,
    timer: null,
    wanted: false, // the user wants to be connected
  };

  // --- connection state ------------------------------------------------------------------

  function setState(state, text) {
    ui.state.dataset.state = state;
    ui.state.textContent = text;
  }

  function connect() {
    clearTimeout(session.timer);
    session.timer = null;
    const params = new URLSearchParams({ room: session.room });
    if (session.lastId.has(session.room)) params.set("since", String(session.lastId.get(session.room)));
    if (session.token) params.set("resume", session.token);
    if (params.has("since") && session.epochs.has(session.room)) {
      params.set("epoch", session.epochs.get(session.room));
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/${encodeURIComponent(session.name)}?${params}`;
    setState("connecting", session.attempt ? "reconnecting…" : "connecting…");
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
      closed(event.code, event.reason);
    };
  }

  function closed(code, reason) {
    if (!session.wanted) {
      setState("offline", "offline");
      return;
    }
    const fatal = FATAL.get(code);
    if (fatal !== undefined) {
      session.wanted = false;
      setState("offline", `offline: ${fatal}${reason ? ` (${reason})` : ""}`);
      if (code === 4003 || code === 4009) showLogin(reason || fatal);
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
      setState("reconnecting", `reconnecting in ${left} s`);
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
        }
        return;
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
    session.name = event.name;
    session.room = event.room;
    session.token = event.token;
    session.members = new Set(event.members);
    const last = session.lastId.get(event.room);
    const epoch = session.epochs.get(event.room);
    if (last !== undefined && (event.latest < last || (epoch && event.epoch !== epoch))) {
      session.lastId.set(event.room, 0); // the server's history was reset: ids start over
    }
    if (event.epoch) session.epochs.set(event.room, event.epoch);
    if (session.shownRoom !== event.room) {
      // A new room's list starts empty: show its whole replay, even ids seen on an earlier visit.
      session.lastId.delete(event.room);
      ui.messages.replaceChildren();
      session.shownRoom = event.room;
      ui.roomTitle.textContent = `#${event.room}`;
    }
    if (event.gap) system(MISSED);
    renderMembers();
    setState("connected", `connected as ${event.name} in #${event.room}`);
    document.title = `#${event.room} – wschat`;
  }

  function message(event) {
    const last = session.lastId.get(event.room) ?? 0;
    if (event.room !== session.room || event.id <= last) return; // a replay we already show
    session.lastId.set(event.room, event.id);
    const li = line(event.ts, event.action ? "message action" : "message");
    li.dataset.id = String(event.id);
    if (event.action) {
      li.append(span("text", `* ${event.from} ${event.text}`));
    } else {
      li.append(span("from", event.from), span("text", event.text));
    }
    append(li);
  }

  function dm(event) {
    const li = line(event.ts, "dm");
    li.append(span("from", `${event.from} → ${event.to}`), span("text", event.text));
    append(li);
  }

  function system(text, kind = "system") {
    const li = line(Date.now() / 1000, kind === "system" ? "system" : `system ${kind}`);
    li.append(span("text", text));
    append(li);
  }

  // --- rendering: text only, never HTML ----------------------------------------------------

  function two(n) {
    return String(n).padStart(2, "0");
  }

  function line(ts, className) {
    const li = document.createElement("li");
    li.className = className;
    const when = new Date(ts * 1000);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = `${two(when.getHours())}:${two(when.getMinutes())}:${two(when.getSeconds())}`;
    li.append(time);
    return li;
  }

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function append(li) {
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.append(li);
    if (atBottom) box.scrollTop = box.scrollHeight;
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
        ui.input.focus();
      };
      li.append(button);
      return li;
    });
    ui.members.replaceChildren(...items);
  }

  // --- what the user types -----------------------------------------------------------------

  function command(raw) {
    const text = raw.trim();
    if (!text) return null;
    let m;
    if ((m = /^\/me\s+(.+)$/s.exec(text))) return { type: "say", text: m[1], action: true };
    if ((m = /^\/msg\s+(\S+)\s+(.+)$/s.exec(text))) return { type: "dm", to: m[1], text: m[2] };
    if ((m = /^\/join\s+(\S+)$/.exec(text))) return { type: "join", room: m[1] };
    if (/^\/who$/.test(text)) return { type: "who" };
    if (/^\/(me|msg|join)\b/.test(text)) return { error: "usage: /me TEXT, /msg NAME TEXT, /join ROOM, /who" };
    return { type: "say", text: raw };
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const cmd = command(ui.input.value);
    if (cmd === null) return;
    if (cmd.error) {
      system(cmd.error, "error");
      return;
    }
    const ws = session.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || ui.state.dataset.state !== "connected") {
      system("not connected: your message is kept in the box", "error");
      return;
    }
    ws.send(JSON.stringify(cmd));
    ui.input.value = "";
  });

  function showLogin(error) {
    ui.login.hidden = false;
    ui.chat.hidden = true;
    ui.loginError.textContent = error || "";
    ui.name.focus();
  }

  function start(name, room) {
    session.name = name;
    session.room = room;
    session.token = null;
    session.attempt = 0;
    session.wanted = true;
    ui.loginError.textContent = "";
    ui.login.hidden = true;
    ui.chat.hidden = false;
    connect();
    ui.input.focus();
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

  ui.leave.addEventListener("click", () => {
    session.wanted = false;
    clearTimeout(session.timer);
    if (session.ws) session.ws.close(1000, "bye");
    else setState("offline", "offline");
    showLogin("");
  });

  // /?name=alice&room=ops joins at once (handy for bookmarks and for the tests).
  const query = new URLSearchParams(location.search);
  if (query.get("room")) ui.room.value = query.get("room");
  if (query.get("name")) {
    ui.name.value = query.get("name");
    tryStart(ui.name.value.trim(), ui.room.value.trim() || "lobby");
  } else {
    showLogin("");
  }
})();

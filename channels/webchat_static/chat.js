// Stemme web chat: plain JavaScript, no dependencies. Text is only ever set with textContent.
(function () {
  "use strict";
  var T = JSON.parse(document.querySelector('meta[name="stemme-texts"]').content);
  var linkState = document.querySelector('meta[name="stemme-link"]').content;
  var TOKEN_KEY = "stemme.t", PENDING_KEY = "stemme.p";
  var linesEl = document.getElementById("lines");
  var statusEl = document.getElementById("status");
  var form = document.getElementById("composer");
  var input = document.getElementById("text");
  var exitBtn = document.getElementById("quick-exit");

  // The token moves from the address bar into this tab's sessionStorage, so the link is not
  // left in the current history entry or visible over the child's shoulder.
  var match = location.pathname.match(/^\/c\/([A-Za-z0-9_-]{16,64})$/);
  var token = match ? match[1] : sessionStorage.getItem(TOKEN_KEY);
  if (match && linkState === "valid") {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", "/c/");
  }
  if (!token || linkState === "invalid") {
    document.getElementById("invalid").hidden = false;
    form.hidden = true;
    statusEl.textContent = "";
    if (linkState === "invalid") { sessionStorage.removeItem(TOKEN_KEY); }
    exitBtn.addEventListener("click", quickExit);
    return;
  }

  var lastSeq = 0;
  var seenSeqs = new Set();
  var pending = loadPending();
  var ws = null, retry = 0, timer = null, exiting = false;

  function loadPending() {
    try { return JSON.parse(sessionStorage.getItem(PENDING_KEY) || "[]"); } catch (e) { return []; }
  }
  function savePending() { sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending)); }
  function newId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function timeLabel(iso) {
    var d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
  }
  function bubble(direction, author, text, meta) {
    var li = document.createElement("li");
    li.className = "line " + direction;
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    var m = document.createElement("span");
    m.className = "meta";
    m.textContent = meta;
    li.appendChild(body);
    li.appendChild(m);
    return li;
  }
  function scrollDown() { linesEl.parentElement.scrollTop = linesEl.parentElement.scrollHeight; }

  function renderPending(p) {
    var li = bubble("in", "child", p.text, T.sending);
    li.classList.add("pending");
    li.dataset.clientId = p.client_id;
    linesEl.appendChild(li);
    scrollDown();
  }
  function renderLine(line) {
    if (seenSeqs.has(line.seq)) { return; }  // a line we already show is never doubled
    seenSeqs.add(line.seq);
    lastSeq = Math.max(lastSeq, line.seq);
    var who = line.author === "child" ? T.you : (line.author === "bot" ? T.bot : T.caseworker);
    var li = bubble(line.direction, line.author, line.text, who + " · " + timeLabel(line.at));
    li.dataset.seq = String(line.seq);
    if (line.client_id) {
      var old = linesEl.querySelector('li.pending[data-client-id="' + CSS.escape(line.client_id) + '"]');
      if (old) { old.remove(); }
      pending = pending.filter(function (p) { return p.client_id !== line.client_id; });
      savePending();
    }
    // Keep seq order even if a line arrives late.
    var after = null;
    linesEl.querySelectorAll("li[data-seq]").forEach(function (el) {
      if (after === null && Number(el.dataset.seq) > line.seq) { after = el; }
    });
    linesEl.insertBefore(li, after || linesEl.querySelector("li.pending"));
    scrollDown();
    renderButtons(line);
    if (line.direction === "out" && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "seen", seq: line.seq }));
    }
  }
  // Scale answers offered with the newest bot line; answering or writing removes them.
  function clearButtons() {
    linesEl.querySelectorAll("li.choices").forEach(function (el) { el.remove(); });
  }
  function renderButtons(line) {
    if (!line.buttons || !line.buttons.length || line.seq < lastSeq) { return; }
    clearButtons();
    var li = document.createElement("li");
    li.className = "choices";
    line.buttons.forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = b[0];
      button.addEventListener("click", function () { submit(b[0], b[1]); });
      li.appendChild(button);
    });
    linesEl.appendChild(li);
    scrollDown();
  }
  function submit(text, button) {
    clearButtons();
    var p = { client_id: newId(), text: text };
    if (button) { p.button = button; }
    pending.push(p);
    savePending();
    renderPending(p);
    sendPending(p);
  }
  function sendPending(p) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      var msg = { type: "send", client_id: p.client_id, text: p.text };
      if (p.button) { msg.button = p.button; }
      ws.send(JSON.stringify(msg));
    }
  }

  function connect() {
    if (exiting) { return; }
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/c/" + encodeURIComponent(token) + "/ws");
    ws.onopen = function () {
      retry = 0;
      statusEl.textContent = "";
      ws.send(JSON.stringify({ type: "hello", after: lastSeq }));
      pending.forEach(sendPending);  // resent with the same id: the server keeps one copy
    };
    ws.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "line") { renderLine(msg); }
      else if (msg.type === "ack") {
        var el = linesEl.querySelector('li.pending[data-client-id="' + CSS.escape(msg.client_id) + '"] .meta');
        if (el) { el.textContent = T.sent; }
      } else if (msg.type === "error") {
        statusEl.textContent = msg.error === "too_long" ? T.too_long : "";
        if (msg.client_id) {
          pending = pending.filter(function (p) { return p.client_id !== msg.client_id; });
          savePending();
        }
      }
    };
    ws.onclose = function () {
      if (exiting) { return; }
      statusEl.textContent = T.offline;
      var delay = Math.min(10000, 500 * Math.pow(2, retry++));
      timer = setTimeout(connect, delay);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) { return; }
    if (text.length > 2000) { statusEl.textContent = T.too_long; return; }
    submit(text, null);
    input.value = "";
    input.focus();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });

  function quickExit() {
    exiting = true;
    try { sessionStorage.clear(); } catch (e) { /* storage may be disabled */ }
    if (ws) { ws.close(); }
    if (timer) { clearTimeout(timer); }
    document.body.textContent = "";
    // replace(): the chat page is not left behind in the tab's history (Back won't return).
    location.replace(exitBtn.dataset.url);
  }
  exitBtn.addEventListener("click", quickExit);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { quickExit(); }
  });

  // For tests and for a network change: drop the socket; it reconnects by itself.
  window.stemmeChat = { drop: function () { if (ws) { ws.close(); } }, lastSeq: function () { return lastSeq; } };

  pending.forEach(renderPending);
  connect();
})();

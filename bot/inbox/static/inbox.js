// Stemme inbox: live updates and a reply form that does not reload the page.
// Everything a child wrote is put on the page with textContent, never as HTML.
(function () {
  "use strict";

  var transcript = document.getElementById("transcript");
  var queue = document.getElementById("queue");
  var statusLine = document.getElementById("live-status");
  var form = document.getElementById("reply-form");
  var caseId = transcript ? transcript.dataset.caseId : null;
  var lastSeq = transcript ? Number(transcript.dataset.lastSeq || "0") : 0;
  var attempt = 0;
  var stopped = false;
  var SESSION_ENDED = 4401;

  function showStatus(text) {
    if (!statusLine) { return; }
    statusLine.textContent = text || "";
    statusLine.hidden = !text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function safeToken(value) {
    // Only used in class names; our own enum values, but never trust the wire.
    return String(value).replace(/[^a-z_-]/g, "");
  }

  // -- a conversation ------------------------------------------------------------------------

  function renderMessage(m) {
    var item = el("li", "msg msg-" + safeToken(m.direction) + " author-" + safeToken(m.author));
    item.dataset.seq = String(m.seq);
    item.dataset.messageId = String(m.message_id);
    var meta = el("p", "msg-meta");
    var dirLabel = m.direction === "in" ? transcript.dataset.dirIn : transcript.dataset.dirOut;
    meta.appendChild(el("span", "visually-hidden", dirLabel + ":"));
    meta.appendChild(el("bdi", "msg-author", m.author_label));
    var time = el("time", null, m.time_label);
    time.setAttribute("datetime", String(m.created_at));
    meta.appendChild(time);
    item.appendChild(meta);
    var text = el("p", "msg-text", m.text);
    text.setAttribute("dir", "auto"); // a child's right-to-left text must not turn the page
    item.appendChild(text);
    if (m.state_label) {
      var state = el("p", "msg-state state-" + safeToken(m.delivery_state), m.state_label);
      state.dataset.role = "state";
      item.appendChild(state);
    }
    return item;
  }

  function insertMessage(m) {
    var seq = Number(m.seq);
    if (!Number.isInteger(seq) || transcript.querySelector('li[data-seq="' + seq + '"]')) {
      return; // a duplicate, e.g. seen again after a reconnect
    }
    var nearBottom = window.innerHeight + window.scrollY >= document.body.offsetHeight - 120;
    var item = renderMessage(m);
    var before = null;
    var items = transcript.children;
    for (var i = 0; i < items.length; i++) {
      if (Number(items[i].dataset.seq) > seq) { before = items[i]; break; }
    }
    transcript.insertBefore(item, before);
    if (seq > lastSeq) { lastSeq = seq; }
    var empty = document.getElementById("transcript-empty");
    if (empty) { empty.hidden = true; }
    if (nearBottom) { item.scrollIntoView({ block: "nearest" }); }
  }

  function updateStatus(m) {
    var item = transcript.querySelector('li[data-seq="' + Number(m.seq) + '"]');
    if (!item || !m.state_label) { return; }
    var state = item.querySelector('[data-role="state"]');
    if (!state) {
      state = el("p", null);
      state.dataset.role = "state";
      item.appendChild(state);
    }
    state.className = "msg-state state-" + safeToken(m.delivery_state);
    state.textContent = String(m.state_label);
  }

  // -- the queue -----------------------------------------------------------------------------

  function updateQueue(change) {
    var rows = queue.tBodies[0].rows;
    var row = null;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].dataset.caseId === change.case_id) { row = rows[i]; break; }
    }
    if (!row) { return; }
    var unread = Number(change.unread) || 0;
    row.dataset.unread = String(unread);
    row.classList.toggle("has-unread", unread > 0);
    var badge = row.querySelector('[data-role="unread"]');
    if (badge) {
      badge.textContent = String(change.unread_label);
      badge.classList.toggle("badge-unread", unread > 0);
    }
    var last = row.querySelector('[data-role="last"]');
    if (last && change.last_activity_label) { last.textContent = String(change.last_activity_label); }
    var urgent = change.urgent === true;
    row.dataset.urgent = urgent ? "1" : "0";
    row.classList.toggle("is-urgent", urgent);
    var flag = row.querySelector('[data-role="urgent"]');
    if (flag) {
      flag.hidden = !urgent;
      if (change.urgent_label) { flag.textContent = String(change.urgent_label); }
    }
    var body = row.parentNode;
    var waitingBefore = row.dataset.unanswered === "1";
    if (unread > 0) { row.dataset.unanswered = "1"; row.classList.add("is-unanswered"); }
    if (urgent) {
      body.insertBefore(row, body.firstChild);
    } else if (unread > 0 && !waitingBefore) {
      // A new wait: after the urgent cases and after those who have waited longer.
      var after = body.firstChild;
      while (after && (after === row || (after.dataset &&
             (after.dataset.urgent === "1" || after.dataset.unanswered === "1")))) {
        after = after.nextSibling;
      }
      body.insertBefore(row, after);
    }
  }

  // -- the urgent banner ---------------------------------------------------------------------

  function updateFlag(change) {
    if (change.flagged) { return; } // a new flag comes with a message; the page shows it on reload
    var form = document.getElementById("urgent-ack");
    var line = document.getElementById("urgent-live");
    if (form) { form.hidden = true; }
    if (line) {
      line.textContent = line.dataset.acknowledged || "";
      line.hidden = false;
    }
  }

  // -- the connection ------------------------------------------------------------------------

  function handle(data) {
    if (!data || typeof data !== "object") { return; }
    if (transcript && data.case_id === caseId) {
      if (data.type === "message") { insertMessage(data); }
      else if (data.type === "status") { updateStatus(data); }
      else if (data.type === "flag") { updateFlag(data); }
    } else if (queue && data.type === "queue_changed") {
      updateQueue(data);
    }
  }

  function connect() {
    var url = new URL("/inbox/ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var socket = new WebSocket(url.href);
    socket.addEventListener("open", function () {
      attempt = 0;
      showStatus("");
      // After a reconnect, "after" brings the messages missed while we were away.
      var watch = caseId ? { type: "watch", case_id: caseId, after: lastSeq } : { type: "watch_queue" };
      socket.send(JSON.stringify(watch));
    });
    socket.addEventListener("message", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      handle(data);
    });
    socket.addEventListener("close", function (event) {
      if (event.code === SESSION_ENDED) {
        stopped = true;
        showStatus(statusLine ? statusLine.dataset.expired : "");
      }
      if (stopped) { return; }
      showStatus(statusLine ? statusLine.dataset.offline : "");
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
      attempt += 1;
      window.setTimeout(connect, delay);
    });
  }

  // -- replying ------------------------------------------------------------------------------

  function enhanceReplyForm() {
    var textarea = form.querySelector("textarea");
    var button = form.querySelector('button[type="submit"]');
    var errorLine = document.getElementById("reply-error");
    var idleLabel = button.textContent;

    function showError(text) {
      errorLine.textContent = text || "";
      errorLine.hidden = !text;
    }

    function offerChannels(alternatives) {
      // The reply window closed: let the caseworker pick another of the child's channels.
      var wrap = document.getElementById("reply-channel-wrap");
      var select = document.getElementById("reply-channel");
      if (!wrap || !select || !Array.isArray(alternatives)) { return; }
      while (select.firstChild) { select.removeChild(select.firstChild); }
      alternatives.forEach(function (alt) {
        var option = el("option", null, alt.label);
        option.value = String(alt.identity_id);
        select.appendChild(option);
      });
      select.disabled = alternatives.length === 0;
      wrap.hidden = alternatives.length === 0;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      button.textContent = button.dataset.sending;
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        body: new URLSearchParams(new FormData(form))
      }).then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.json().then(function (body) {
          if (response.ok) {
            textarea.value = "";
            showError("");
          } else {
            showError(body && body.message ? body.message : form.dataset.failed);
            if (body && body.alternatives) { offerChannels(body.alternatives); }
          }
        });
      }).catch(function () {
        showError(form.dataset.failed);
      }).then(function () {
        button.disabled = false;
        button.textContent = idleLabel;
        textarea.focus();
      });
    });
  }

  // -- reply aids: canned replies and the chosen channel's warnings ------------------------------

  function enhanceReplyAids() {
    var textarea = document.getElementById("reply-text");
    var buttons = document.querySelectorAll("button.canned-insert");
    Array.prototype.forEach.call(buttons, function (button) {
      button.addEventListener("click", function () {
        // Inserted at the cursor as plain text; the caseworker edits it before sending.
        var insert = String(button.dataset.text || "");
        var start = textarea.selectionStart || 0;
        var end = textarea.selectionEnd || 0;
        var value = textarea.value;
        textarea.value = value.slice(0, start) + insert + value.slice(end);
        textarea.focus();
        textarea.selectionStart = textarea.selectionEnd = start + insert.length;
      });
    });
    var list = document.getElementById("reply-warnings");
    var select = document.getElementById("reply-channel");
    if (!list) { return; }
    function showWarnings() {
      var chosen = select && !select.disabled && select.value ? select.value : list.dataset.defaultIdentity;
      var items = list.querySelectorAll("li[data-identity]");
      Array.prototype.forEach.call(items, function (item) {
        item.hidden = Boolean(chosen) && item.dataset.identity !== chosen;
      });
    }
    if (select) { select.addEventListener("change", showWarnings); }
    showWarnings();
  }

  if (form && transcript) { enhanceReplyForm(); enhanceReplyAids(); }
  if (transcript || queue) { connect(); }
})();

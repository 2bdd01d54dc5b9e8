// The flowsheet without JavaScript is complete; this adds the live clock, the countdown, the vitals
// reminder, a refresh when another screen recorded something, and keeps typed entries while the app
// cannot be reached (each form keeps its entry id, so a replay records once).
(function () {
  "use strict";
  var root = document.getElementById("bedside");
  if (!root) { return; }
  var offset = Number(root.dataset.serverTime) * 1000 - Date.now(); // the server's clock is the reference
  var queueKey = "bedside-queue-" + root.dataset.session;
  function now() { return new Date(Date.now() + offset); }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  // the live clock in the site's zone, like every time the server writes on the page (the bedside
  // computer's own zone may differ)
  var zoneFormat = null;
  try {
    if (root.dataset.timeZone) {
      zoneFormat = new Intl.DateTimeFormat("en-GB", { timeZone: root.dataset.timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    }
  } catch (e) { zoneFormat = null; }
  function siteTime(t) {
    return zoneFormat ? zoneFormat.format(t) : two(t.getHours()) + ":" + two(t.getMinutes()) + ":" + two(t.getSeconds());
  }
  function tick() {
    var t = now();
    var clock = document.getElementById("server-clock");
    if (clock) { clock.textContent = siteTime(t); }
    var ends = Number(root.dataset.endsAt || 0) * 1000;
    var countdown = document.getElementById("countdown");
    if (ends && countdown) {
      var left = Math.round((ends - t.getTime()) / 1000);
      countdown.textContent = left >= 0 ? " (" + Math.floor(left / 60) + " min " + two(left % 60) + " s left)" : " (planned time reached)";
    }
    var due = Number(root.dataset.vitalsDue || 0) * 1000;
    var dueLine = document.getElementById("vitals-due");
    if (due && dueLine && t.getTime() >= due) { dueLine.className = "message warning"; dueLine.textContent = "Vital signs due now."; }
  }
  function queue() { try { return JSON.parse(localStorage.getItem(queueKey) || "[]"); } catch (e) { return []; } }
  function saveQueue(items) { try { localStorage.setItem(queueKey, JSON.stringify(items)); } catch (e) { /* storage may be refused in a frame */ } }
  function showQueue() {
    var badge = document.getElementById("offline-badge");
    var items = queue();
    if (!badge) { return; }
    badge.hidden = items.length === 0;
    badge.textContent = items.length + " entr" + (items.length === 1 ? "y" : "ies") + " typed here, waiting for the app (sent when the connection returns).";
  }
  function post(action, fields) {
    var body = new URLSearchParams();
    fields.forEach(function (pair) { body.append(pair[0], pair[1]); });
    return fetch(action, { method: "POST", body: body, headers: { "Accept": "application/json" }, credentials: "same-origin" });
  }
  function flush() {
    var items = queue();
    if (!items.length) { return Promise.resolve(false); }
    var item = items[0];
    return post(item.action, item.fields).then(function (response) {
      saveQueue(queue().slice(1)); // sent (recorded, or refused with a reason the page will show)
      showQueue();
      return flush().then(function () { return true; });
    }, function () { return false; });
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.closest("#bedside") || form.method.toLowerCase() !== "post" || !form.querySelector("[name=entry_id]")) { return; }
    event.preventDefault();
    var fields = Array.from(new FormData(form).entries());
    var action = form.getAttribute("action") || window.location.pathname;
    post(action, fields).then(function (response) {
      return response.json().then(function (data) {
        if (data.ok) { // to the page the server names (vital signs: with their confirmation), else reload
          var next = data.next ? new URL(data.next, window.location.href) : null;
          if (next && next.pathname + next.search !== window.location.pathname + window.location.search) { window.location.assign(next.href); } else { window.location.reload(); }
          return;
        }
        var error = document.getElementById("entry-error") || document.createElement("p");
        error.id = "entry-error"; error.className = "message error"; error.setAttribute("role", "alert");
        error.textContent = "Not recorded. " + data.message;
        form.prepend(error);
        var bad = data.field && form.querySelector("[name='" + data.field + "']");
        if (bad) { bad.setAttribute("aria-invalid", "true"); bad.focus(); }
      });
    }, function () {
      var items = queue(); items.push({ action: action, fields: fields }); saveQueue(items); showQueue();
      form.reset();
      var id = form.querySelector("[name=entry_id]");
      if (id && window.crypto && crypto.randomUUID) { id.value = crypto.randomUUID(); }
    });
  });
  function refresh() {
    fetch(root.dataset.stateUrl, { headers: { "Accept": "application/json" } }).then(function (r) { return r.json(); }).then(function (state) {
      offset = state.server_time * 1000 - Date.now();
      var typing = document.activeElement && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName) && document.activeElement.value;
      if (String(state.entries) !== root.dataset.entries && !typing && !queue().length) { window.location.reload(); }
    }, function () { /* offline: the queue keeps what is typed */ });
  }
  document.querySelectorAll("[data-print]").forEach(function (b) { b.addEventListener("click", function () { window.print(); }); });
  window.addEventListener("online", function () { flush().then(function (sent) { if (sent) { window.location.reload(); } }); });
  showQueue();
  tick();
  setInterval(tick, 1000);
  setInterval(function () { flush().then(function (sent) { if (sent) { window.location.reload(); } else { refresh(); } }); }, 15000);
})();

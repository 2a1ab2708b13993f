// guard's queue page script (no inline script: the page's CSP allows only this file).
// Polls /__guard/queue for this room, shows the position and the ETA, and reloads the
// page once the shopper is admitted (the poll set the pass cookie). The next poll comes
// after the server's refresh_seconds: the front of the line polls often, the back rarely.
(function () {
  "use strict";
  var card = document.getElementById("guard-queue");
  if (!card) { return; }
  var room = card.getAttribute("data-room");
  var refresh = parseInt(card.getAttribute("data-refresh"), 10) || 5;
  if (!navigator.cookieEnabled) { show("cookies-off"); }

  function show(id) { var el = document.getElementById(id); if (el) { el.hidden = false; } }
  function text(ids, value) {
    ids.forEach(function (id) { var el = document.getElementById(id); if (el) { el.textContent = value; } });
  }
  function clock(iso) { return iso ? iso.slice(11, 16) : "?"; }

  function each(cls, value) {
    Array.prototype.forEach.call(document.getElementsByClassName(cls), function (el) { el.textContent = value; });
  }
  // The DOM carries the state as data-* attributes too (tests and the shop's own styling).
  function mark(doc) {
    card.setAttribute("data-status", doc.status);
    card.setAttribute("data-position", String(doc.position));
  }
  function held(doc) {
    if (!doc.return_at) { return; }
    each("held-until", clock(doc.return_at));
    show("returned");
    var offer = document.getElementById("return");
    if (offer) { offer.hidden = true; }
  }
  var link = document.getElementById("return-link");
  if (link) {
    link.addEventListener("click", function (ev) {
      ev.preventDefault();
      fetch(link.getAttribute("href"), {
        credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
      }).then(function (r) { return r.json(); }).then(held);
    });
  }

  function apply(doc) {
    mark(doc);
    if (doc.status === "admitted") { location.reload(); return false; }
    if (doc.status === "closed" || doc.status === "ended") { show("closed"); return false; }
    if (doc.return_offered && !doc.return_at) {
      each("return-at", clock(doc.admit_at));
      show("return");
    }
    held(doc);
    text(["position", "position-en"], String(doc.position));
    var eta = doc.eta_seconds == null ? "?" : String(Math.max(1, Math.ceil(doc.eta_seconds / 60)));
    text(["eta", "eta-en"], eta);
    text(["admit-at", "admit-at-en"], clock(doc.admit_at));
    refresh = doc.refresh_seconds || refresh;
    return true;
  }

  function poll() {
    fetch("/__guard/queue?room=" + encodeURIComponent(room), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (r) { return r.json(); }).then(function (doc) {
      if (apply(doc)) { setTimeout(poll, refresh * 1000); }
    }).catch(function () { setTimeout(poll, refresh * 1000); });
  }
  setTimeout(poll, refresh * 1000);
})();

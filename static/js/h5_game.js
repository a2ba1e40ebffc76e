/* The H5 game page of a theme activity (templates/h5/game.html, app/activities/h5.py).
 *
 * A tap on Spin asks the server for a draw with an idempotency key made here for this spin attempt;
 * a network error (or a 5xx from a proxy) retries with the same key, so a retry is the same draw and
 * never a second one. The key is kept until an answer comes: a tap after the retries ran out
 * retries it again. The wheel then turns (a CSS transition of ~4 s, easing out) to the slice the
 * server drew, the result shows in a dialog, and "My prizes" and the draws left are refreshed.
 *
 * ES5 and XMLHttpRequest only, no framework: it runs in WeChat's in-app browser on older phones
 * (crypto.randomUUID may be missing there: crypto.getRandomValues is the fallback).
 */
(function () {
  "use strict";

  var game = document.getElementById("game");
  if (!game) { return; }
  var texts = {};
  try { texts = JSON.parse(document.getElementById("game-texts").textContent); } catch (e) { texts = {}; }
  var disc = game.querySelector("#wheel-box .wheel-disc");
  var modal = document.getElementById("result");
  var toast = document.getElementById("toast");
  var reducedMotion = !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  var SPIN_MS = reducedMotion ? 1200 : 4200;
  var RETRY_DELAYS_MS = [800, 1600, 3200];
  var rotation = 0; // the disc's angle now, in degrees clockwise
  var busy = false;
  var pendingKey = null; // the key of the spin attempt that has had no answer yet
  var toastTimer = null;

  function button() { return document.getElementById("spin"); }

  function newKey() {
    var c = window.crypto || window.msCrypto;
    if (c && typeof c.randomUUID === "function") { return c.randomUUID(); }
    if (c && typeof c.getRandomValues === "function") {
      var bytes = new Uint8Array(16);
      c.getRandomValues(bytes);
      var hex = "";
      for (var i = 0; i < bytes.length; i++) { hex += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
      return hex;
    }
    // No Web Crypto at all (very old browsers): time and Math.random; unique enough for one customer.
    return "k" + new Date().getTime().toString(36) + Math.random().toString(36).slice(2) +
      Math.random().toString(36).slice(2);
  }

  function request(method, url, body, done) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url, true);
    xhr.setRequestHeader("Accept", method === "POST" ? "application/json" : "text/html");
    if (method === "POST") {
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.setRequestHeader("X-CSRFToken", game.getAttribute("data-csrf"));
    }
    xhr.timeout = 15000;
    var finished = false;
    function finish(status, text) {
      if (finished) { return; }
      finished = true;
      done(status, text);
    }
    xhr.onload = function () { finish(xhr.status, xhr.responseText); };
    xhr.onerror = function () { finish(0, ""); };
    xhr.ontimeout = function () { finish(0, ""); };
    xhr.send(body ? JSON.stringify(body) : null);
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  /* One draw, retried with the same key while the network (or a proxy) fails. */
  function drawWithRetries(key, attempt, done) {
    request("POST", game.getAttribute("data-draw-url"), { key: key }, function (status, text) {
      var data = parse(text);
      var transient = status === 0 || status >= 500 || data === null;
      if (transient && attempt < RETRY_DELAYS_MS.length) {
        window.setTimeout(function () { drawWithRetries(key, attempt + 1, done); }, RETRY_DELAYS_MS[attempt]);
        return;
      }
      done(status, data, transient);
    });
  }

  function showToast(message) {
    if (!toast || !message) { return; }
    toast.textContent = message;
    toast.hidden = false;
    if (toastTimer) { window.clearTimeout(toastTimer); }
    toastTimer = window.setTimeout(function () { toast.hidden = true; }, 4000);
  }

  /* The Spin button and the reason under it, as the server says they are now. */
  function applySpin(spin) {
    var spinButton = button();
    var reason = document.getElementById("spin-reason");
    if (!spin || !spinButton) { return; }
    notBusy(spinButton);
    spinButton.disabled = !spin.canSpin;
    spinButton.setAttribute("data-state", spin.code);
    spinButton.textContent = spin.label;
    if (reason) {
      reason.textContent = spin.message || "";
      reason.hidden = !!spin.canSpin;
    }
    var box = document.getElementById("wheel-box");
    if (box) { box.className = box.className.replace(/\s*is-resting/g, "") + (spin.canSpin ? "" : " is-resting"); }
  }

  function notBusy(spinButton) {
    spinButton.className = spinButton.className.replace(/\s*is-busy/g, "");
  }

  function applyLeft(data) {
    var pairs = [["today", data.drawsLeftToday], ["total", data.drawsLeft]];
    for (var i = 0; i < pairs.length; i++) {
      var cell = game.querySelector('[data-left="' + pairs[i][0] + '"]');
      if (cell && pairs[i][1] !== null && pairs[i][1] !== undefined) { cell.textContent = String(pairs[i][1]); }
    }
  }

  function refreshPrizes() {
    request("GET", game.getAttribute("data-prizes-url"), null, function (status, html) {
      var current = document.getElementById("my-prizes");
      if (status !== 200 || !current || !html) { return; }
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var fresh = holder.querySelector("#my-prizes");
      if (fresh) { current.parentNode.replaceChild(fresh, current); }
    });
  }

  /* Turn the wheel so the drawn slice stops under the pointer; `done` once it rests. */
  function spinTo(stopAngle, done) {
    var target = Math.ceil(rotation / 360) * 360 + (stopAngle === null || stopAngle === undefined ? 6 * 360 : stopAngle);
    var called = false;
    function rest() {
      if (called) { return; }
      called = true;
      disc.removeEventListener("transitionend", rest);
      disc.removeEventListener("webkitTransitionEnd", rest);
      done();
    }
    if (!disc) { rest(); return; }
    disc.addEventListener("transitionend", rest);
    disc.addEventListener("webkitTransitionEnd", rest);
    window.setTimeout(rest, SPIN_MS + 400); // no transition event (old browser, hidden tab): go on anyway
    disc.style.webkitTransitionDuration = SPIN_MS + "ms";
    disc.style.transitionDuration = SPIN_MS + "ms";
    disc.style.webkitTransform = "rotate(" + target + "deg)";
    disc.style.transform = "rotate(" + target + "deg)";
    rotation = target;
  }

  function openResult(data) {
    var won = !!data.won;
    var prize = data.prize || {};
    var ok = document.getElementById("result-ok");
    document.getElementById("result-kicker").textContent = won ? texts.won_kicker : texts.thanks_kicker;
    document.getElementById("result-title").textContent = won ? texts.won_title : texts.thanks_title;
    var prizeText = won ? prize.name + (prize.text && prize.text !== prize.name ? " · " + prize.text : "") : "";
    var prizeLine = document.getElementById("result-prize");
    prizeLine.textContent = prizeText;
    prizeLine.hidden = !won;
    document.getElementById("result-next").textContent = data.nextStep || "";
    ok.textContent = won && prize.kind === "gift" ? texts.leave_address : ok.getAttribute("data-label") || ok.textContent;
    ok.setAttribute("data-draw-no", won && prize.kind === "gift" ? data.drawNo : "");
    modal.className = "modal" + (won ? " is-won" : " is-thanks");
    modal.hidden = false;
    ok.focus();
  }

  function closeResult() {
    var ok = document.getElementById("result-ok");
    var drawNo = ok.getAttribute("data-draw-no");
    modal.hidden = true;
    var spinButton = button();
    if (drawNo) {
      var form = document.querySelector('[data-testid="prize-' + drawNo + '"] details');
      if (form) {
        form.open = true;
        if (form.scrollIntoView) { form.scrollIntoView(); }
      }
    } else if (spinButton && !spinButton.disabled) {
      spinButton.focus();
    }
  }

  function settle(data) {
    busy = false;
    applySpin(data.spin);
    applyLeft(data);
  }

  function onSpin() {
    var spinButton = button();
    if (busy || !spinButton || spinButton.disabled) { return; }
    busy = true;
    spinButton.disabled = true;
    spinButton.className += " is-busy";
    spinButton.textContent = texts.spinning || spinButton.textContent;
    pendingKey = pendingKey || newKey();
    drawWithRetries(pendingKey, 0, function (status, data, transient) {
      if (transient) { // no answer: the next tap sends the same key again
        busy = false;
        notBusy(spinButton);
        spinButton.disabled = false;
        spinButton.textContent = spinButton.getAttribute("data-label");
        showToast(texts.network);
        return;
      }
      if (status === 200 || status === 201) {
        pendingKey = null;
        spinTo(data.stopAngle, function () {
          settle(data);
          openResult(data);
          refreshPrizes();
        });
        return;
      }
      if (status !== 429) { pendingKey = null; } // refused: nothing was drawn with this key
      busy = false;
      if (status === 401 || (data && data.code === "PAGE_EXPIRED")) {
        showToast(data && data.message);
        window.setTimeout(function () { window.location.reload(); }, 1500);
        return;
      }
      if (data && data.spin) {
        applySpin(data.spin);
      } else {
        notBusy(spinButton);
        spinButton.disabled = false;
        spinButton.textContent = spinButton.getAttribute("data-label");
      }
      showToast(data && data.message);
    });
  }

  var spinButton = button();
  if (spinButton) {
    spinButton.setAttribute("data-label", spinButton.textContent);
    spinButton.addEventListener("click", onSpin);
  }
  var okButton = document.getElementById("result-ok");
  if (okButton) {
    okButton.setAttribute("data-label", okButton.textContent);
    okButton.addEventListener("click", closeResult);
  }
  if (modal) {
    modal.addEventListener("click", function (event) { if (event.target === modal) { closeResult(); } });
  }
  document.addEventListener("keydown", function (event) {
    if ((event.key === "Escape" || event.keyCode === 27) && modal && !modal.hidden) { closeResult(); }
  });
}());

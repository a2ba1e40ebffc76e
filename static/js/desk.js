// The front desk: the code field keeps focus so a keyboard-wedge scanner (which types the code
// and presses Enter) always lands in it. It is refocused after every htmx swap and on any click
// that is not on another field, button or link; its text is selected so the next scan replaces it.
(function () {
  "use strict";
  if (window.MarketingHubDesk) return;

  function codeField() { return document.getElementById("desk-code"); }

  function isControl(element) {
    return !!(element && element.closest &&
      element.closest("input, select, textarea, button, a, label, [contenteditable], .modal"));
  }

  function refocus(select) {
    var field = codeField();
    if (!field) return;
    field.focus();
    if (select) field.select();
  }

  document.addEventListener("click", function (event) {
    if (!codeField() || isControl(event.target)) return;
    refocus(false);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (!codeField()) return;
    var target = event.detail.target;
    if (target && (target.id === "desk-result" || target.tagName === "BODY")) refocus(true);
  });

  document.addEventListener("htmx:load", function () { if (codeField()) refocus(false); });
  document.addEventListener("DOMContentLoaded", function () { if (codeField()) refocus(false); });

  // The receipt page's print button (no inline scripts under the CSP).
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-print]")) window.print();
  });

  // Camera scan, where the device has a camera and the browser a barcode detector (phones and
  // tablets at a desk): the button stays hidden elsewhere, and the scanner or keyboard is used.
  var camera = { stream: null, timer: null };

  function stopCamera() {
    if (camera.timer) clearInterval(camera.timer);
    if (camera.stream) camera.stream.getTracks().forEach(function (track) { track.stop(); });
    camera.stream = camera.timer = null;
    var view = document.querySelector("[data-camera-view]");
    if (view) view.hidden = true;
  }

  function submitCode(text) {
    var field = codeField();
    if (!field) return;
    field.value = text;
    field.form.requestSubmit();
  }

  function startCamera() {
    var view = document.querySelector("[data-camera-view]");
    var video = document.querySelector("[data-camera-video]");
    var detector = new window.BarcodeDetector({ formats: ["qr_code", "code_128", "ean_13", "itf"] });
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      camera.stream = stream;
      video.srcObject = stream;
      view.hidden = false;
      video.play();
      camera.timer = setInterval(function () {
        detector.detect(video).then(function (codes) {
          if (codes.length) { stopCamera(); submitCode(codes[0].rawValue); }
        }).catch(function () { /* a frame that could not be read: try the next one */ });
      }, 300);
    }).catch(function () {
      if (window.MarketingHub) window.MarketingHub.showToast(document.documentElement.lang === "zh-CN"
        ? "无法打开摄像头，请使用扫码枪或手动输入。" : "The camera could not be opened; use the scanner or type the code.", "warning");
    });
  }

  function offerCamera(root) {
    var supported = "BarcodeDetector" in window && navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
    root.querySelectorAll("[data-camera-scan]").forEach(function (button) { button.hidden = !supported; });
  }

  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    if (event.target.closest("[data-camera-scan]")) startCamera();
    if (event.target.closest("[data-camera-stop]")) stopCamera();
  });
  document.addEventListener("htmx:load", function (event) { offerCamera(event.detail.elt); });
  document.addEventListener("DOMContentLoaded", function () { offerCamera(document); });

  window.MarketingHubDesk = { refocus: refocus, submitCode: submitCode, stopCamera: stopCamera };
})();

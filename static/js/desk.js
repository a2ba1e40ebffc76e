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

  window.MarketingHubDesk = { refocus: refocus };
})();

// Console behaviour that htmx attributes alone do not give: toasts, the modal, confirmations,
// character counters. No inline scripts (the CSP forbids them); everything hangs off events.
(function () {
  "use strict";

  function showToast(message, level) {
    var template = document.getElementById("toast-template");
    var container = document.getElementById("toasts");
    if (!template || !container) return;
    var node = template.content.firstElementChild.cloneNode(true);
    node.classList.add("text-bg-" + ({ error: "danger" }[level] || level || "success"));
    node.querySelector(".toast-body").textContent = message;
    container.appendChild(node);
    bootstrap.Toast.getOrCreateInstance(node, { delay: 4000 }).show();
    node.addEventListener("hidden.bs.toast", function () { node.remove(); });
  }

  function showFlashedToasts(root) {
    root.querySelectorAll(".toast[data-autoshow]").forEach(function (node) {
      node.removeAttribute("data-autoshow");
      bootstrap.Toast.getOrCreateInstance(node, { delay: 4000 }).show();
    });
  }

  function modal() {
    var element = document.getElementById("modal");
    return element ? bootstrap.Modal.getOrCreateInstance(element) : null;
  }

  function updateCounters(root) {
    root.querySelectorAll("[data-counter]").forEach(function (input) {
      var label = document.querySelector('[data-count-for="' + input.id + '"]');
      if (label) label.textContent = input.value.length;
    });
  }

  // A confirmation dialog for any htmx request from an element inside [data-confirm].
  var pendingConfirm = null;
  function confirmDialog(message, onYes) {
    var element = document.getElementById("confirm-modal");
    if (!element) {
      element = document.createElement("div");
      element.id = "confirm-modal";
      element.className = "modal fade";
      element.tabIndex = -1;
      element.innerHTML =
        '<div class="modal-dialog modal-dialog-centered"><div class="modal-content">' +
        '<div class="modal-body"><p class="mb-0" data-message></p></div>' +
        '<div class="modal-footer"><button type="button" class="btn btn-outline-secondary" data-bs-dismiss="modal" data-no></button>' +
        '<button type="button" class="btn btn-primary" data-yes data-testid="confirm-yes"></button></div></div></div>';
      document.body.appendChild(element);
      element.querySelector("[data-yes]").addEventListener("click", function () {
        bootstrap.Modal.getOrCreateInstance(element).hide();
        if (pendingConfirm) { var go = pendingConfirm; pendingConfirm = null; go(); }
      });
    }
    var zh = document.documentElement.lang === "zh-CN";
    element.querySelector("[data-message]").textContent = message;
    element.querySelector("[data-yes]").textContent = zh ? "确定" : "Confirm";
    element.querySelector("[data-no]").textContent = zh ? "取消" : "Cancel";
    pendingConfirm = onYes;
    bootstrap.Modal.getOrCreateInstance(element).show();
  }

  document.addEventListener("htmx:confirm", function (event) {
    var holder = event.detail.elt.closest("[data-confirm]");
    if (!holder) return;
    event.preventDefault();
    confirmDialog(holder.getAttribute("data-confirm"), function () { event.detail.issueRequest(true); });
  });

  document.addEventListener("toast", function (event) {
    showToast(event.detail.message, event.detail.level);
  });

  document.addEventListener("modal:close", function () {
    var m = modal();
    if (m) m.hide();
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "modal-content") {
      var m = modal();
      if (m) m.show();
      var invalid = event.detail.target.querySelector(".is-invalid, input:not([type=hidden]), select");
      if (invalid) setTimeout(function () { invalid.focus(); }, 200);
    }
  });

  // A field's inline error comes back as text: mark the field valid or invalid accordingly.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.hasAttribute && target.hasAttribute("data-field-error")) {
      var input = target.previousElementSibling;
      var hasError = target.textContent.trim() !== "";
      target.classList.toggle("d-block", hasError);
      if (input) input.classList.toggle("is-invalid", hasError);
    }
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("[data-counter]")) updateCounters(document);
  });

  document.addEventListener("htmx:load", function (event) {
    showFlashedToasts(event.detail.elt);
    updateCounters(event.detail.elt);
  });

  document.addEventListener("DOMContentLoaded", function () {
    showFlashedToasts(document);
    updateCounters(document);
  });

  window.MarketingHub = { showToast: showToast, confirmDialog: confirmDialog };
})();

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

  function focusFirstField(root) {
    var field = root.querySelector(".is-invalid, input:not([type=hidden]), select");
    if (field) field.focus();
  }

  // Bootstrap focuses the dialog itself once its opening animation ends, so the first field
  // is focused only then (earlier, the keys a quick typist presses would be lost). A person who
  // has already clicked into a field while the dialog opened gets that field back instead: their
  // typing must not jump to the first one.
  var fieldChosenWhileOpening = null;
  document.addEventListener("show.bs.modal", function (event) {
    if (event.target.id === "modal") fieldChosenWhileOpening = null;
  });
  document.addEventListener("focusin", function (event) {
    var dialog = document.getElementById("modal");
    if (dialog && dialog.contains(event.target) && event.target.matches("input, select, textarea")) {
      fieldChosenWhileOpening = event.target;
    }
  });
  document.addEventListener("shown.bs.modal", function (event) {
    if (event.target.id !== "modal") return;
    var chosen = fieldChosenWhileOpening;
    if (chosen && event.target.contains(chosen)) chosen.focus();
    else focusFirstField(event.target);
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "modal-content") {
      var element = document.getElementById("modal");
      var alreadyOpen = element.classList.contains("show");
      var m = modal();
      if (m) m.show();
      if (alreadyOpen) focusFirstField(event.detail.target);
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

  // A header checkbox [data-check-all="name"] selects or clears every row checkbox of that name.
  document.addEventListener("change", function (event) {
    var name = event.target.getAttribute && event.target.getAttribute("data-check-all");
    if (!name) return;
    document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
      if (!box.disabled) box.checked = event.target.checked;
    });
  });

  // A [data-copy="text"] button copies its text (codes shown in monospace have one).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) return;
    var zh = document.documentElement.lang === "zh-CN";
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      showToast(zh ? "已复制" : "Copied", "success");
    });
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

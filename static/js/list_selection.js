// List pages: a selection that survives paging, and filter bars that refresh when a picker picks.
//
// A batch form <form id="x" data-selection="key"> owns the row checkboxes that name it
// (<input type="checkbox" form="x" data-selection-item value="id">). The ticked ids of every page
// are kept in localStorage under "selection:key"; ids ticked on other pages travel with the form
// as hidden inputs, so a batch action covers all of them (without JavaScript, the current page's).
// [data-selection-count="key"] shows how many are ticked, [data-selection-shown="key"] is hidden
// while none are, a [data-selection-clear="key"] button clears them, and an HX-Trigger
// "selection-cleared" with the key as its value does the same after a batch action.
(function () {
  "use strict";
  if (window.MarketingHubSelection) return; // boosted navigation runs this script again
  var PREFIX = "selection:";

  function load(key) {
    try { return new Set(JSON.parse(localStorage.getItem(PREFIX + key) || "[]")); } catch (e) { return new Set(); }
  }

  function save(key, chosen) {
    try { localStorage.setItem(PREFIX + key, JSON.stringify(Array.from(chosen))); } catch (e) { /* private mode */ }
  }

  function boxesOf(form) {
    return Array.prototype.filter.call(document.querySelectorAll("input[type=checkbox][data-selection-item]"),
      function (box) { return box.form === form; });
  }

  function render(form) {
    var key = form.getAttribute("data-selection");
    var chosen = load(key);
    var onPage = new Set();
    boxesOf(form).forEach(function (box) {
      onPage.add(box.value);
      box.checked = chosen.has(box.value) && !box.disabled;
    });
    form.querySelectorAll("input[data-offpage]").forEach(function (node) { node.remove(); });
    chosen.forEach(function (id) {
      if (onPage.has(id)) return;
      var hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = form.getAttribute("data-selection-name") || "ids";
      hidden.value = id;
      hidden.setAttribute("data-offpage", "");
      form.appendChild(hidden);
    });
    document.querySelectorAll('[data-selection-count="' + key + '"]').forEach(function (node) { node.textContent = chosen.size; });
    document.querySelectorAll('[data-selection-shown="' + key + '"]').forEach(function (node) { node.hidden = chosen.size === 0; });
  }

  function renderAll() {
    document.querySelectorAll("form[data-selection]").forEach(render);
  }

  function clear(key) {
    save(key, new Set());
    renderAll();
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    var form = box.form;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-selection")) return;
    if (!box.hasAttribute("data-selection-item") && !box.hasAttribute("data-check-all")) return;
    var key = form.getAttribute("data-selection");
    var chosen = load(key);
    // The header box has already ticked or cleared the page's boxes (app.js); take them all in.
    var changed = box.hasAttribute("data-check-all") ? boxesOf(form) : [box];
    changed.forEach(function (item) {
      if (item.disabled) return;
      if (item.checked) chosen.add(item.value); else chosen.delete(item.value);
    });
    save(key, chosen);
    render(form);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-selection-clear]");
    if (button) clear(button.getAttribute("data-selection-clear"));
  });

  document.addEventListener("selection-cleared", function (event) {
    var detail = event.detail || {};
    clear(typeof detail === "string" ? detail : detail.value);
  });

  // A picker inside a filter bar [data-refresh-on-pick]: picking or clearing refreshes the list.
  document.addEventListener("htmx:afterSwap", function (event) {
    var element = event.target;
    if (!element.classList || !element.classList.contains("picker-control")) return;
    var form = element.closest("form[data-refresh-on-pick]");
    if (form && window.htmx) window.htmx.trigger(form, "submit");
  });

  document.addEventListener("htmx:load", renderAll);
  document.addEventListener("DOMContentLoaded", renderAll);
  window.MarketingHubSelection = { clear: clear, render: renderAll };
  renderAll();
})();

// The roulette designer (templates/activities/wheel/designer.html): drag a row by its handle to move
// it (SortableJS), after which the order fields read 1..n top to bottom and the preview is asked
// again; preset colours fill a row's #RRGGBB field; the swatch follows the field; a field is marked
// invalid while the message the preview sent back under it is not empty; the Save button's
// confirmation follows the on/off switch. Everything else is htmx (the form asks for the preview on
// every change). No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  if (window.MarketingHubWheel) return; // boosted navigation runs this script again
  var HEX = /^#[0-9a-fA-F]{6}$/;

  function changed(input) {
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function renumber(tbody) {
    var orders = tbody.querySelectorAll("input[data-order]");
    orders.forEach(function (input, index) { input.value = String(index + 1); });
    if (orders.length) changed(orders[0]);
  }

  // Sortable.min.js and this file may run in either order after a boosted navigation.
  function makeSortable(root, tries) {
    var lists = (root.matches && root.matches("[data-wheel-rows]") ? [root] : [])
      .concat(Array.prototype.slice.call(root.querySelectorAll ? root.querySelectorAll("[data-wheel-rows]") : []));
    if (!lists.length) return;
    if (!window.Sortable) {
      if ((tries || 0) < 200) setTimeout(function () { makeSortable(root, (tries || 0) + 1); }, 50);
      return;
    }
    lists.forEach(function (tbody) {
      if (tbody.wheelSortable || tbody.hasAttribute("data-readonly")) return;
      tbody.wheelSortable = window.Sortable.create(tbody, {
        handle: ".drag-handle", animation: 150, forceFallback: true, fallbackOnBody: true,
        ghostClass: "wheel-row-ghost", chosenClass: "wheel-row-chosen",
        onEnd: function (event) { if (event.oldIndex !== event.newIndex) renumber(tbody); }
      });
    });
  }

  function paintSwatch(input) {
    var group = input.closest("[data-colour-group]");
    var swatch = group && group.querySelector("[data-swatch]");
    var value = input.value.trim().toLowerCase();
    if (swatch && HEX.test(value)) swatch.style.background = value;
    if (group) group.querySelectorAll("[data-preset]").forEach(function (preset) {
      preset.classList.toggle("active", preset.getAttribute("data-preset") === value);
    });
  }

  function followSwitch(toggle) {
    var save = toggle.form && toggle.form.querySelector("[data-confirm-when-on]");
    if (save) save.setAttribute("data-confirm", save.getAttribute(toggle.checked ? "data-confirm-when-on" : "data-confirm-when-off"));
  }

  function markInvalid(root) {
    root.querySelectorAll("[data-error-for]").forEach(function (node) {
      var input = document.getElementById(node.getAttribute("data-error-for"));
      if (input) input.classList.toggle("is-invalid", node.textContent.trim() !== "");
    });
  }

  document.addEventListener("click", function (event) {
    var preset = event.target.closest && event.target.closest("[data-preset]");
    if (!preset) return;
    var input = preset.closest("[data-colour-group]").querySelector("input[data-colour]");
    if (!input || input.disabled) return;
    input.value = preset.getAttribute("data-preset");
    paintSwatch(input);
    changed(input);
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input[data-colour]")) paintSwatch(event.target);
  });

  document.addEventListener("change", function (event) {
    if (event.target.id === "wheel-on") followSwitch(event.target);
  });

  document.addEventListener("htmx:load", function (event) { makeSortable(event.detail.elt); });
  document.addEventListener("htmx:afterSettle", function () { markInvalid(document); });
  makeSortable(document);

  window.MarketingHubWheel = { renumber: renumber };
})();

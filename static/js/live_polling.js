// Live figures that poll (hx-trigger="every Ns, live:refresh" on an element marked data-pause-when-hidden)
// stop asking while the browser tab is hidden, and refresh at once when it is shown again.
(function () {
  "use strict";
  if (window.liveFiguresPolling) return;  // loaded again by a boosted navigation: already listening
  window.liveFiguresPolling = true;

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.hidden && event.detail.elt.hasAttribute("data-pause-when-hidden")) event.preventDefault();
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden || !window.htmx) return;
    document.querySelectorAll("[data-pause-when-hidden]").forEach(function (element) {
      window.htmx.trigger(element, "live:refresh");
    });
  });
})();

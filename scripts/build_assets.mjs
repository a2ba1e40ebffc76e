// Copies the front-end assets that package.json pins from node_modules into static/vendor/.
import { cpSync, mkdirSync, rmSync } from "node:fs";

const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  "bootstrap/dist/css/bootstrap.min.css": "bootstrap.min.css",
  "bootstrap/dist/js/bootstrap.bundle.min.js": "bootstrap.bundle.min.js",
  "bootstrap-icons/font/bootstrap-icons.min.css": "bootstrap-icons.min.css",
  "bootstrap-icons/font/fonts": "fonts",
  "echarts/dist/echarts.min.js": "echarts.min.js",
  "sortablejs/Sortable.min.js": "Sortable.min.js",  // drag to reorder (the wheel designer only)
};

rmSync("static/vendor", { recursive: true, force: true });
mkdirSync("static/vendor", { recursive: true });
for (const [from, to] of Object.entries(files)) {
  cpSync(`node_modules/${from}`, `static/vendor/${to}`, { recursive: true });
}
console.log(`static/vendor: ${Object.keys(files).length} assets`);

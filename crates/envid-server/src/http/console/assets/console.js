// The envid console's one script (served from /ui/assets/, as the CSP
// requires): times read in the browser's time zone and as "… ago", and
// filter selects that apply at once. The pages work without it.
"use strict";

function ago(ms) {
  var s = Math.round(Math.abs(ms) / 1000);
  var text = s < 100 ? s + " s" : s < 6000 ? Math.round(s / 60) + " min"
    : s < 172800 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
  return ms >= 0 ? text + " ago" : "in " + text;
}

document.addEventListener("DOMContentLoaded", function () {
  var now = Date.now();
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var t = Date.parse(el.getAttribute("datetime"));
    if (isNaN(t)) return;
    var local = new Date(t);
    el.title = local.toString();
    if (el.closest("td")) {
      // In tables: the local time, and how long ago on a line of its own.
      var same = local.toDateString() === new Date(now).toDateString();
      el.textContent = same ? local.toLocaleTimeString() : local.toLocaleString();
      var small = document.createElement("div");
      small.className = "muted";
      small.textContent = ago(now - t);
      el.after(small);
    } else {
      el.textContent = el.textContent + " (" + ago(now - t) + ")";
    }
  });
  document.querySelectorAll("form.filters select").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
});

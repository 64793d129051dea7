// Progressive enhancement only: every page works without this file.
document.addEventListener("click", function (ev) {
  var b = ev.target.closest("[data-toggle-all]");
  if (!b) return;
  var open = b.getAttribute("data-toggle-all") === "open";
  document.querySelectorAll("details.resource").forEach(function (d) { d.open = open; });
});

// Progressive enhancement only: every page works without this file.
document.addEventListener("click", function (ev) {
  var b = ev.target.closest("[data-toggle-all]");
  if (!b) return;
  var open = b.getAttribute("data-toggle-all") === "open";
  document.querySelectorAll("details.resource").forEach(function (d) { d.open = open; });
});

// Follow a running execution's log live; without this the page says to
// reload.
(function () {
  var pre = document.getElementById("live-log");
  if (!pre || !window.fetch || !window.TextDecoder) return;
  fetch(pre.getAttribute("data-follow"), { credentials: "same-origin" }).then(function (resp) {
    if (!resp.ok || !resp.body) return;
    pre.textContent = "";
    var reader = resp.body.getReader(), decoder = new TextDecoder(), rest = "";
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) { location.reload(); return; }
        var lines = (rest + decoder.decode(r.value, { stream: true })).split("\n");
        rest = lines.pop();
        lines.forEach(function (line) {
          try { var m = JSON.parse(line)["@message"]; if (m) pre.textContent += m + "\n"; } catch (e) {}
        });
        pre.scrollTop = pre.scrollHeight;
        return pump();
      });
    }
    return pump();
  });
})();

// Count down a certificate's remaining validity.
(function () {
  var el = document.querySelector("time[data-countdown]");
  if (!el) return;
  var end = Date.parse(el.getAttribute("datetime")), base = el.textContent;
  function tick() {
    var left = Math.floor((end - Date.now()) / 1000);
    if (left <= 0) { el.textContent = base + " (expired)"; return; }
    var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
    el.textContent = base + " (" + (h ? h + "h " : "") + m + "m " + s + "s left)";
    setTimeout(tick, 1000);
  }
  tick();
})();

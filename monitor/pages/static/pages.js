// dprk-outage-monitor pages: refresh the page in place, export the event chart (SVG, PNG).
// Loaded from 'self' only (the Content-Security-Policy forbids inline scripts).
(function () {
  "use strict";

  function refresh() {
    if (document.hidden) return;
    fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var old = document.getElementById("main");
        if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        document.body.classList.remove("stale");
      })
      .catch(function () {
        document.body.classList.add("stale"); // the daemon is unreachable: keep the last view
      });
  }

  function svgText(svg) {
    var clone = svg.cloneNode(true);
    clone.setAttribute("xmlns", "http://www.w3.org/2000/svg");
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(clone);
  }

  function download(href, name) {
    var a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function exportChart(button) {
    var svg = document.getElementById(button.getAttribute("data-target"));
    if (!svg) return;
    var name = button.getAttribute("data-name") || "chart";
    var text = svgText(svg);
    if (button.getAttribute("data-export") === "svg") {
      download("data:image/svg+xml;charset=utf-8," + encodeURIComponent(text), name + ".svg");
      return;
    }
    var box = svg.viewBox.baseVal;
    var scale = 2; // sharp in a write-up
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = box.width * scale;
      canvas.height = box.height * scale;
      var ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.drawImage(img, 0, 0, box.width, box.height);
      download(canvas.toDataURL("image/png"), name + ".png");
    };
    var bytes = new TextEncoder().encode(text);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    img.src = "data:image/svg+xml;base64," + btoa(bin);
  }

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t instanceof Element) {
      var b = t.closest("button[data-export]");
      if (b) exportChart(b);
    }
  });

  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) window.setInterval(refresh, every * 1000);
})();

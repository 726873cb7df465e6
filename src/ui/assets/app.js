// zadig-server dashboard: live updates only (every page works without this script).
// - a job log that is still running follows the dashboard's SSE route;
// - a task that has not ended refreshes its status, actions and stage graph every 2 s.
(function () {
  "use strict";
  var pre = document.getElementById("log-text");
  var state = document.getElementById("log-state");
  if (pre && pre.dataset.events && window.EventSource) {
    var es = new EventSource(pre.dataset.events);
    var first = true;
    es.onmessage = function (e) {
      // The stream starts from the first line: replace what the server rendered.
      if (first) { pre.textContent = ""; first = false; }
      var stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += e.data.replace(/\\r/g, "\r") + "\n";
      if (stick) { pre.scrollTop = pre.scrollHeight; }
    };
    es.addEventListener("end", function () {
      es.close();
      if (state) { state.textContent = "ended"; }
    });
    es.onerror = function () {
      // Closed by the server after the job ended, or the session ended: do not reconnect.
      if (es.readyState === EventSource.CLOSED && state) { state.textContent = "disconnected"; }
    };
  }

  var live = document.getElementById("task-live");
  if (live && live.dataset.final !== "true" && window.fetch) {
    var timer = setInterval(function () {
      // Do not swap the forms out from under someone typing a comment.
      if (live.contains(document.activeElement) && document.activeElement.tagName === "INPUT") { return; }
      fetch(live.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
        // A redirect means the session ended (sign-in page): stop rather than show it here.
        .then(function (r) { if (!r.ok || r.redirected) { clearInterval(timer); return null; } return r.text(); })
        .then(function (html) {
          if (html === null) { return; }
          live.innerHTML = html;
          var s = document.getElementById("task-status");
          if (s && ["passed", "failed", "timeout", "cancelled", "reject", "skipped"].indexOf(s.dataset.status) >= 0) {
            clearInterval(timer);
          }
        })
        .catch(function () {});
    }, 2000);
  }
})();

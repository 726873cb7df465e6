// zadig-server dashboard: live updates only (every page works without this script).
// - a job log that is still running follows the dashboard's SSE route;
// - a task that has not ended refreshes its status, actions and stage graph every 2 s;
// - an error page's "Back" link goes back in history (without script: to the dashboard).
// Loaded as a file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var back = document.querySelector("a[data-back]");
  if (back && window.history.length > 1) {
    back.addEventListener("click", function (e) { e.preventDefault(); window.history.back(); });
  }

  var pre = document.getElementById("log-text");
  var state = document.getElementById("log-state");
  if (pre && pre.dataset.events && window.EventSource) {
    // The stream starts after the lines the page shows, and each piece carries the line it
    // reached as its event id: a reconnect (EventSource sends Last-Event-ID) goes on from
    // there, so lines are only ever appended.
    var es = new EventSource(pre.dataset.events);
    es.onmessage = function (e) {
      var stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      // A text node: log lines are text, never markup.
      pre.appendChild(document.createTextNode(e.data.replace(/\\r/g, "\r") + "\n"));
      if (stick) { pre.scrollTop = pre.scrollHeight; }
    };
    es.addEventListener("end", function () {
      es.close();
      if (state) { state.textContent = "ended"; }
    });
    es.onerror = function () {
      // Closed for good (the session ended: the reconnect met the sign-in page). While
      // the browser is reconnecting (readyState CONNECTING) the log goes on afterwards.
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
          // Our own server-rendered, escaped fragment (same origin, no script in it).
          live.innerHTML = html;
          var s = document.getElementById("task-status");
          if (s && s.dataset.final === "true") { clearInterval(timer); }
        })
        .catch(function () {});
    }, 2000);
  }
})();

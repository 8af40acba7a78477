// taskyard dashboard: refresh the page's live part (#live) every few seconds.
// Only while the tab is visible; never while focus is inside the part (keyboard users keep
// their place); an unchanged part costs a 304. Without this script every page still works.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var period = Number(document.body.getAttribute("data-refresh-seconds") || 0) * 1000;
  var status = document.getElementById("refresh-status");
  if (!live || !(period > 0) || !window.fetch) {
    return;
  }
  var etag = null;
  var timer = null;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, period);
  }

  function refresh() {
    if (document.hidden || live.contains(document.activeElement)) {
      schedule();
      return;
    }
    var headers = { "X-Taskyard-Partial": "live" };
    if (etag) {
      headers["If-None-Match"] = etag;
    }
    fetch(window.location.href, { headers: headers, credentials: "same-origin", redirect: "manual" })
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        if (!response.ok) {
          // Signed out, or the job is gone: show the server's own page for it.
          window.location.reload();
          return null;
        }
        etag = response.headers.get("ETag");
        return response.text();
      })
      .then(function (text) {
        if (text !== null && !live.contains(document.activeElement)) {
          live.innerHTML = text;
        }
        if (status) {
          status.textContent = "Updated at " + new Date().toLocaleTimeString() + ".";
        }
        schedule();
      })
      .catch(function () {
        if (status) {
          status.textContent = "Could not refresh; trying again.";
        }
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
  schedule();
})();

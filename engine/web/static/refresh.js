// Refreshes the worklist in place every N seconds (data-refresh), asking for the same URL, so the
// filters in the query string are kept. No library.
(function () {
  "use strict";
  var list = document.getElementById("worklist");
  if (!list) { return; }
  function refresh() {
    return fetch(window.location.pathname + window.location.search, {
      headers: { "X-Fragment": "worklist" }, credentials: "same-origin"
    }).then(function (response) {
      if (response.redirected || !response.ok) { window.location.reload(); return; }
      return response.text().then(function (html) { list.innerHTML = html; list.dataset.refreshed = String(Date.now()); });
    });
  }
  window.zorgpadRefresh = refresh;
  var seconds = parseInt(list.dataset.refresh || "30", 10);
  if (seconds > 0) { window.setInterval(refresh, seconds * 1000); }
})();

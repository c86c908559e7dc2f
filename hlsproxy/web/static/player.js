// Reads its URLs from data attributes, so no value from data is ever spliced into script.
(function () {
  "use strict";
  var video = document.getElementById("video");
  var notice = document.getElementById("notice");
  var reason = document.getElementById("reason");
  var playing = false;
  var error = null;
  var codes = {1: "MEDIA_ERR_ABORTED", 2: "MEDIA_ERR_NETWORK", 3: "MEDIA_ERR_DECODE",
               4: "MEDIA_ERR_SRC_NOT_SUPPORTED"};
  function publish() {
    window.playerState = {playing: playing, currentTime: video.currentTime, error: error};
  }
  function fail(message) {
    error = message;
    playing = false;
    reason.textContent = message;
    notice.hidden = false;
    publish();
  }
  function stopped() { playing = false; publish(); }
  video.addEventListener("playing", function () { playing = true; publish(); });
  ["pause", "waiting", "ended", "emptied"].forEach(function (name) {
    video.addEventListener(name, stopped);
  });
  ["timeupdate", "loadedmetadata", "seeked"].forEach(function (name) {
    video.addEventListener(name, publish);
  });
  video.addEventListener("error", function () {
    var e = video.error;
    fail(e ? (codes[e.code] || "MEDIA_ERR_" + e.code) + (e.message ? ": " + e.message : "")
           : "unknown error");
  });
  publish();
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = video.dataset.hls;
  } else {
    video.hidden = true;
    fail("HLS is not supported natively by this browser");
  }
})();

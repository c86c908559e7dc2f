// Reads its URLs from data attributes, so no value from data is ever spliced into script.
//
// When the stream fails, the page asks the proxy itself (it fetches the playlist) and shows
// the proxy's own reason: a browser only reports a demuxer error, and VLC would get the same
// answer from the proxy. Only when the proxy serves the stream and this browser still cannot
// play it does the page point to VLC or mpv.
(function () {
  "use strict";
  var video = document.getElementById("video");
  var notice = document.getElementById("notice");
  var reason = document.getElementById("reason");
  var problem = document.getElementById("problem");
  var playing = false;
  var error = null;
  var failed = false;
  var codes = {1: "MEDIA_ERR_ABORTED", 2: "MEDIA_ERR_NETWORK", 3: "MEDIA_ERR_DECODE",
               4: "MEDIA_ERR_SRC_NOT_SUPPORTED"};
  // The proxy's error codes (hlsproxy/errors.py), said as a viewer would.
  var titles = {
    content_load_failed: "The engine could not load this channel.",
    engine_unreachable: "The engine is unreachable.",
    engine_lost: "The engine is unreachable.",
    engine_timeout: "The engine did not answer in time.",
    engine_stalled: "The engine stopped sending this channel.",
    engine_ended: "The engine stopped sending this channel.",
    not_an_engine: "The proxy is not connected to an AceStream engine.",
    unavailable: "The proxy is already playing as many channels as it may. Try again soon.",
    shutting_down: "The proxy is shutting down.",
    unauthorized: "This stream needs an access token.",
    forbidden: "This address may not watch streams here."
  };
  function publish() {
    window.playerState = {playing: playing, currentTime: video.currentTime, error: error};
  }
  function fail(message) {
    if (failed) { return; }
    failed = true;
    error = message;
    playing = false;
    reason.textContent = message;
    notice.hidden = false;
    publish();
  }
  function refused(answer) {
    failed = true;
    error = answer.error + ": " + answer.message;
    playing = false;
    document.getElementById("problem-title").textContent =
      titles[answer.error] || "The proxy could not play this stream.";
    document.getElementById("problem-message").textContent = answer.message;
    problem.hidden = false;
    notice.hidden = true;
    video.hidden = true;
    video.removeAttribute("src");
    video.load();
    publish();
  }
  // What the proxy answers for the stream: null when it serves it, else {error, message}.
  function ask() {
    return fetch(video.dataset.hls, {cache: "no-store"}).then(function (answer) {
      if (answer.ok) { return null; }
      return answer.json().then(function (body) {
        return body && body.error ? body : {error: "http", message: "HTTP " + answer.status};
      }, function () {
        return {error: "http", message: "the proxy answered HTTP " + answer.status};
      });
    }, function () {
      return {error: "unreachable", message: "the proxy does not answer"};
    });
  }
  function otherwise(message) {
    return function (answer) { if (answer) { refused(answer); } else { fail(message); } };
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
    if (failed) { return; }
    var e = video.error;
    ask().then(otherwise(e ? (codes[e.code] || "MEDIA_ERR_" + e.code) +
                             (e.message ? ": " + e.message : "") : "unknown error"));
  });
  publish();
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = video.dataset.hls;
    // Asked alongside the video: a stream that cannot start says why as soon as the proxy
    // knows, whatever the browser makes of it. Both requests share one engine session.
    ask().then(function (answer) { if (answer) { refused(answer); } });
  } else {
    video.hidden = true;
    ask().then(otherwise("HLS is not supported natively by this browser"));
  }
})();
